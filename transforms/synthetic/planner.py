"""The synthetic planner: pick 2-5 non-conflicting sub-edits over a scene graph and word them.

It stands in for the VLM planner: it sees only the source scene, chooses which objects to edit
and how, writes a referring expression that singles each target out only as much as the scene
needs (shape; then colour, pattern or size; then a relation to another object, "the small blue
star left of the square"; then an extreme position), and composes one complex instruction. For
``add``, ``move``, ``resize`` and ``replace`` it also gives the box the new footprint must occupy,
as a VLM planner would. Targets never overlap each other and new footprints go to free space,
so no two sub-edits conflict.

Grammar invariants (a parser may rely on them): sub-instructions contain no comma, no full stop
and no " and "; :func:`compose_instruction` only joins them with the connectives it lists.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mcie.transforms.synthetic.scene import (
    COLOURS,
    PATTERNS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    clear_of,
    find_free_spot,
    shape_iou,
)

EDIT_TYPES = ("recolour", "remove", "add", "move", "resize", "replace", "pattern")

#: 3x3 grid cell -> location phrase and destination phrase
CELL_WORDS = {
    (0, 0): ("in the top-left corner", "to the top-left corner"),
    (1, 0): ("at the top", "to the top"),
    (2, 0): ("in the top-right corner", "to the top-right corner"),
    (0, 1): ("on the left", "to the left side"),
    (1, 1): ("in the centre", "to the centre"),
    (2, 1): ("on the right", "to the right side"),
    (0, 2): ("in the bottom-left corner", "to the bottom-left corner"),
    (1, 2): ("at the bottom", "to the bottom"),
    (2, 2): ("in the bottom-right corner", "to the bottom-right corner"),
}
PATTERN_WORDS = {"solid": "plain", "striped": "striped", "dotted": "dotted"}
PATTERN_ASKS = {
    "solid": ("plain", "a single solid colour"),
    "striped": ("striped", "stripes"),
    "dotted": ("dotted", "polka dots"),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make {ref} {colour}",
        "change the colour of {ref} to {colour}",
        "paint {ref} {colour}",
        "turn {ref} {colour}",
        "recolour {ref} in {colour}",
        "colour {ref} {colour} instead",
    ),
    "remove": (
        "remove {ref}",
        "delete {ref}",
        "take away {ref}",
        "get rid of {ref}",
        "erase {ref}",
        "make {ref} disappear",
    ),
    "add": (
        "add {new} {where}",
        "put {new} {where}",
        "place {new} {where}",
        "draw {new} {where}",
        "insert {new} {where}",
    ),
    "move": (
        "move {ref} {dest}",
        "shift {ref} {dest}",
        "relocate {ref} {dest}",
        "drag {ref} over {dest}",
    ),
    "resize": (
        "make {ref} {bigger}",
        "{scale_verb} {ref}",
        "resize {ref} to be {bigger}",
        "scale {ref} {updown}",
    ),
    "replace": (
        "replace {ref} with {new_article} {new_shape}",
        "turn {ref} into {new_article} {new_shape}",
        "swap {ref} for {new_article} {new_shape}",
        "change {ref} into {new_article} {new_shape}",
    ),
    "pattern": (
        "make {ref} {pattern_adj}",
        "give {ref} {pattern_noun}",
        "cover {ref} with {pattern_noun}",
        "change the pattern of {ref} to {pattern_noun}",
    ),
}

#: Default mix of edit types (relative weights).
DEFAULT_EDIT_WEIGHTS = {
    "recolour": 2.0,
    "remove": 1.5,
    "add": 1.5,
    "move": 1.0,
    "resize": 1.0,
    "replace": 1.0,
    "pattern": 1.0,
}


@dataclasses.dataclass
class PlannedEdit:
    """One planned sub-edit: its type, the source object it targets (None for ``add``), the
    parameters the editor needs, and its wording."""

    edit_type: str
    target: int | None
    params: dict[str, Any]
    instruction: str
    target_phrase: str
    label: str


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """How many sub-edits to plan and of which types."""

    min_edits: int = 2
    max_edits: int = 5
    edit_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_EDIT_WEIGHTS.items())
    #: multiplies the radius of added objects (the scene's ``object_scale``)
    object_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_edits <= self.max_edits <= 5:
            raise ValueError(f"need 1 <= min_edits <= max_edits <= 5, got {self.min_edits}, {self.max_edits}")
        unknown = {t for t, _ in self.edit_weights} - set(EDIT_TYPES)
        if unknown:
            raise ValueError(f"unknown edit types {sorted(unknown)}; allowed: {EDIT_TYPES}")


def template_count() -> int:
    """Distinct sub-instruction templates (reported in the dataset card)."""
    return sum(len(v) for v in TEMPLATES.values())


def cell_of(cx: float, cy: float, size: int) -> tuple[int, int]:
    """The 3x3 grid cell holding point (cx, cy)."""
    return (min(int(3 * cx / size), 2), min(int(3 * cy / size), 2))


def cell_region(cell: tuple[int, int], size: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid cell, for sampling a centre inside it."""
    c, r = cell
    return (c * size / 3, r * size / 3, (c + 1) * size / 3, (r + 1) * size / 3)


def _describe(o: SceneObject, attrs: tuple[str, ...]) -> str:
    words = []
    if "size" in attrs:
        words.append(o.size)
    if "pattern" in attrs:
        words.append(PATTERN_WORDS[o.pattern])
    if "colour" in attrs:
        words.append(o.colour)
    words.append(o.shape)
    return " ".join(words)


def _matches(p: SceneObject, o: SceneObject, attrs: tuple[str, ...]) -> bool:
    return p.shape == o.shape and all(getattr(p, a) == getattr(o, a) for a in attrs)


#: attribute sets tried in order: shortest description first
_ATTR_SETS = [
    (),
    ("colour",),
    ("pattern",),
    ("size",),
    ("colour", "pattern"),
    ("size", "colour"),
    ("size", "pattern"),
    ("size", "colour", "pattern"),
]
_RELATIONS = (
    ("left of", lambda o, lm, m: o.cx < lm.cx - m),
    ("right of", lambda o, lm, m: o.cx > lm.cx + m),
    ("above", lambda o, lm, m: o.cy < lm.cy - m),
    ("below", lambda o, lm, m: o.cy > lm.cy + m),
)


def referring_expression(objects: list[SceneObject], i: int, size: int) -> str | None:
    """The shortest phrase that singles out ``objects[i]`` in the scene, or None.

    Attributes first (shape, then colour / pattern / size), then a relation to a landmark that
    is itself named by shape or colour + shape ("the red circle left of the square"), then an
    extreme position among look-alikes ("the leftmost red circle").
    """
    o = objects[i]
    for attrs in _ATTR_SETS:
        if sum(_matches(p, o, attrs) for p in objects) == 1:
            return f"the {_describe(o, attrs)}"
    attrs = ("colour",)
    alike = [p for p in objects if _matches(p, o, attrs)]
    margin = 0.06 * size
    for j, lm in enumerate(objects):
        if j == i or _matches(lm, o, attrs):
            continue
        lm_name = None
        for la in ((), ("colour",)):
            if sum(_matches(p, lm, la) for p in objects) == 1:
                lm_name = _describe(lm, la)
                break
        if lm_name is None:
            continue
        for word, rel in _RELATIONS:
            if rel(o, lm, margin) and not any(rel(p, lm, 0.0) for p in alike if p is not o):
                return f"the {_describe(o, attrs)} {word} the {lm_name}"
    others = [p for p in alike if p is not o]
    for word, key, sign in (
        ("leftmost", "cx", -1),
        ("rightmost", "cx", 1),
        ("topmost", "cy", -1),
        ("lowest", "cy", 1),
    ):
        if all(sign * (getattr(o, key) - getattr(p, key)) > margin for p in others):
            return f"the {word} {_describe(o, attrs)}"
    return None


def box_of(cx: float, cy: float, r: float) -> list[int]:
    """Integer box (x0, y0, x1, y1), exclusive, that holds the circle (cx, cy, r)."""
    return [
        int(math.floor(cx - r)) - 1,
        int(math.floor(cy - r)) - 1,
        int(math.ceil(cx + r)) + 2,
        int(math.ceil(cy + r)) + 2,
    ]


def hue_shift(rgb: tuple[int, int, int], degrees: float) -> tuple[int, int, int]:
    """``rgb`` with its hue turned by ``degrees`` (saturation and value kept)."""
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + degrees / 360) % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _circle(o: SceneObject) -> tuple[float, float, float]:
    return (o.cx, o.cy, o.r)


class ScenePlanner:
    """Plans a complex edit of a :class:`Scene` (the synthetic stand-in for a VLM planner)."""

    def __init__(self, config: PlanConfig | None = None) -> None:
        self.config = config or PlanConfig()
        self._types = [t for t, _ in self.config.edit_weights]
        w = np.array([w for _, w in self.config.edit_weights], dtype=float)
        self._weights = w / w.sum()

    def plan(self, scene: Scene, rng: np.random.Generator) -> tuple[list[PlannedEdit], str]:
        """Return the planned sub-edits and the complex instruction that states them all."""
        objs = scene.objects
        refs = {i: referring_expression(objs, i, scene.size) for i in range(len(objs))}
        # every object's circle blocks new footprints; targets must not touch each other
        occupied = [_circle(o) for o in objs]
        candidates = [i for i, ref in refs.items() if ref is not None]
        rng.shuffle(candidates)
        state = {"occupied": occupied, "candidates": candidates, "targets": []}
        k = int(rng.integers(self.config.min_edits, self.config.max_edits + 1))
        edits: list[PlannedEdit] = []
        for _ in range(8 * k):  # bounded: a crowded scene may not fit every wish
            if len(edits) == k:
                break
            edit_type = str(rng.choice(self._types, p=self._weights))
            edit = self._plan_one(edit_type, scene, refs, state, rng)
            if edit is not None:
                edits.append(edit)
        if len(edits) < self.config.min_edits:
            raise ValueError(f"scene too crowded to plan {self.config.min_edits} sub-edits")
        return edits, compose_instruction([e.instruction for e in edits], rng)

    def _take_target(self, scene: Scene, state: dict) -> int | None:
        """An object that is referable, does not overlap any already-chosen target (no two
        sub-edits conflict) and does not overlap an object of its own colour (what an edit
        reveals must not look like the object)."""
        objs = scene.objects

        def touches(a: SceneObject, b: SceneObject) -> bool:
            return math.hypot(a.cx - b.cx, a.cy - b.cy) < a.r + b.r

        for i in list(state["candidates"]):
            o = objs[i]
            if any(touches(o, p) for j, p in enumerate(objs) if j != i and p.colour == o.colour):
                continue
            if all(
                math.hypot(o.cx - objs[t].cx, o.cy - objs[t].cy) > o.r + objs[t].r for t in state["targets"]
            ):
                state["candidates"].remove(i)
                state["targets"].append(i)
                return i
        return None

    def _plan_one(self, edit_type, scene, refs, state, rng) -> PlannedEdit | None:
        size, objs, occupied = scene.size, scene.objects, state["occupied"]
        t = str(rng.choice(TEMPLATES[edit_type]))
        if edit_type == "add":
            shape = str(rng.choice(SHAPES))
            colour = str(rng.choice(list(COLOURS)))
            size_word = str(rng.choice(list(SIZES)))
            pattern = str(rng.choice(PATTERNS, p=[0.6, 0.2, 0.2]))
            r = SIZES[size_word] * size * self.config.object_scale
            spot = find_free_spot(rng, r, size, occupied)
            if spot is None:
                return None
            occupied.append((spot[0], spot[1], r))
            where = CELL_WORDS[cell_of(*spot, size)][0]
            desc = " ".join(
                w
                for w in (size_word, PATTERN_WORDS[pattern] if pattern != "solid" else "", colour, shape)
                if w
            )
            new = f"{_article(desc)} {desc}"
            params = {
                "shape": shape,
                "colour": colour,
                "size": size_word,
                "pattern": pattern,
                "rgb": list(COLOURS[colour]),
                "center": list(spot),
                "r": r,
                "box": box_of(*spot, r),
            }
            return PlannedEdit("add", None, params, t.format(new=new, where=where), new, shape)
        i = self._take_target(scene, state)
        if i is None:
            return None
        o, ref = objs[i], refs[i]
        params: dict[str, Any] = {
            "shape": o.shape,
            "colour": o.colour,
            "pattern": o.pattern,
            "rgb": list(o.fill),
            "r": o.r,
            "box": box_of(o.cx, o.cy, o.r),
        }
        others = [c for c in occupied if c != _circle(o)]
        if edit_type == "recolour":
            to = str(rng.choice([c for c in COLOURS if c != o.colour]))
            params.update(to=to, to_rgb=list(COLOURS[to]))
            text = t.format(ref=ref, colour=to)
        elif edit_type == "remove":
            text = t.format(ref=ref)
        elif edit_type == "pattern":
            to = str(rng.choice([p for p in PATTERNS if p != o.pattern]))
            params.update(to_pattern=to)
            adj, noun = PATTERN_ASKS[to]
            text = t.format(ref=ref, pattern_adj=adj, pattern_noun=noun)
        elif edit_type == "replace":
            shapes = [s for s in SHAPES if shape_iou(s, o.shape) < 0.8]
            to = str(rng.choice(shapes))
            params.update(to_shape=to, to_box=box_of(o.cx, o.cy, o.r))
            text = t.format(ref=ref, new_article=_article(to), new_shape=to)
        elif edit_type == "move":
            here = cell_of(o.cx, o.cy, size)
            cells = [c for c in CELL_WORDS if c != here]
            rng.shuffle(cells)
            spot = None
            for cell in cells[:4]:
                spot = find_free_spot(rng, o.r, size, occupied, cell_region(cell, size), tries=15)
                if spot is not None:
                    break
            if spot is None:
                return self._give_back(state, i)
            occupied.append((spot[0], spot[1], o.r))
            params.update(to_center=list(spot), to_box=box_of(*spot, o.r))
            text = t.format(ref=ref, dest=CELL_WORDS[cell_of(*spot, size)][1])
        else:  # resize
            bigger = bool(rng.random() < 0.5)
            scale = 1.5 if bigger else 0.6
            if bigger:
                if not clear_of(o.cx, o.cy, o.r * scale, size, others):
                    return self._give_back(state, i)
                occupied.append((o.cx, o.cy, o.r * scale))
            params.update(scale=scale, to_box=box_of(o.cx, o.cy, o.r * max(scale, 1.0)))
            text = t.format(
                ref=ref,
                bigger="bigger" if bigger else "smaller",
                scale_verb="enlarge" if bigger else "shrink",
                updown="up" if bigger else "down",
            )
        return PlannedEdit(edit_type, i, params, text, ref, o.shape)

    @staticmethod
    def _give_back(state: dict, i: int) -> None:
        state["targets"].remove(i)
        return None


#: how complex instructions join sub-instructions (a parser may rely on exactly these)
CONNECTIVE_STYLES = ("list", "sequence", "also", "semicolon", "while")


def compose_instruction(parts: list[str], rng: np.random.Generator) -> str:
    """Join sub-instructions into one fluent complex instruction."""
    n = len(parts)
    styles = [s for s in CONNECTIVE_STYLES if n >= 3 or s not in ("also",)]
    style = styles[int(rng.integers(len(styles)))]
    if n == 1:
        text = parts[0] + "."
    elif style == "list":
        text = ", ".join(parts[:-1]) + f" and {parts[-1]}."
    elif style == "sequence":
        steps = [f"first {parts[0]}"] + [f"then {p}" for p in parts[1:-1]] + [f"finally {parts[-1]}"]
        text = ", ".join(steps) + "."
    elif style == "also":
        text = f"{parts[0]}. Also {', '.join(parts[1:-1])} and {parts[-1]}."
    elif style == "semicolon":
        text = "; ".join(parts) + "."
    else:  # while
        text = f"{', '.join(parts[:-1])}, while you {parts[-1]}." if n > 1 else parts[0] + "."
    return text[0].upper() + text[1:]


def split_instruction(text: str) -> list[str]:
    """Inverse of :func:`compose_instruction`: the sub-instructions of a complex instruction
    written by the synthetic grammar (the offline decomposer for synthetic data)."""
    t = text.strip()
    if t.endswith("."):
        t = t[:-1]
    t = t[0].lower() + t[1:]
    if ". Also " in t:
        head, tail = t.split(". Also ", 1)
        rest = tail.rsplit(" and ", 1)
        return [head, *[p for p in rest[0].split(", ") if p], rest[1]] if len(rest) == 2 else [head, tail]
    if "; " in t:
        return t.split("; ")
    if t.startswith("first "):
        steps = t.split(", ")
        return [s.split(" ", 1)[1] for s in steps]
    if ", while you " in t:
        head, last = t.split(", while you ", 1)
        return [*head.split(", "), last]
    if " and " in t:
        head, last = t.rsplit(" and ", 1)
        return [*head.split(", "), last]
    return [t]


__all__ = [
    "CELL_WORDS",
    "EDIT_TYPES",
    "PlanConfig",
    "PlannedEdit",
    "ScenePlanner",
    "TEMPLATES",
    "box_of",
    "cell_of",
    "compose_instruction",
    "hue_shift",
    "referring_expression",
    "split_instruction",
    "template_count",
]

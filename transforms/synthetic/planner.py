"""The synthetic planner: pick 2-5 sub-edits over a scene graph and word them.

It stands in for the VLM planner: it sees only the source scene, chooses which objects to edit
and how, writes a referring expression that singles each target out (colour, size or place
when the shape alone is ambiguous), and composes one complex instruction from the
sub-instructions. For ``add``, ``move`` and ``resize`` it also gives the box in free space the
new footprint must occupy, as a VLM planner would.
"""

from __future__ import annotations

import colorsys
import dataclasses
from typing import Any

import numpy as np

from mcie.transforms.synthetic.scene import (
    COLOURS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    find_free_spot,
    fits,
)

#: 3x3 grid cell -> location phrase
CELL_WORDS = {
    (0, 0): "in the top-left corner",
    (1, 0): "at the top",
    (2, 0): "in the top-right corner",
    (0, 1): "on the left",
    (1, 1): "in the centre",
    (2, 1): "on the right",
    (0, 2): "in the bottom-left corner",
    (1, 2): "at the bottom",
    (2, 2): "in the bottom-right corner",
}

#: 3x3 grid cell -> destination phrase (for "move")
CELL_DESTINATIONS = {
    (0, 0): "to the top-left corner",
    (1, 0): "to the top",
    (2, 0): "to the top-right corner",
    (0, 1): "to the left",
    (1, 1): "to the centre",
    (2, 1): "to the right",
    (0, 2): "to the bottom-left corner",
    (1, 2): "to the bottom",
    (2, 2): "to the bottom-right corner",
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make {ref} {colour}",
        "change the colour of {ref} to {colour}",
        "paint {ref} {colour}",
        "turn {ref} {colour}",
        "recolour {ref} {colour}",
    ),
    "remove": (
        "remove {ref}",
        "delete {ref}",
        "take away {ref}",
        "get rid of {ref}",
        "erase {ref}",
    ),
    "add": ("add {new} {where}", "put {new} {where}", "place {new} {where}", "draw {new} {where}"),
    "move": ("move {ref} {dest}", "shift {ref} so it sits {where}", "relocate {ref} {dest}"),
    "resize": ("make {ref} {bigger}", "{scale_verb} {ref}", "resize {ref} to be {bigger}"),
}

#: Default mix of edit types (relative weights).
DEFAULT_EDIT_WEIGHTS = {"recolour": 3.0, "remove": 2.0, "add": 2.0, "move": 1.5, "resize": 1.5}


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

    def __post_init__(self) -> None:
        if not 1 <= self.min_edits <= self.max_edits <= 5:
            raise ValueError(f"need 1 <= min_edits <= max_edits <= 5, got {self.min_edits}, {self.max_edits}")
        unknown = {t for t, _ in self.edit_weights} - set(DEFAULT_EDIT_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown edit types {sorted(unknown)}; allowed: {sorted(DEFAULT_EDIT_WEIGHTS)}")


def cell_of(cx: float, cy: float, size: int) -> tuple[int, int]:
    """The 3x3 grid cell holding point (cx, cy)."""
    return (min(int(3 * cx / size), 2), min(int(3 * cy / size), 2))


def cell_region(cell: tuple[int, int], size: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid cell, for sampling a centre inside it."""
    c, r = cell
    return (c * size / 3, r * size / 3, (c + 1) * size / 3, (r + 1) * size / 3)


def referring_expression(objects: list[SceneObject], i: int, size: int) -> str | None:
    """The shortest phrase that singles out ``objects[i]``, or None when none does.

    Tries shape, then colour + shape, then size + colour + shape, then an extreme position
    ("the leftmost red circle") among the objects of the same colour and shape.
    """
    o = objects[i]
    same_shape = [p for p in objects if p.shape == o.shape]
    if len(same_shape) == 1:
        return f"the {o.shape}"
    same = [p for p in same_shape if p.colour == o.colour]
    if len(same) == 1:
        return f"the {o.colour} {o.shape}"
    if sum(p.size == o.size for p in same) == 1:
        return f"the {o.size} {o.colour} {o.shape}"
    margin = 0.05 * size
    others = [p for p in same if p is not o]
    for word, key in (("leftmost", lambda p: p.cx), ("topmost", lambda p: p.cy)):
        if all(key(o) + margin < key(p) for p in others):
            return f"the {word} {o.colour} {o.shape}"
    for word, key in (("rightmost", lambda p: p.cx), ("lowest", lambda p: p.cy)):
        if all(key(o) - margin > key(p) for p in others):
            return f"the {word} {o.colour} {o.shape}"
    return None


def box_of(cx: float, cy: float, r: float) -> list[int]:
    """Integer box (x0, y0, x1, y1), exclusive, that holds the circle (cx, cy, r)."""
    return [
        int(np.floor(cx - r)),
        int(np.floor(cy - r)),
        int(np.ceil(cx + r)) + 1,
        int(np.ceil(cy + r)) + 1,
    ]


def hue_shift(rgb: tuple[int, int, int], degrees: float) -> tuple[int, int, int]:
    """``rgb`` with its hue turned by ``degrees`` (saturation and value kept)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + degrees / 360) % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


class ScenePlanner:
    """Plans a complex edit of a :class:`Scene` (the synthetic stand-in for a VLM planner)."""

    def __init__(self, config: PlanConfig | None = None) -> None:
        self.config = config or PlanConfig()
        self._types = [t for t, _ in self.config.edit_weights]
        w = np.array([w for _, w in self.config.edit_weights], dtype=float)
        self._weights = w / w.sum()

    def plan(self, scene: Scene, rng: np.random.Generator) -> tuple[list[PlannedEdit], str]:
        """Return the planned sub-edits and the complex instruction that states them all."""
        size = scene.size
        occupied = [(o.cx, o.cy, o.r) for o in scene.objects]
        refs = {i: referring_expression(scene.objects, i, size) for i in range(len(scene.objects))}
        free = [i for i, ref in refs.items() if ref is not None]
        rng.shuffle(free)
        k = int(rng.integers(self.config.min_edits, self.config.max_edits + 1))
        edits: list[PlannedEdit] = []
        for _ in range(8 * k):  # bounded: a crowded scene may not fit every wish
            if len(edits) == k:
                break
            edit_type = str(rng.choice(self._types, p=self._weights))
            edit = self._plan_one(edit_type, scene, refs, free, occupied, rng)
            if edit is not None:
                edits.append(edit)
        if len(edits) < self.config.min_edits:
            raise ValueError(f"scene too crowded to plan {self.config.min_edits} sub-edits")
        return edits, compose_instruction([e.instruction for e in edits], rng)

    def _plan_one(self, edit_type, scene, refs, free, occupied, rng) -> PlannedEdit | None:
        size = scene.size
        t = str(rng.choice(TEMPLATES[edit_type]))
        if edit_type == "add":
            shape = str(rng.choice(SHAPES))
            colour = str(rng.choice(list(COLOURS)))
            size_word = str(rng.choice(list(SIZES)))
            r = SIZES[size_word] * size
            spot = find_free_spot(rng, r, size, occupied)
            if spot is None:
                return None
            occupied.append((spot[0], spot[1], r))
            where = CELL_WORDS[cell_of(*spot, size)]
            new = f"a {size_word} {colour} {shape}"
            params = {
                "shape": shape,
                "colour": colour,
                "size": size_word,
                "rgb": list(COLOURS[colour]),
                "center": list(spot),
                "r": r,
                "box": box_of(*spot, r),
            }
            return PlannedEdit("add", None, params, t.format(new=new, where=where), new, shape)
        if not free:
            return None
        i = free.pop()
        o = scene.objects[i]
        ref = refs[i]
        params: dict[str, Any] = {
            "colour": o.colour,
            "rgb": list(o.fill),
            "box": box_of(o.cx, o.cy, o.r),
        }
        if edit_type == "recolour":
            to = str(rng.choice([c for c in COLOURS if c != o.colour]))
            params.update(to=to, to_rgb=list(COLOURS[to]))
            text = t.format(ref=ref, colour=to)
        elif edit_type == "remove":
            text = t.format(ref=ref)
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
                free.append(i)
                return None
            occupied.append((spot[0], spot[1], o.r))
            params.update(to_center=list(spot), to_box=box_of(*spot, o.r))
            cell = cell_of(*spot, size)
            text = t.format(ref=ref, where=CELL_WORDS[cell], dest=CELL_DESTINATIONS[cell])
        else:  # resize
            bigger = bool(rng.random() < 0.5)
            scale = 1.5 if bigger else 0.6
            if bigger:
                # the grown shape must stay clear of everything but itself
                others = [c for c in occupied if c != (o.cx, o.cy, o.r)]
                if not fits(o.cx, o.cy, o.r * scale, size, others):
                    free.append(i)
                    return None
                occupied.append((o.cx, o.cy, o.r * scale))
            params.update(scale=scale, to_box=box_of(o.cx, o.cy, o.r * scale))
            text = t.format(
                ref=ref,
                bigger="bigger" if bigger else "smaller",
                scale_verb="enlarge" if bigger else "shrink",
            )
        return PlannedEdit(edit_type, i, params, text, ref, o.shape)


def compose_instruction(parts: list[str], rng: np.random.Generator) -> str:
    """Join sub-instructions into one fluent complex instruction."""
    style = int(rng.integers(3)) if len(parts) >= 3 else int(rng.integers(2))
    if style == 0:
        body = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
        text = body + "."
    elif style == 1:
        steps = [f"first {parts[0]}"] + [f"then {p}" for p in parts[1:-1]] + [f"finally {parts[-1]}"]
        text = ", ".join(steps[:-1]) + f", and {steps[-1]}."
    else:
        text = f"{parts[0]}. Also {', '.join(parts[1:-1])} and {parts[-1]}."
    return text[0].upper() + text[1:]

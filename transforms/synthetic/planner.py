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

import numpy as np

from mcie.transforms.synthetic.edits import DEFAULT_EDIT_WEIGHTS, EDIT_TYPES, EDIT_WEIGHTS, edit_type
from mcie.transforms.synthetic.edits.base import (
    CELL_WORDS,
    PATTERN_ASKS,
    PATTERN_WORDS,
    PlanContext,
    PlannedEdit,
    box_of,
    cell_of,
    cell_region,
    circle,
    hue_shift,
)
from mcie.transforms.synthetic.scene import Scene, SceneObject

#: the list of edit types, their wording and the default mix live in the registry
#: (:mod:`mcie.transforms.synthetic.edits`); these names are kept for the planner's users
TEMPLATES: dict[str, tuple[str, ...]] = {n: edit_type(n).templates for n in EDIT_TYPES}


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
        for t, w in self.edit_weights:
            edit_type(t)  # raises, listing the known types
            if w < 0:
                raise ValueError(f"edit type weights must be >= 0, got {t}={w}")


def template_count(edit_types=()) -> int:
    """Distinct sub-instruction templates of the default mix and of ``edit_types`` (reported in
    the dataset card; a run without opt-in types reports what it always did)."""
    names = set(DEFAULT_EDIT_WEIGHTS) | set(edit_types)
    return sum(len(edit_type(n).templates) for n in EDIT_TYPES if n in names)


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
        candidates = [i for i, ref in refs.items() if ref is not None]
        rng.shuffle(candidates)
        ctx = PlanContext(scene, refs, [circle(o) for o in objs], candidates, [], self.config.object_scale)
        k = int(rng.integers(self.config.min_edits, self.config.max_edits + 1))
        edits: list[PlannedEdit] = []
        for _ in range(8 * k):  # bounded: a crowded scene may not fit every wish
            if len(edits) == k:
                break
            edit = edit_type(str(rng.choice(self._types, p=self._weights))).plan(ctx, rng)
            if edit is not None:
                edits.append(edit)
        if len(edits) < self.config.min_edits:
            raise ValueError(f"scene too crowded to plan {self.config.min_edits} sub-edits")
        return edits, compose_instruction([e.instruction for e in edits], rng)


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
    "DEFAULT_EDIT_WEIGHTS",
    "EDIT_TYPES",
    "EDIT_WEIGHTS",
    "PATTERN_ASKS",
    "PATTERN_WORDS",
    "PlanConfig",
    "PlannedEdit",
    "ScenePlanner",
    "TEMPLATES",
    "box_of",
    "cell_of",
    "cell_region",
    "compose_instruction",
    "hue_shift",
    "referring_expression",
    "split_instruction",
    "template_count",
]

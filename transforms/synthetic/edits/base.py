"""What an edit type is: one class holding its planning, applying, mask semantics, failure
applicability, judge check and wording (DESIGN.md, "An edit type lives in one place").

Every method here is called by the one generic caller of its concern — the planner
(:meth:`EditType.plan`), the synthetic editor (:meth:`EditType.apply`, :meth:`EditType.mask`),
the annotator (:meth:`EditType.new_boxes`) and the pixel judge (:meth:`EditType.check`) — so
none of them names an edit type. The helpers shared by several types (wording tables, boxes,
the planner's bookkeeping) live here too.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from mcie.transforms.synthetic.scene import Scene, SceneObject, fill_fraction, visible_footprint

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
#: the failures the synthetic editor may inject into one sub-edit (``background_drift`` hits the
#: whole sample, so no edit type lists it)
SUB_EDIT_FAILURES = ("missed", "partial", "colour_off", "wrong_object")
#: where a sub-edit's mask comes from (DESIGN.md, mask semantics)
MASK_FROM = ("source", "target", "union")


def cell_of(cx: float, cy: float, size: int) -> tuple[int, int]:
    """The 3x3 grid cell holding point (cx, cy)."""
    return (min(int(3 * cx / size), 2), min(int(3 * cy / size), 2))


def cell_region(cell: tuple[int, int], size: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a grid cell, for sampling a centre inside it."""
    c, r = cell
    return (c * size / 3, r * size / 3, (c + 1) * size / 3, (r + 1) * size / 3)


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
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + degrees / 360) % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def circle(o: SceneObject) -> tuple[float, float, float]:
    return (o.cx, o.cy, o.r)


def area_score(ratio: float, hi: float = 1.33) -> float:
    """1 when an area is as expected up to rasterisation (a small shape's pixel area moves by up
    to ~20% with its sub-pixel position and anti-aliased rim; ``hi``: the most it may be over),
    else how far off it is."""
    if 0.75 <= ratio <= hi:
        return 1.0
    return float(min(ratio, 1.0 / max(ratio, 1e-9)))


def expected_area(shape: str, r: float, scale: float = 1.0) -> float:
    """Pixel area of ``shape`` drawn at radius ``r * scale`` (written as the judge always
    computed it, so scores keep their last bit)."""
    return fill_fraction(shape) * (2 * r * scale) ** 2


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


@dataclasses.dataclass
class PlanContext:
    """The planner's state while it plans one scene: referring expressions, the circles new
    footprints must keep clear of, the referable objects not yet chosen and the chosen ones."""

    scene: Scene
    refs: dict[int, str | None]
    occupied: list[tuple[float, float, float]]
    candidates: list[int]
    targets: list[int]
    object_scale: float = 1.0

    def take_target(self, exclude_colour: str | None = None) -> int | None:
        """An object that is referable, does not overlap any already-chosen target (no two
        sub-edits conflict) and does not overlap an object of its own colour (what an edit
        reveals must not look like the object). ``exclude_colour`` skips objects of that colour."""
        objs = self.scene.objects

        def touches(a: SceneObject, b: SceneObject) -> bool:
            return math.hypot(a.cx - b.cx, a.cy - b.cy) < a.r + b.r

        for i in list(self.candidates):
            o = objs[i]
            if o.colour == exclude_colour:
                continue
            if any(touches(o, p) for j, p in enumerate(objs) if j != i and p.colour == o.colour):
                continue
            if all(math.hypot(o.cx - objs[t].cx, o.cy - objs[t].cy) > o.r + objs[t].r for t in self.targets):
                self.candidates.remove(i)
                self.targets.append(i)
                return i
        return None

    def give_back(self, i: int) -> None:
        """Un-choose target ``i`` (its edit did not fit); it is not offered again."""
        self.targets.remove(i)


class JudgeCrop:
    """What the pixel judge hands an edit type's :meth:`EditType.check`: the images, the
    sub-edit's mask ``m`` and grounded footprint ``g`` cropped around every box it touches,
    its params with boxes in crop coordinates (``p``; ``origin`` is the crop's corner), and
    the judge's colour helpers (``judge``)."""

    def __init__(self, judge, sub, src: np.ndarray, tgt: np.ndarray, box_keys: tuple[str, ...]) -> None:
        p = sub.params
        h, w = src.shape[:2]
        boxes = [p[k] for k in box_keys if k in p]
        x0 = max(min(b[0] for b in boxes) - 3, 0)
        y0 = max(min(b[1] for b in boxes) - 3, 0)
        x1 = min(max(b[2] for b in boxes) + 3, w)
        y1 = min(max(b[3] for b in boxes) + 3, h)
        cs = (slice(y0, y1), slice(x0, x1))
        self.judge, self.origin = judge, (x0, y0)
        self.src, self.tgt, self.m = src[cs], tgt[cs], sub.mask[cs]
        self.g = sub.ground_mask[cs] if sub.ground_mask is not None else np.zeros_like(self.m)
        shift = {k: [p[k][0] - x0, p[k][1] - y0, p[k][2] - x0, p[k][3] - y0] for k in box_keys if k in p}
        self.p = {**p, **shift}
        self.old = judge.colours(p["rgb"], p["pattern"])
        self._bg = None

    @property
    def bg(self) -> np.ndarray:
        """The local background around everything the sub-edit touches (median source colour)."""
        if self._bg is None:
            self._bg = self.judge.local_background(self.src, self.g | self.m)
        return self._bg

    def region(self, key: str) -> np.ndarray:
        """The crop's box ``p[key]`` as a mask."""
        m = np.zeros(self.m.shape, dtype=bool)
        x0, y0, x1, y1 = self.p[key]
        m[max(y0, 0) : y1, max(x0, 0) : x1] = True
        return m


class EditType:
    """One edit type. Subclasses set the class attributes and implement :meth:`plan`,
    :meth:`apply` and :meth:`check`; they register with ``@register`` (see the package)."""

    #: the name in plans, records and ``--edit-types``
    name: ClassVar[str] = ""
    #: place in the list of edit types; it decides the order weights are drawn in, so the
    #: same options give the same bytes (built-ins 10..70, new types after them)
    order: ClassVar[int] = 1000
    #: relative weight in a mix that includes it
    weight: ClassVar[float] = 1.0
    #: part of the default mix (a new type is opt-in so default outputs do not change)
    default: ClassVar[bool] = False
    #: wording: sub-instruction templates (no comma, no full stop, no " and ": the composer's
    #: connectives must stay unambiguous)
    templates: ClassVar[tuple[str, ...]] = ()
    #: mask semantics: the region it may change is its footprint in the source, in the target,
    #: or the union of both
    mask_from: ClassVar[str] = "union"
    #: params keys of the planner's boxes where a new footprint appears (found by the
    #: annotator as changed pixels inside them)
    new_box_keys: ClassVar[tuple[str, ...]] = ()
    #: params keys of every box it touches (the judge works on the crop around them)
    box_keys: ClassVar[tuple[str, ...]] = ("box", "to_box")
    #: the sub-edit failures the synthetic editor may inject into it
    failures: ClassVar[tuple[str, ...]] = ("missed",)
    #: the params key of the colour a colour-off failure turns (for types it applies to)
    colour_key: ClassVar[str] = "rgb"

    # -- planning ----------------------------------------------------------------------------
    def plan(self, ctx: PlanContext, rng: np.random.Generator) -> PlannedEdit | None:
        """Plan one sub-edit of this type over ``ctx``, or None when the scene has no room."""
        raise NotImplementedError

    # -- applying ----------------------------------------------------------------------------
    def apply(
        self, objs: list, edit: PlannedEdit, target: int | None, rgb: tuple[int, int, int] | None
    ) -> None:
        """Apply ``edit`` to the object list in place (``target`` may be a distractor; ``rgb``
        overrides the colour); a removed object becomes None."""
        raise NotImplementedError

    def targets(self, edit: PlannedEdit) -> list[int]:
        """Source objects the edit changes."""
        return [] if edit.target is None else [edit.target]

    def ground(self, edit: PlannedEdit, src_fp: list[np.ndarray]) -> np.ndarray | None:
        """The grounder's answer for its target phrase(s): visible source footprints."""
        return None if edit.target is None else src_fp[edit.target]

    def mask(self, source: Scene, edit: PlannedEdit, src_fp: list[np.ndarray]) -> np.ndarray:
        """The true region it may change (mask semantics), from visible footprints."""
        m = np.zeros((source.size, source.size), dtype=bool)
        if self.mask_from != "target":
            for t in self.targets(edit):
                m |= src_fp[t]
        if self.mask_from != "source":
            after = source.copy()
            self.apply(after.objects, edit, edit.target, None)
            for i in self.changed_after(after, edit):
                m |= visible_footprint(after, i)
        return m

    def changed_after(self, after: Scene, edit: PlannedEdit) -> list[int]:
        """Indices in the edited scene of the objects whose target footprint counts."""
        return self.targets(edit)

    def distractor_ok(self, d: SceneObject, edit: PlannedEdit) -> bool:
        """Whether editing ``d`` instead of the target would change something visible."""
        return True

    def new_boxes(self, params: dict[str, Any]) -> list[list[int]]:
        """The planner's boxes of its new footprints (the annotator's evidence)."""
        return [params[k] for k in self.new_box_keys if k in params]

    # -- judging -----------------------------------------------------------------------------
    def check(self, c: JudgeCrop) -> float:
        """Score in [0, 1] of how well the target shows the sub-edit (the pixel judge)."""
        raise NotImplementedError


class TargetEdit(EditType):
    """An edit of one existing object: picks a target, fills the params every such edit
    records, then :meth:`plan_target` adds its own (and its wording)."""

    def plan(self, ctx: PlanContext, rng: np.random.Generator) -> PlannedEdit | None:
        t = str(rng.choice(self.templates))
        i = ctx.take_target()
        if i is None:
            return None
        o, ref = ctx.scene.objects[i], ctx.refs[i]
        params: dict[str, Any] = {
            "shape": o.shape,
            "colour": o.colour,
            "pattern": o.pattern,
            "rgb": list(o.fill),
            "r": o.r,
            "box": box_of(o.cx, o.cy, o.r),
        }
        text = self.plan_target(ctx, i, o, ref, t, params, rng)
        if text is None:
            ctx.give_back(i)
            return None
        return PlannedEdit(self.name, i, params, text, ref, o.shape)

    def plan_target(
        self,
        ctx: PlanContext,
        i: int,
        o: SceneObject,
        ref: str,
        template: str,
        params: dict[str, Any],
        rng: np.random.Generator,
    ) -> str | None:
        """Add this type's params for target ``o`` and return its wording (None: no room)."""
        raise NotImplementedError

"""The synthetic editor: re-render the scene with the plan applied, sometimes badly.

It stands in for a diffusion editor. At a configurable rate (default 30% of candidates) it
injects one of the failures real editors make, with magnitudes drawn from fixed ranges so the
task is well defined. Two sets of ranges (:data:`MAGNITUDES`, ``--failure-magnitude``):

=====================  ====================================  =====================================
failure                ``standard`` (gross)                  ``subtle`` (what real editors do)
=====================  ====================================  =====================================
``wrong_object``       a distractor of the same shape        same shape and colour family
``missed``             the sub-edit is not carried out       the same
``partial``            30-70% of the region done             65-85% done (a random half-plane)
``colour_off``         hue off by 20-45 degrees              10-22 degrees
``background_drift``   blotch of 40-70 levels or a global    blotch of 16-32 levels or a global
                       shift of 8-16 levels                  shift of 4-8 levels
=====================  ====================================  =====================================

The subtle ranges are the ones named when the knob was designed (hue 10-22 degrees, partial
65-85%, drift 4-8 levels, same shape and colour family); the subtle blotch is our choice (half
the standard one, still a visible spot). Colour families are ours too (:data:`COLOUR_FAMILY`).
What it really did, each failure with its magnitude, is returned as *truth*, which only
``mcie audit`` and CIE-Bench read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mcie.transforms.synthetic.edits import edit_type
from mcie.transforms.synthetic.edits.base import PlannedEdit, hue_shift
from mcie.transforms.synthetic.scene import Scene, footprints, render

FAILURE_TYPES = ("wrong_object", "missed", "partial", "background_drift", "colour_off")


@dataclasses.dataclass(frozen=True)
class FailureMagnitude:
    """The ranges failures are drawn from (low, high; integers are inclusive)."""

    hue_degrees: tuple[float, float]
    #: share of a partial sub-edit's region that is done
    partial_done: tuple[float, float]
    shift_levels: tuple[int, int]
    blotch_levels: tuple[int, int]
    #: a wrong object must also share the target's colour family (:data:`COLOUR_FAMILY`)
    wrong_same_family: bool


MAGNITUDES: dict[str, FailureMagnitude] = {
    "standard": FailureMagnitude((20.0, 45.0), (0.3, 0.7), (8, 16), (40, 70), False),
    "subtle": FailureMagnitude((10.0, 22.0), (0.65, 0.85), (4, 8), (16, 32), True),
}
#: named colour -> family, for subtle wrong objects (neighbours on the hue circle or in value)
COLOUR_FAMILY = {
    "red": "red",
    "pink": "red",
    "orange": "orange",
    "yellow": "orange",
    "brown": "orange",
    "lime": "green",
    "green": "green",
    "cyan": "blue",
    "blue": "blue",
    "purple": "blue",
}


@dataclasses.dataclass(frozen=True)
class FailureConfig:
    """Share of candidates carrying a failure, which failure types may be injected, and how
    strong they are (``magnitude``: a key of :data:`MAGNITUDES`)."""

    rate: float = 0.3
    types: tuple[str, ...] = FAILURE_TYPES
    magnitude: str = "standard"

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"failure rate must be in [0, 1], got {self.rate}")
        bad = set(self.types) - set(FAILURE_TYPES)
        if bad:
            raise ValueError(f"unknown failure types {sorted(bad)}; allowed: {FAILURE_TYPES}")
        if self.magnitude not in MAGNITUDES:
            raise ValueError(
                f"unknown failure magnitude {self.magnitude!r}; allowed: {', '.join(MAGNITUDES)}"
            )

    @property
    def ranges(self) -> FailureMagnitude:
        return MAGNITUDES[self.magnitude]


@dataclasses.dataclass
class EditTruth:
    """What the editor really did: per sub-edit executed or not, the intended region of each
    sub-edit (mask semantics, from visible footprints), and the failures injected."""

    executed: list[bool]
    masks: list[np.ndarray]
    failures: list[dict[str, Any]]


def apply_edit(
    scene: Scene, edit: PlannedEdit, target: int | None, rgb: tuple[int, int, int] | None = None
) -> None:
    """Apply one planned edit to ``scene`` in place; ``target`` may differ from the plan's
    (wrong-object failure), ``rgb`` overrides the colour (colour-off failure). Removed objects
    become None; the caller drops them."""
    edit_type(edit.edit_type).apply(scene.objects, edit, target, rgb)


def _edited(
    source: Scene,
    edits: list[PlannedEdit],
    targets: list[int | None],
    skip: set[int],
    rgb: dict[int, tuple[int, int, int]],
) -> Scene:
    scene = source.copy()
    for k, e in enumerate(edits):
        if k not in skip:
            apply_edit(scene, e, targets[k], rgb.get(k))
    scene.objects = [o for o in scene.objects if o is not None]
    return scene


def intended_masks(source: Scene, edits: list[PlannedEdit], src_fp: list[np.ndarray]) -> list[np.ndarray]:
    """The region each sub-edit may change, per its type's mask semantics, from visible
    footprints (:meth:`~mcie.transforms.synthetic.edits.base.EditType.mask`)."""
    return [edit_type(e.edit_type).mask(source, e, src_fp) for e in edits]


class SceneEditor:
    """Renders the target of a plan, injecting failures at ``config.rate``."""

    def __init__(self, config: FailureConfig | None = None) -> None:
        self.config = config or FailureConfig()

    def edit(
        self,
        source: Scene,
        edits: list[PlannedEdit],
        rng: np.random.Generator,
        src_fp: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, EditTruth]:
        """Return the target image (H, W, 3) and the truth of what was done."""
        src_fp = src_fp if src_fp is not None else footprints(source)
        masks = intended_masks(source, edits, src_fp)
        executed = [True] * len(edits)
        failures: list[dict[str, Any]] = []
        targets = [e.target for e in edits]
        skip: set[int] = set()
        rgb: dict[int, tuple[int, int, int]] = {}
        partial = drift = None
        if self.config.types and rng.random() < self.config.rate:
            options = self._applicable(source, edits)
            if options:
                # failure type first, then where: every applicable type is equally likely
                kinds = sorted({o[0] for o in options})
                kind = kinds[int(rng.integers(len(kinds)))]
                _, k, extra = [o for o in options if o[0] == kind][
                    int(rng.integers(sum(o[0] == kind for o in options)))
                ]
                mag = self.config.ranges
                failure: dict[str, Any] = {"type": kind, "sub_edit": k, "magnitude": self.config.magnitude}
                if kind == "missed":
                    skip.add(k)
                elif kind == "wrong_object":
                    targets[k] = extra
                    failure["distractor"] = extra
                    failure["same_colour"] = (
                        source.objects[extra].colour == source.objects[edits[k].target].colour
                    )
                elif kind == "colour_off":
                    deg = float(rng.uniform(*mag.hue_degrees)) * (1 if rng.random() < 0.5 else -1)
                    base = edits[k].params[edit_type(edits[k].edit_type).colour_key]
                    rgb[k] = hue_shift(tuple(base), deg)
                    failure["hue_degrees"] = round(deg, 1)
                elif kind == "partial":
                    partial = (k, float(rng.uniform(*mag.partial_done)), float(rng.uniform(0, 2 * np.pi)))
                    failure["fraction"] = round(partial[1], 3)
                else:
                    drift = "blotch" if rng.random() < 0.5 else "shift"
                    failure["drift"] = drift
                if k >= 0:
                    executed[k] = False
                failures.append(failure)
        img = render(_edited(source, edits, targets, skip, rgb))
        if partial is not None:
            k, frac, angle = partial
            without = render(_edited(source, edits, targets, {k}, rgb))
            undone = _half_plane_rest(masks[k], frac, angle)
            img[undone] = without[undone]
        if drift is not None:
            union = np.zeros(img.shape[:2], dtype=bool)
            for m in masks:
                union |= m
            failures[0]["levels"] = _apply_drift(img, union, drift, rng, self.config.ranges)
        return img, EditTruth(executed=executed, masks=masks, failures=failures)

    def _applicable(self, source: Scene, edits: list[PlannedEdit]) -> list[tuple[str, int, Any]]:
        """Every (failure type, sub-edit index, extra) that can be injected into this plan."""
        types = self.config.types
        objs = source.objects
        targets = {t for e in edits for t in edit_type(e.edit_type).targets(e)}
        out: list[tuple[str, int, Any]] = []
        for k, e in enumerate(edits):
            et = edit_type(e.edit_type)
            for kind in ("missed", "partial", "colour_off"):
                if kind in types and kind in et.failures:
                    out.append((kind, k, None))
            if "wrong_object" in types and "wrong_object" in et.failures:
                o = objs[e.target]
                for j, d in enumerate(objs):
                    if j in targets or d.shape != o.shape or not et.distractor_ok(d, e):
                        continue
                    if (
                        self.config.ranges.wrong_same_family
                        and COLOUR_FAMILY[d.colour] != COLOUR_FAMILY[o.colour]
                    ):
                        continue
                    # the distractor must not touch any target, or its change would hide in a mask
                    if all(np.hypot(d.cx - objs[t].cx, d.cy - objs[t].cy) > d.r + objs[t].r for t in targets):
                        out.append(("wrong_object", k, j))
                        break
        if "background_drift" in types:
            out.append(("background_drift", -1, None))
        return out


def _half_plane_rest(region: np.ndarray, fraction: float, angle: float) -> np.ndarray:
    """The part of ``region`` left undone when only ``fraction`` of it, cut by a straight line
    at ``angle``, is edited."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return region.copy()
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    cut = np.quantile(proj, fraction)
    rest = np.zeros_like(region)
    keep = proj > cut
    rest[ys[keep], xs[keep]] = True
    return rest


def _apply_drift(
    img: np.ndarray, union: np.ndarray, kind: str, rng: np.random.Generator, mag: FailureMagnitude
) -> int:
    """Change the background outside ``union`` dilated by 2 px: a blotch, or a global shift
    towards mid-grey (so clipping never shrinks it), of a number of levels drawn from ``mag``;
    returns that number."""
    from mcie.metrics import dilate

    outside = ~dilate(union, 2)
    size = img.shape[0]
    if kind == "shift":
        region = outside
        delta = int(rng.integers(mag.shift_levels[0], mag.shift_levels[1] + 1))
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        r = float(rng.uniform(0.04, 0.08)) * size
        region = np.zeros_like(outside)
        for _ in range(40):
            cx, cy = rng.uniform(r, size - r, size=2)
            region = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) & outside
            if region.sum() >= 0.5 * np.pi * r * r:
                break
        delta = int(rng.integers(mag.blotch_levels[0], mag.blotch_levels[1] + 1))
    vals = img[region].astype(np.int16)
    sign = np.where(vals > 127, -1, 1)
    img[region] = np.clip(vals + sign * delta, 0, 255).astype(np.uint8)
    return delta

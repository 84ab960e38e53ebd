"""The synthetic editor: re-render the scene with the plan applied, sometimes badly.

It stands in for a diffusion editor. At a configurable rate it injects the failures real
editors make, with fixed magnitudes so the task is well defined: the wrong object edited (a
distractor of the same shape), a sub-edit missed, background drift (a blotch, or a global shift
of at least 8/255), a colour off by 20-45 degrees of hue. What it really did is returned as
*truth*, which only ``mcie audit`` and CIE-Bench read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mcie.transforms.synthetic.planner import PlannedEdit, hue_shift
from mcie.transforms.synthetic.scene import Scene, SceneObject, footprint, render

FAILURE_TYPES = ("wrong_object", "missed", "background_drift", "colour_off")


@dataclasses.dataclass(frozen=True)
class FailureConfig:
    """Share of candidates carrying a failure, and which failure types may be injected."""

    rate: float = 0.3
    types: tuple[str, ...] = FAILURE_TYPES

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"failure rate must be in [0, 1], got {self.rate}")
        bad = set(self.types) - set(FAILURE_TYPES)
        if bad:
            raise ValueError(f"unknown failure types {sorted(bad)}; allowed: {FAILURE_TYPES}")


@dataclasses.dataclass
class EditTruth:
    """What the editor really did: per sub-edit executed or not, the intended region of each
    sub-edit (mask semantics), and the failures injected."""

    executed: list[bool]
    masks: list[np.ndarray]
    failures: list[dict[str, Any]]


def apply_edit(scene: Scene, edit: PlannedEdit, target: int | None, rgb_override=None) -> None:
    """Apply one planned edit to ``scene`` in place; ``target`` may differ from the plan's
    (wrong-object failure). Removed objects are set to None and dropped by the caller."""
    objs = scene.objects
    p = edit.params
    if edit.edit_type == "add":
        rgb = tuple(rgb_override) if rgb_override else None
        objs.append(
            SceneObject(p["shape"], p["colour"], p["size"], p["center"][0], p["center"][1], p["r"], rgb)
        )
        return
    o = objs[target]
    if edit.edit_type == "recolour":
        to = p["to"]
        objs[target] = dataclasses.replace(o, colour=to, rgb=tuple(rgb_override) if rgb_override else None)
    elif edit.edit_type == "remove":
        objs[target] = None
    elif edit.edit_type == "move":
        objs[target] = dataclasses.replace(o, cx=p["to_center"][0], cy=p["to_center"][1])
    elif edit.edit_type == "resize":
        objs[target] = dataclasses.replace(o, r=o.r * p["scale"])
    else:
        raise ValueError(f"the synthetic editor cannot {edit.edit_type!r}")


def intended_masks(source: Scene, edits: list[PlannedEdit]) -> list[np.ndarray]:
    """The region each sub-edit may change, per the mask semantics, from the scene graph."""
    out = []
    for e in edits:
        after = source.copy()
        apply_edit(after, e, e.target)
        m = np.zeros((source.size, source.size), dtype=bool)
        if e.target is not None:
            m |= footprint(source.objects[e.target], source.size)
        if e.edit_type == "add":
            m |= footprint(after.objects[-1], source.size)
        elif e.edit_type != "remove":
            m |= footprint(after.objects[e.target], source.size)
        out.append(m)
    return out


class SceneEditor:
    """Renders the target of a plan, injecting failures at ``config.rate``."""

    def __init__(self, config: FailureConfig | None = None) -> None:
        self.config = config or FailureConfig()

    def edit(
        self, source: Scene, edits: list[PlannedEdit], rng: np.random.Generator
    ) -> tuple[np.ndarray, EditTruth]:
        """Return the target image (H, W, 3) and the truth of what was done."""
        size = source.size
        masks = intended_masks(source, edits)
        executed = [True] * len(edits)
        failures: list[dict[str, Any]] = []
        plan_target = [e.target for e in edits]
        rgb_override: dict[int, tuple[int, int, int]] = {}
        skip: set[int] = set()
        drift = None
        if self.config.types and rng.random() < self.config.rate:
            options = self._applicable(source, edits)
            if options:
                # type first, then where: every applicable failure type is equally likely
                kinds = sorted({o[0] for o in options})
                kind = kinds[int(rng.integers(len(kinds)))]
                options = [o for o in options if o[0] == kind]
                kind, k, extra = options[int(rng.integers(len(options)))]
                failures.append({"type": kind, "sub_edit": k})
                if kind == "missed":
                    skip.add(k)
                    executed[k] = False
                elif kind == "wrong_object":
                    plan_target[k] = extra
                    executed[k] = False
                elif kind == "colour_off":
                    deg = float(rng.uniform(20, 45)) * (1 if rng.random() < 0.5 else -1)
                    base = edits[k].params["to_rgb" if edits[k].edit_type == "recolour" else "rgb"]
                    rgb_override[k] = hue_shift(tuple(base), deg)
                    executed[k] = False
                    failures[-1]["hue_degrees"] = round(deg, 1)
                else:
                    drift = "blotch" if rng.random() < 0.5 else "shift"
                    failures[-1]["drift"] = drift
        target = source.copy()
        for k, e in enumerate(edits):
            if k not in skip:
                apply_edit(target, e, plan_target[k], rgb_override.get(k))
        target.objects = [o for o in target.objects if o is not None]
        img, _ = render(target)
        if drift is not None:
            keep_out = np.zeros((size, size), dtype=bool)
            for m in masks:
                keep_out |= m
            _apply_drift(img, keep_out, drift, source, rng)
        return img, EditTruth(executed=executed, masks=masks, failures=failures)

    def _applicable(self, source: Scene, edits: list[PlannedEdit]) -> list[tuple[str, int, Any]]:
        """Every (failure type, sub-edit index, extra) that can be injected into this plan."""
        types = self.config.types
        targeted = {e.target for e in edits if e.target is not None}
        out: list[tuple[str, int, Any]] = []
        for k, e in enumerate(edits):
            if "missed" in types:
                out.append(("missed", k, None))
            if "colour_off" in types and e.edit_type in ("recolour", "add"):
                out.append(("colour_off", k, None))
            if "wrong_object" in types and e.edit_type in ("recolour", "remove"):
                o = source.objects[e.target]
                for j, d in enumerate(source.objects):
                    if (
                        j not in targeted
                        and d.shape == o.shape
                        and (e.edit_type == "remove" or d.colour != e.params["to"])
                    ):
                        out.append(("wrong_object", k, j))
                        break
        if "background_drift" in types:
            out.append(("background_drift", -1, None))
        return out


def _apply_drift(img: np.ndarray, keep_out: np.ndarray, kind: str, source: Scene, rng) -> None:
    """Change the background outside ``keep_out`` (dilated by 2 px): a blotch, or a global
    shift of 8-16 levels towards mid-grey so clipping never shrinks it below 8/255."""
    size = source.size
    grow = keep_out.copy()
    for _ in range(2):
        grow[1:, :] |= grow[:-1, :]
        grow[:-1, :] |= grow[1:, :]
        grow[:, 1:] |= grow[:, :-1]
        grow[:, :-1] |= grow[:, 1:]
    if kind == "shift":
        delta = int(rng.integers(8, 17))
        region = ~grow
        vals = img[region].astype(np.int16)
        sign = np.where(vals > 127, -1, 1)
        img[region] = np.clip(vals + sign * delta, 0, 255).astype(np.uint8)
        return
    yy, xx = np.mgrid[0:size, 0:size]
    r = float(rng.uniform(0.04, 0.08)) * size
    for _ in range(40):
        cx, cy = rng.uniform(r, size - r, size=2)
        blob = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        blob &= ~grow
        if blob.sum() >= 0.5 * np.pi * r * r:
            break
    delta = int(rng.integers(40, 71))
    vals = img[blob].astype(np.int16)
    sign = np.where(vals > 127, -1, 1)
    img[blob] = np.clip(vals + sign * delta, 0, 255).astype(np.uint8)

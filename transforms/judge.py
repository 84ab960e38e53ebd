"""Score stage: a judge scores each sub-edit and the background; a filter decides.

:class:`Judge` is the interface a VLM judge also implements: it sets, per sub-edit,
``scores["compliance"]`` in [0, 1] and ``executed``, and per sample the scores it knows
(``compliance``, background figures, and ``quality`` where it rates it). :class:`JudgeFilter`
turns scores into ``accepted`` or ``rejected`` with a reason code, so a user can re-filter with
other thresholds without re-judging.
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np

from mcie.metrics import background_metrics, dilate
from mcie.reasons import Reason, Status
from mcie.records import EditSample, SubEdit


class Judge(abc.ABC):
    """Scores a sample's sub-edits and background; sets scores in place and returns it."""

    name: str = "judge"

    @abc.abstractmethod
    def judge(self, sample: EditSample) -> EditSample: ...


@dataclasses.dataclass(frozen=True)
class PixelJudgeConfig:
    """``colour_tol``: max channel distance for a pixel to "have" a colour; ``executed_min``:
    sub-edit score needed to count as executed; ``ring``: px of surroundings sampled to learn
    the background colour around a removed or moved object."""

    colour_tol: int = 30
    executed_min: float = 0.9
    ring: int = 3


class PixelJudge(Judge):
    """Checks each sub-edit's claim in its region and the background outside all masks.

    * recolour: share of the source footprint that has the new colour in the target;
    * remove: share of the source footprint that shows the surrounding background;
    * add: colour purity of the new footprint times its coverage of the planner's box;
    * move: source cleared, destination filled with the object's colour at its size;
    * resize: the object's new area against ``scale**2`` times the old one.
    """

    name = "pixel-judge-v1"

    def __init__(self, config: PixelJudgeConfig | None = None) -> None:
        self.config = config or PixelJudgeConfig()

    def judge(self, sample: EditSample) -> EditSample:
        src, tgt = sample.src, sample.tgt
        if src is None or tgt is None:
            raise ValueError(f"sample {sample.key} has no images to judge")
        union = np.zeros(src.shape[:2], dtype=bool)
        for sub in sample.sub_edits:
            if sub.mask is None:
                raise ValueError(f"sample {sample.key}: sub-edit {sub.instruction!r} is not annotated")
            union |= sub.mask
            score = float(self._check(sub, src, tgt))
            sub.scores = {**sub.scores, "compliance": round(score, 4)}
            sub.executed = score >= self.config.executed_min
        executed = [s.executed for s in sample.sub_edits]
        bg = background_metrics(src, tgt, ~union)
        sample.scores = {
            **sample.scores,
            "compliance": round(float(np.mean(executed)), 4),
            **{k: round(v, 4) for k, v in bg.items()},
        }
        sample.provenance = {**sample.provenance, "judge": self.name}
        return sample

    # -- per-type checks -------------------------------------------------------------------
    def _has(self, pixels: np.ndarray, rgb) -> np.ndarray:
        d = np.abs(pixels.astype(np.int16) - np.asarray(rgb, dtype=np.int16))
        return d.max(axis=-1) <= self.config.colour_tol

    def _surround(self, src: np.ndarray, region: np.ndarray) -> np.ndarray:
        ring = dilate(region, self.config.ring + 1) & ~dilate(region, 1)
        return np.median(src[ring], axis=0) if ring.any() else np.median(src.reshape(-1, 3), axis=0)

    def _check(self, sub: SubEdit, src: np.ndarray, tgt: np.ndarray) -> float:
        p, g, m = sub.params, sub.ground_mask, sub.mask
        t = sub.edit_type
        if t == "recolour":
            return float(self._has(tgt[g], p["to_rgb"]).mean()) if g.any() else 0.0
        if t == "remove":
            return float(self._has(tgt[g], self._surround(src, g)).mean()) if g.any() else 0.0
        if t == "add":
            if not m.any():
                return 0.0
            x0, y0, x1, y1 = p["box"]
            # the sparsest shape we draw (a star) fills ~28% of its box; 20% is "present"
            coverage = min(1.0, m.sum() / (0.2 * (x1 - x0) * (y1 - y0)))
            return float(self._has(tgt[m], p["rgb"]).mean()) * coverage
        if t == "move":
            new = m & ~g
            cleared = float(self._has(tgt[g], self._surround(src, g)).mean()) if g.any() else 0.0
            if not new.any():
                return 0.0
            purity = float(self._has(tgt[new], p["rgb"]).mean())
            size_ok = _area_score(new.sum() / max(g.sum(), 1))
            return min(cleared, purity, size_ok)
        if t == "resize":
            x0, y0, x1, y1 = p["to_box"]
            h, w = tgt.shape[:2]
            region = np.zeros((h, w), dtype=bool)
            region[max(y0, 0) : y1, max(x0, 0) : x1] = True
            region |= g
            area = self._has(tgt[region], p["rgb"]).sum()
            return _area_score(area / max(g.sum() * p["scale"] ** 2, 1.0))
        raise ValueError(f"the pixel judge cannot check edit type {t!r}")


def _area_score(ratio: float) -> float:
    """1 when an area is as expected up to rasterisation (a small shape's pixel area moves by up
    to ~20% with its sub-pixel position), else how far off it is (ratio or its inverse)."""
    if 0.75 <= ratio <= 1.33:
        return 1.0
    return float(min(ratio, 1.0 / max(ratio, 1e-9)))


@dataclasses.dataclass(frozen=True)
class FilterThresholds:
    """When a judged sample is rejected. Defaults reject any sub-edit not executed and any
    visible background change (a blotch, or a global shift of 8/255 and more)."""

    min_compliance: float = 1.0
    bg_ssim_min: float = 0.98
    bg_psnr_min: float = 40.0
    bg_l1_max: float = 0.01
    bg_changed_max: float = 0.002

    def __post_init__(self) -> None:
        if not 0 <= self.min_compliance <= 1 or not 0 <= self.bg_ssim_min <= 1:
            raise ValueError(f"min_compliance and bg_ssim_min must be in [0, 1], got {self}")


class JudgeFilter:
    """Decides a judged sample: ``(True, None)`` keeps it, ``(False, reason)`` rejects it."""

    def __init__(self, thresholds: FilterThresholds | None = None) -> None:
        self.t = thresholds or FilterThresholds()

    def decide(self, sample: EditSample) -> tuple[bool, Reason | None]:
        s, t = sample.scores, self.t
        if any(
            sub.mask is not None and not sub.mask.any() and sub.edit_type != "add" for sub in sample.sub_edits
        ):
            return False, Reason.MASK_EMPTY
        if t.min_compliance >= 1.0 and not all(sub.executed for sub in sample.sub_edits):
            return False, Reason.SUB_EDIT_NOT_EXECUTED
        if s["compliance"] < t.min_compliance:
            return False, Reason.LOW_COMPLIANCE
        if (
            s["bg_ssim"] < t.bg_ssim_min
            or s["bg_psnr"] < t.bg_psnr_min
            or s["bg_l1"] > t.bg_l1_max
            or s["bg_changed"] > t.bg_changed_max
        ):
            return False, Reason.BACKGROUND_CHANGED
        if "quality" in s and s["quality"] < 0.5:
            return False, Reason.LOW_QUALITY
        return True, None

    def apply(self, sample: EditSample) -> EditSample:
        """Set ``status``/``reason`` on a judged sample from :meth:`decide`."""
        keep, reason = self.decide(sample)
        if keep:
            sample.status, sample.reason = Status.ACCEPTED, ""
        else:
            sample.reject(reason)
        return sample

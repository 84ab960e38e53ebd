"""The synthetic domain's judge: exact pixel checks of each sub-edit's claim in its region, and
the background outside all masks. It knows how the scene renderer draws (colours, tints,
shapes), so it lives with the synthetic domain; the real backend uses the VLM judge.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import background_metrics, dilate, erode, max_channel
from mcie.records import EditSample, SubEdit
from mcie.transforms.judge import Judge
from mcie.transforms.synthetic.edits import edit_type
from mcie.transforms.synthetic.edits.base import JudgeCrop
from mcie.transforms.synthetic.scene import tint_of


@dataclasses.dataclass(frozen=True)
class PixelJudgeConfig:
    """``colour_tol``: max channel distance for a pixel to "have" a colour; ``executed_min``:
    sub-edit score needed to count as executed."""

    colour_tol: int = 16
    executed_min: float = 0.9


#: share of each half of an object's inside showing the pattern's second (light) colour; over
#: 600 rendered objects of every shape and size the halves ranged 0.12-0.27 (dotted) and
#: 0.34-0.65 (striped); a dotted heart reached 0.31
PATTERN_TINT = {"solid": (0.0, 0.05), "dotted": (0.09, 0.32), "striped": (0.33, 0.70)}


class PixelJudge(Judge):
    """Checks each sub-edit's claim in its region and the background outside all masks.

    Colours are read on the inside of a region (eroded by 1 px, away from anti-aliased rims).
    Each edit type's own check is its :meth:`~mcie.transforms.synthetic.edits.base.EditType.check`
    (recolour: the inside shows the new colour; remove: it no longer shows the old ones; add:
    colour, pattern, place and area of the new footprint; ...); the helpers it uses are here.
    """

    name = "pixel-judge-v2"

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

    # -- helpers the edit types' checks use ------------------------------------------------
    def has(self, pixels: np.ndarray, colours: list) -> np.ndarray:
        """``bool`` per pixel: within ``colour_tol`` of any of ``colours``."""
        px = pixels.astype(np.int16)
        hit = np.zeros(px.shape[:-1], dtype=bool)
        for c in colours:
            hit |= max_channel(np.abs(px - np.asarray(c, dtype=np.int16))) <= self.config.colour_tol
        return hit

    @staticmethod
    def colours(rgb, pattern: str) -> list:
        return [tuple(rgb)] if pattern == "solid" else [tuple(rgb), tint_of(tuple(rgb))]

    @staticmethod
    def inside(m: np.ndarray) -> np.ndarray:
        inner = erode(m, 1)
        return inner if inner.sum() >= 8 else m

    def pattern_ok(self, img: np.ndarray, inside: np.ndarray, rgb, pattern: str) -> float:
        """1 when every half of ``inside`` shows ``pattern`` (tint share in range), else 0."""
        lo, hi = PATTERN_TINT[pattern]
        tint = self.has(img, [tint_of(tuple(rgb))]) & inside
        ys, xs = np.nonzero(inside)
        if len(xs) < 8:
            return 0.0
        cx, cy = xs.mean(), ys.mean()
        # halves of a tiny object hold a dot or two: only judge halves big enough to count on
        min_half = 60
        halves = [h for h in (xs < cx, xs >= cx, ys < cy, ys >= cy) if h.sum() >= min_half]
        if not halves:
            halves = [np.ones_like(xs, dtype=bool)]
        for half in halves:
            share = tint[ys[half], xs[half]].mean()
            if not lo <= share <= hi:
                return 0.0
        return 1.0

    @staticmethod
    def local_background(src: np.ndarray, region: np.ndarray) -> np.ndarray:
        """Median source colour in a ring around ``region``: the background an object is
        blended into at its anti-aliased rim."""
        ring = dilate(region, 4) & ~dilate(region, 1)
        pixels = src[ring] if ring.any() else src.reshape(-1, 3)
        return np.median(pixels, axis=0)

    @staticmethod
    def coverage(img: np.ndarray, region: np.ndarray, bg: np.ndarray, rgb, pattern: str) -> np.ndarray:
        """Per-pixel coverage of an object of colour ``rgb`` over background ``bg`` in
        ``region``, estimated from each pixel's position on the line from ``bg`` to the colour
        (or its tint); pixels off that line count 0. Summed, it is the object's area free of the
        anti-aliased rim's bias."""
        px = img[region].astype(np.float32)
        best = np.zeros(len(px), dtype=np.float32)
        colours = [rgb] if pattern == "solid" else [rgb, tint_of(tuple(rgb))]
        for c in colours:
            d = np.asarray(c, dtype=np.float32) - bg
            denom = float(d @ d)
            if denom < 1.0:
                continue
            a = np.clip((px - bg) @ d / denom, 0.0, 1.0)
            off = max_channel(np.abs(px - bg - a[:, None] * d))
            best = np.maximum(best, np.where(off <= 24, a, 0.0))
        return best

    def object_pixels(self, src, tgt, region, g, colours) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of ``region`` showing the object's colours in the target and in the source,
        leaving out look-alike pixels of other objects (same colour in the source, off ``g``)."""
        others = self.has(src, colours) & region & ~g
        return self.has(tgt, colours) & region & ~others, self.has(src, colours) & region & ~others

    def _check(self, sub: SubEdit, src: np.ndarray, tgt: np.ndarray) -> float:
        # Work on the crop around everything this sub-edit touches (fast, same result).
        et = edit_type(sub.edit_type)
        return et.check(JudgeCrop(self, sub, src, tgt, et.box_keys))

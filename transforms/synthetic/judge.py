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


#: a colour must differ from the background by this much (squared RGB distance, ~12 levels)
#: outside brightness for :meth:`PixelJudge.coverage` to discount brightness swings
GREY_FREE_MIN = 150.0
#: the most a gradient or texture background swings along the grey axis (14 levels per
#: channel, as a length along the unit grey vector)
BG_SWING = 14.0 * np.sqrt(3)


#: the median distance (levels, max channel) of an object's matching pixels from its colour
#: above which the colour is off (clean renders: 0)
EXACT_TOL = 6
#: the least share of an object's colour a blended rim pixel must show to count for it
BLEND_MIN = 0.25
#: the most a few-pixel object's measured area may exceed its drawn one: its rim is most of
#: it, and rim pixels count whole where they blend; clean edits at 32 px reached 1.95x (the
#: shapes' areas are of the continuous shape), a shrink left undone is 2.78x
SMALL_AREA_HI = 2.0
#: a background channel moving by more than this counts as a faint change
FAINT_LEVELS = 8


class PixelJudge(Judge):
    """Checks each sub-edit's claim in its region and the background outside all masks.

    Colours are read on the inside of a region (eroded by 1 px, away from anti-aliased rims).
    Each edit type's own check is its :meth:`~mcie.transforms.synthetic.edits.base.EditType.check`
    (recolour: the inside shows the new colour; remove: it no longer shows the old ones; add:
    colour, pattern, place and area of the new footprint; ...); the helpers it uses are here.
    """

    name = "pixel-judge-v2"

    def __init__(self, config: PixelJudgeConfig | None = None, offset_tol: float | None = None) -> None:
        """``offset_tol``: the most an object's pixels may sit off its colour, by their median
        (default :data:`EXACT_TOL`, for rendered candidates, painted exactly). CIE-Bench may
        score an editor's outputs with a wider one (``mcie bench run --colour-offset-tol``); it
        is not part of a build's configuration."""
        self.config = config or PixelJudgeConfig()
        self.offset_tol = EXACT_TOL if offset_tol is None else float(offset_tol)

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
            "bg_faint": round(faint_change(src, tgt, union), 5),
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

    def purity(self, pixels: np.ndarray, colours: list, bg: np.ndarray | None = None) -> float:
        """Share of ``pixels`` showing one of ``colours`` (:meth:`has`) — 0 when those that do
        sit, as a rule, off the colour (median distance over ``offset_tol``, :data:`EXACT_TOL`
        for a build): the renderer
        paints an object's inside exactly, so a hue turned by 10 degrees (a brown moves 16
        levels, just inside ``colour_tol``) shows as an offset though every pixel "has" it.

        With ``bg`` (the local background), a pixel also counts when it is a blend of ``bg``
        and a colour (on the line between them, at least :data:`BLEND_MIN` of the colour) —
        an object a few pixels wide is mostly anti-aliased rim — and pixels that are (nearly)
        background are left out of the share."""
        px = pixels.astype(np.int16)
        dist = np.full(px.shape[:-1], 10_000, dtype=np.int16)
        for c in colours:
            dist = np.minimum(dist, max_channel(np.abs(px - np.asarray(c, dtype=np.int16))))
        hit = dist <= self.config.colour_tol
        # (judged on 8 such pixels or more: a tiny object's few are rim blends, not its colour)
        if hit.sum() >= 8 and np.median(dist[hit]) > self.offset_tol:
            return 0.0
        if bg is None:
            return float(hit.mean()) if len(hit) else 0.0
        blend = np.zeros_like(hit)
        online = np.zeros_like(hit)
        off_bg = px.astype(np.float32) - bg
        for c in colours:
            d = np.asarray(c, dtype=np.float32) - bg
            denom = float(d @ d)
            if denom < 1.0:
                continue
            a = np.clip(off_bg @ d / denom, 0.0, 1.0)
            close = max_channel(np.abs(off_bg - a[:, None] * d)) <= self.config.colour_tol
            online |= close
            # a blend, not the colour turned a little (that sits near a = 1, off the colour)
            blend |= close & (a >= BLEND_MIN) & (a <= 0.85)
        # a faint blend is left out (it could be any colour's rim); so is plain background
        far = max_channel(np.abs(off_bg)) > self.config.colour_tol
        counted = hit | blend | (~online & far)
        return float((hit | blend)[counted].mean()) if counted.any() else 0.0

    def change_consistent(
        self,
        src_px: np.ndarray,
        tgt_px: np.ndarray,
        deltas: list,
        must_change: np.ndarray | None = None,
        min_changed: float = 0.0,
    ) -> float:
        """For objects a few pixels wide, whose pixels blend into the background and their
        neighbours: share of pixels whose change (target - source) is some ``alpha`` in
        [0, 1] times one of ``deltas`` (new colour - old colour): a pixel
        ``alpha * old + (1 - alpha) * rest`` becomes ``alpha * new + (1 - alpha) * rest``
        whatever ``rest`` is. Counted: the changed pixels and ``must_change`` (those that
        showed the old colour). 0 when fewer than ``min_changed`` of the pixels (and than one)
        changed."""
        diff = tgt_px.astype(np.float32) - src_px.astype(np.float32)
        changed = max_channel(np.abs(diff)) > self.config.colour_tol
        ok = np.zeros(len(diff), dtype=bool)
        for d in deltas:
            d = np.asarray(d, dtype=np.float32)
            denom = float(d @ d)
            if denom < 1.0:
                continue
            a = np.clip(diff @ d / denom, 0.0, 1.0)
            ok |= max_channel(np.abs(diff - a[:, None] * d)) <= self.config.colour_tol
        counted = changed if must_change is None else changed | must_change
        # an edit must show: nothing changed is not done (an unedited object of a few pixels
        # would otherwise pass every such check)
        if changed.sum() < max(1, min_changed * len(diff)):
            return 0.0
        return float(ok[counted].mean())

    @staticmethod
    def colours(rgb, pattern: str) -> list:
        return [tuple(rgb)] if pattern == "solid" else [tuple(rgb), tint_of(tuple(rgb))]

    @staticmethod
    def inside(m: np.ndarray) -> np.ndarray:
        inner = erode(m, 1)
        return inner if inner.sum() >= 8 else m

    def pattern_ok(self, img: np.ndarray, inside: np.ndarray, rgb, pattern: str) -> float:
        """1 when every half of ``inside`` shows ``pattern`` (tint share in range), else 0. The
        coarse check, kept for callers that do not know the object's radius; see
        :meth:`pattern_agreement`."""
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

    def pattern_agreement(
        self, img: np.ndarray, inside: np.ndarray, rgb, pattern: str, r: float
    ) -> float | None:
        """How well ``inside`` shows ``pattern`` as the renderer draws it for an object of
        radius ``r``: the share of its pixels (those showing the base colour or its tint) whose
        colour is the one the pattern puts there, at the pattern's best-fitting phase — the
        lowest share over the whole and over slices cut off from each of 8 sides, so a part
        left as it was (a partial edit) shows even when it is a sixth of the object.

        The pattern is drawn per pixel, not anti-aliased (:func:`scene._fill`), so a clean
        object agrees on every such pixel; tint shares alone cannot tell a small dotted object
        from a striped one (their ranges overlap below ~15 px)."""
        # the rim's blends of a colour with a light background look like its tint, so only
        # pixels a full pixel inside count; an object too small to have 8 of them cannot show
        # a pattern (a dot every 5 px at least) and is not judged on it
        core = erode(inside, 1)
        if core.sum() < 8:
            return None
        base = self.has(img, [tuple(rgb)]) & core
        tint = self.has(img, [tint_of(tuple(rgb))]) & core & ~base
        ys, xs = np.nonzero(base | tint)
        if len(xs) < 8:
            return 0.0
        seen = tint[ys, xs]
        if pattern == "solid":
            expected, sure = np.zeros_like(seen), np.ones_like(seen)
        else:
            expected, sure = _fit_pattern(xs, ys, seen, pattern, r)
            if (expected & sure).sum() < 6:
                return None  # too few pixels where the pattern puts its tint to judge it
        # per part, the share of the pixels the pattern paints in each colour that show it: a
        # part left solid inside a dotted object misses its dots, though they are a fifth of it
        parts = [np.ones_like(seen)]
        for angle in np.arange(8) * (np.pi / 4):
            proj = xs * np.cos(angle) + ys * np.sin(angle)
            parts.append(proj >= np.quantile(proj, 0.8))
        score = 1.0
        for part in parts:
            for colour in (True, False):
                want = part & sure & (expected == colour)
                if want.sum() >= 6:
                    score = min(score, float((seen[want] == colour).mean()))
        return score

    @staticmethod
    def fit_stripes(
        xs: np.ndarray, ys: np.ndarray, seen: np.ndarray, r: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The stripes (:func:`pattern_mask`: tint per pixel, and its margin) of an object of
        radius ``r`` at every phase that explains ``seen`` (a bool per pixel) best. Coarse
        (0.25 px) and on all pixels, for objects too small for :func:`_fit_pattern`'s sure
        pixels: there, several phases may explain a few pixels equally well."""
        # stripes depend on the anchor's cx + cy only: one phase, scanned over a period
        fits = [
            pattern_mask(xs, ys, "striped", r, a, 0.0) for a in np.arange(0.0, 2 * max(4.0, r / 2.5), 0.25)
        ]
        hits = [int((m == seen).sum()) for m, _ in fits]
        return [f for f, h in zip(fits, hits, strict=True) if h == max(hits)]

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
        anti-aliased rim's bias.

        Gradient and texture backgrounds move every channel alike (up to ~14 levels from
        ``bg``, :func:`scene.background`), so where the colour differs from ``bg`` in more
        than brightness the grey part of each pixel's offset is left out: a light tint close
        to the background would otherwise read textured background as object."""
        px = img[region].astype(np.float32)
        best = np.zeros(len(px), dtype=np.float32)
        colours = [rgb] if pattern == "solid" else [rgb, tint_of(tuple(rgb))]
        grey = np.full(3, 1 / np.sqrt(3), dtype=np.float32)
        for c in colours:
            d = np.asarray(c, dtype=np.float32) - bg
            denom = float(d @ d)
            if denom < 1.0:
                continue
            off_bg = px - bg
            d_chroma = d - (d @ grey) * grey
            if float(d_chroma @ d_chroma) >= GREY_FREE_MIN:
                a = np.clip(off_bg @ d_chroma / float(d_chroma @ d_chroma), 0.0, 1.0)
                rest = off_bg - a[:, None] * d
                shift = np.clip(rest @ grey, -BG_SWING, BG_SWING)
                off = max_channel(np.abs(rest - shift[:, None] * grey))
            else:
                a = np.clip(off_bg @ d / denom, 0.0, 1.0)
                off = max_channel(np.abs(off_bg - a[:, None] * d))
            best = np.maximum(best, np.where(off <= 24, a, 0.0))
        return best

    def size_score(self, img, region, bg, rgb, pattern: str, expected: float, small: bool) -> float:
        """:func:`area_score` of the object's area in ``region`` (:meth:`coverage`) against
        ``expected``. On a ``small`` object (too few pixels a full pixel inside to show its
        pattern) a rim pixel of its colour blended into a light background matches its light
        tint, so the area is either estimate's: as patterned (rims may count as tint) or as
        solid (its tint then counts 0.4)."""
        from mcie.transforms.synthetic.edits.base import area_score

        hi = SMALL_AREA_HI if small else 1.33
        score = area_score(self.coverage(img, region, bg, rgb, pattern).sum() / expected, hi)
        if small and pattern != "solid":
            score = max(score, area_score(self.coverage(img, region, bg, rgb, "solid").sum() / expected, hi))
        return score

    @staticmethod
    def small(footprint: np.ndarray) -> bool:
        """Whether an object is too small to show a pattern: fewer than 8 pixels a full pixel
        inside its footprint."""
        return int(erode(footprint, 1).sum()) < 8

    def object_pixels(self, src, tgt, region, g, colours) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of ``region`` showing the object's colours in the target and in the source,
        leaving out look-alike pixels of other objects (same colour in the source, off ``g``)."""
        others = self.has(src, colours) & region & ~g
        return self.has(tgt, colours) & region & ~others, self.has(src, colours) & region & ~others

    def _check(self, sub: SubEdit, src: np.ndarray, tgt: np.ndarray) -> float:
        # Work on the crop around everything this sub-edit touches (fast, same result).
        et = edit_type(sub.edit_type)
        return et.check(JudgeCrop(self, sub, src, tgt, et.box_keys))


def faint_change(src: np.ndarray, tgt: np.ndarray, union: np.ndarray) -> float:
    """Share of the background, away from every mask (2 px), where a channel moved by more
    than :data:`FAINT_LEVELS`: a faint blotch (16 levels) passes ``bg_changed`` (> 16 levels)
    and, being small, the SSIM, PSNR and L1 bounds too. The renderer is exact, so a clean
    background does not move at all; the 2 px keep anti-aliased rims of edited objects out."""
    away = ~dilate(union, 2)
    n = int(away.sum())
    if n == 0:
        return 0.0
    moved = max_channel(np.abs(src.astype(np.int16) - tgt.astype(np.int16))) > FAINT_LEVELS
    return float((moved & away).sum() / n)


def pattern_mask(
    xs: np.ndarray, ys: np.ndarray, pattern: str, r: float, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels (xs, ys) show the tint for ``pattern`` anchored at (cx, cy) — the
    renderer's own rule (:func:`mcie.transforms.synthetic.scene._fill`) — and each pixel's
    margin: how far (px) the anchor may move before that pixel flips."""
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    if pattern == "striped":
        period = max(4.0, r / 2.5)
        t = (dx + dy) / period
        # moving the anchor by e along x moves dx + dy by e
        return np.floor(t) % 2 == 1, np.abs(t - np.round(t)) * period
    step = max(5.0, r / 2.0)
    gx = dx - step * np.round(dx / step)
    gy = dy - step * np.round(dy / step)
    dist = np.sqrt(gx * gx + gy * gy)
    return dist <= 0.25 * step, np.abs(dist - 0.25 * step)


#: pixels closer than this (px of anchor movement) to a pattern edge are not judged: the anchor
#: is fitted to within ~0.1 px, and the renderer computes in float32
PATTERN_MARGIN = 0.3


def _fit_pattern(
    xs: np.ndarray, ys: np.ndarray, seen: np.ndarray, pattern: str, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """The pattern's tint mask at the anchor that best explains ``seen`` (tint per pixel), and
    which pixels it is sure of (at least :data:`PATTERN_MARGIN` from an edge of the pattern:
    the anchor is fitted, not known, and a stripe edge can pass within 0.01 px of a whole
    diagonal of pixel centres). Candidates are scored on their sure pixels. Stripes: their one
    phase is scanned over a whole period (0.25 px), then refined (0.05 px). Dots: the first
    guess is the circular mean of the tint pixels' phase, refined within 1 px (0.25 px), then
    0.05 px."""
    if pattern == "striped":
        period = max(4.0, r / 2.5)
        # one phase (c = cx + cy) within one period of two bands: cheap to scan whole
        guess = (0.0, 0.0)
        grids = [(np.arange(0.0, 2 * period, 0.25), [0.0]), (np.arange(-0.25, 0.26, 0.05), [0.0])]
    else:
        step = max(5.0, r / 2.0)
        # dots sit on the grid through the anchor: their phase is the anchor's
        guess = (
            _circular_mean(xs[seen] + 0.5, step) if seen.any() else 0.0,
            _circular_mean(ys[seen] + 0.5, step) if seen.any() else 0.0,
        )
        coarse, fine = np.arange(-1.0, 1.01, 0.25), np.arange(-0.25, 0.26, 0.05)
        grids = [(coarse, coarse), (fine, fine)]

    def fit(a: float, b: float) -> float:
        m, margin = pattern_mask(xs, ys, pattern, r, guess[0] + a, guess[1] + b)
        sure = margin >= PATTERN_MARGIN
        return float((m == seen)[sure].mean()) if sure.any() else 0.0

    for gx, gy in grids:
        best = max((fit(a, b), a, b) for a in gx for b in gy)
        guess = (guess[0] + best[1], guess[1] + best[2])
    expected, margin = pattern_mask(xs, ys, pattern, r, *guess)
    return expected, margin >= PATTERN_MARGIN


def _circular_mean(v: np.ndarray, period: float) -> float:
    """The mean of ``v`` taken modulo ``period`` (on the circle), in [0, period)."""
    a = 2 * np.pi * v / period
    return float(np.angle(np.exp(1j * a).mean()) % (2 * np.pi) * period / (2 * np.pi))

"""Pixel metrics shared by the pipeline's judge, ``mcie audit`` and CIE-Bench.

Images are ``uint8`` (H, W, 3); masks are ``bool`` (H, W). "Background" means the pixels a
metric is computed over (outside the union of edit masks); callers pass it explicitly.

Choices (ours, documented in the dataset card):

* SSIM is computed on luma (ITU-R BT.601 Y) with a 7x7 uniform window and K1=0.01, K2=0.03,
  as scikit-image's default; the masked SSIM averages the SSIM map over background pixels whose
  whole window lies in the background (the background eroded by the window radius, 3 px).
* PSNR is over RGB in the background, capped at :data:`PSNR_CAP` dB so identical images give a
  number.
* L1 is the mean absolute difference over RGB in the background, on a 0..1 scale.
"""

from __future__ import annotations

import numpy as np

PSNR_CAP = 100.0
SSIM_WINDOW = 7
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def any_channel(x: np.ndarray) -> np.ndarray:
    """``x.any(axis=-1)`` for (..., C) arrays: OR of the channel planes, the same values ~10x
    faster than numpy's reduction over a short last axis (it runs once per pixel)."""
    out = x[..., 0].astype(bool)
    for c in range(1, x.shape[-1]):
        out |= x[..., c].astype(bool)
    return out


def max_channel(x: np.ndarray) -> np.ndarray:
    """``x.max(axis=-1)`` for (..., C) arrays, as the element-wise maximum of the planes
    (exact, ~3x faster for the same reason as :func:`any_channel`)."""
    out = x[..., 0].copy()
    for c in range(1, x.shape[-1]):
        np.maximum(out, x[..., c], out=out)
    return out


def box_sum(x: np.ndarray, r: int) -> np.ndarray:
    """Sum of ``x`` over the (2r+1)x(2r+1) window around each pixel (zero padding), via an
    integral image: O(HW) whatever ``r``. Masks are summed in int32 (exact and ~2x faster)."""
    x = np.asarray(x, dtype=np.int32 if x.dtype == bool else np.float64)
    # r zeros each side for the window, plus one leading zero row/column for the integral
    c = np.pad(x, ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


#: up to this radius, dilation and erosion OR shifted copies (separable: rows, then columns);
#: beyond it the integral image's O(HW) wins. Both give the same masks.
_SHIFT_MAX_R = 4


def _or_shifts(m: np.ndarray, r: int, axis: int, outside: bool) -> np.ndarray:
    """OR of ``m`` over the window [-r, r] along ``axis``; pixels whose window leaves the
    image count ``outside`` there."""
    out = m.copy()
    n = m.shape[axis]
    lo = (slice(None),) * axis
    for k in range(1, min(r, n) + 1):
        out[lo + (slice(None, -k),)] |= m[lo + (slice(k, None),)]
        out[lo + (slice(k, None),)] |= m[lo + (slice(None, -k),)]
    if outside:
        out[lo + (slice(None, min(r, n)),)] = True
        out[lo + (slice(max(n - r, 0), None),)] = True
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of ``mask`` by a (2r+1)-pixel square."""
    if r <= 0:
        return mask.copy()
    m = mask.astype(bool)
    if r <= _SHIFT_MAX_R:
        return _or_shifts(_or_shifts(m, r, 0, False), r, 1, False)
    return box_sum(m, r) > 0


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion of ``mask`` by a (2r+1)-pixel square (outside the image counts as out)."""
    if r <= 0:
        return mask.copy()
    m = mask.astype(bool)
    if r <= _SHIFT_MAX_R:  # the complement's dilation, the outside counting as in
        return ~_or_shifts(_or_shifts(~m, r, 0, True), r, 1, True)
    return box_sum(m, r) == (2 * r + 1) ** 2


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma as float64 (H, W) on a 0..255 scale."""
    f = img.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def ssim_map(a: np.ndarray, b: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """Per-pixel SSIM of the luma of ``a`` and ``b`` (uniform window, sample covariance);
    values near the border use a truncated window and should be masked out by the caller."""
    r = window // 2
    x, y = luma(a), luma(b)
    n = float(window * window)
    mx, my = box_sum(x, r) / n, box_sum(y, r) / n
    cov_norm = n / (n - 1)
    vx = (box_sum(x * x, r) / n - mx * mx) * cov_norm
    vy = (box_sum(y * y, r) / n - my * my) * cov_norm
    vxy = (box_sum(x * y, r) / n - mx * my) * cov_norm
    num = (2 * mx * my + _C1) * (2 * vxy + _C2)
    den = (mx * mx + my * my + _C1) * (vx + vy + _C2)
    return num / den


def background_for_ssim(background: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """The background eroded by the SSIM window radius, so no window straddles a region or the
    image border."""
    return erode(background, window // 2)


def masked_ssim(a: np.ndarray, b: np.ndarray, background: np.ndarray) -> float:
    """Mean SSIM over background pixels whose whole window is background; 1.0 when none is.

    A window over identical pixels has SSIM exactly 1, so the map is only computed on the crop
    around pixels that differ (exact, and most of an edit's background is untouched).
    """
    m = background_for_ssim(background)
    total = int(m.sum())
    if total == 0:
        return 1.0
    diff = any_channel(a != b)
    if not diff.any():
        return 1.0
    r = SSIM_WINDOW // 2
    ys = np.flatnonzero(diff.any(axis=1))
    xs = np.flatnonzero(diff.any(axis=0))
    h, w = diff.shape
    # centres whose window touches a differing pixel lie within r of it; their windows need
    # another r of context
    y0, y1 = max(ys[0] - 2 * r, 0), min(ys[-1] + 2 * r + 1, h)
    x0, x1 = max(xs[0] - 2 * r, 0), min(xs[-1] + 2 * r + 1, w)
    inner = np.zeros_like(m)
    inner[max(ys[0] - r, 0) : ys[-1] + r + 1, max(xs[0] - r, 0) : xs[-1] + r + 1] = True
    sel = m & inner
    smap = ssim_map(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
    part = smap[sel[y0:y1, x0:x1]].sum()
    return float((part + (total - int(sel.sum()))) / total)


def masked_mse(a: np.ndarray, b: np.ndarray, background: np.ndarray) -> float:
    """Mean squared error over RGB in the background, 0..255 scale; 0.0 when it is empty."""
    if not background.any():
        return 0.0
    d = a[background].astype(np.float64) - b[background].astype(np.float64)
    return float((d * d).mean())


def psnr_from_mse(mse: float, cap: float = PSNR_CAP) -> float:
    """PSNR in dB for 8-bit images, capped at ``cap``."""
    if mse <= 0:
        return cap
    return float(min(cap, 10.0 * np.log10(255.0**2 / mse)))


def masked_psnr(a: np.ndarray, b: np.ndarray, background: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR (dB) over RGB in the background, capped at ``cap``."""
    return psnr_from_mse(masked_mse(a, b, background), cap)


def masked_l1(a: np.ndarray, b: np.ndarray, background: np.ndarray) -> float:
    """Mean absolute RGB difference in the background, 0..1 scale; 0.0 when it is empty."""
    if not background.any():
        return 0.0
    d = np.abs(a[background].astype(np.int16) - b[background].astype(np.int16))
    return float(d.mean() / 255.0)


def changed(a: np.ndarray, b: np.ndarray, tol: int) -> np.ndarray:
    """``bool`` (H, W): pixels where any channel differs by more than ``tol`` levels."""
    return any_channel(np.abs(a.astype(np.int16) - b.astype(np.int16)) > tol)


def changed_fraction(a: np.ndarray, b: np.ndarray, background: np.ndarray, tol: int = 16) -> float:
    """Share of background pixels where any channel moved by more than ``tol`` levels."""
    if not background.any():
        return 0.0
    return float(changed(a, b, tol)[background].mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks; two empty masks count 1.0."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def background_metrics(src: np.ndarray, tgt: np.ndarray, background: np.ndarray) -> dict[str, float]:
    """The background-consistency figures the judge and CIE-Bench report, by name.

    Computed once from the per-pixel difference: an untouched background (the common case for
    an editor that composites on the source) returns the perfect values without further work,
    and the sums only visit pixels that differ — same results as the individual functions.
    """
    diff = any_channel(src != tgt) & background
    n = int(background.sum())
    if n == 0 or not diff.any():
        return {"bg_ssim": 1.0, "bg_psnr": PSNR_CAP, "bg_l1": 0.0, "bg_changed": 0.0}
    d = np.abs(src[diff].astype(np.int16) - tgt[diff].astype(np.int16))  # (n_diff, 3)
    sq = (d.astype(np.float64) ** 2).sum() / (3 * n)
    return {
        "bg_ssim": masked_ssim(src, tgt, background),
        "bg_psnr": psnr_from_mse(float(sq)),
        "bg_l1": float(d.sum() / (3 * n) / 255.0),
        "bg_changed": float(any_channel(d > 16).sum() / n),
    }

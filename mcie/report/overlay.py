"""Mask overlays and thumbnails: the one home of how a sub-edit's region is drawn on an image.

Each sub-edit k gets a filled, semi-transparent tint in its own colour (:data:`PALETTE`, the
legend order) and a dashed black-and-white outline. The tint tells sub-edits apart; the dashed
outline stays visible on any object, even one of the tint's own colour (a plain coloured
outline vanishes on a red object when the outline is red — a defect of the first preview).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from mcie.metrics import erode

#: tint colours of sub-edits 0..4 (legend order): five hues far apart on the colour wheel
#: (red, green, blue, orange, purple from Sasha Trubetskoy's "20 distinct colours")
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
)
#: share of the tint in a masked pixel: enough to see, little enough to see the object through
ALPHA = 0.45
#: dash length of the outline in pixels
DASH = 3


def colour(k: int) -> tuple[int, int, int]:
    """The tint of sub-edit ``k``."""
    return PALETTE[k % len(PALETTE)]


def hex_colour(k: int) -> str:
    """The tint of sub-edit ``k`` as ``#rrggbb`` (for HTML legends)."""
    return "#{:02x}{:02x}{:02x}".format(*colour(k))


def overlay(img: np.ndarray, masks: list[np.ndarray], alpha: float = ALPHA) -> np.ndarray:
    """``img`` (H, W, 3 uint8) with each mask filled in its tint and outlined in black/white
    dashes; later sub-edits draw over earlier ones where masks overlap."""
    out = img.astype(np.float32)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    dash_white = ((xx + yy) // DASH) % 2 == 0  # (H, W): alternate black and white along edges
    edges = []
    for k, m in enumerate(masks):
        if m.shape != (h, w):
            raise ValueError(f"mask {k} has shape {m.shape}, the image {(h, w)}")
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour(k), np.float32)
        edges.append(m & ~erode(m, 1))
    for edge in edges:  # outlines last, so a later tint never hides an earlier outline
        out[edge & dash_white] = 255
        out[edge & ~dash_white] = 0
    return out.round().astype(np.uint8)


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``size`` (width, height): a pixel is inside when at least half of
    what it covers is (area averaging; nearest-neighbour would drop thin parts at random)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(size, Image.BOX)
    return np.asarray(img) >= 128


def thumbnail(img: np.ndarray, masks: list[np.ndarray] | None, side: int, alpha: float = ALPHA) -> np.ndarray:
    """``img`` shrunk to ``side`` pixels on its long edge, with the masks overlaid at the
    thumbnail's resolution (so outlines stay one pixel wide and visible); ``alpha=0`` draws
    the outlines only, leaving the image's colours true."""
    h, w = img.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
    if not masks:
        return small
    return overlay(small, [shrink_mask(m, size) for m in masks], alpha)


def jpeg_data_uri(img: np.ndarray, quality: int = 80) -> str:
    """A ``data:image/jpeg;base64,…`` URI of ``img`` (inline in HTML: no file, no request)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png;base64,…`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

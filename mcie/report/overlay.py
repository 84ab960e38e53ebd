"""Mask overlays: the one home of how a sub-edit's region is drawn on an image.

Pictures people judge by eye keep their true colours: :func:`outline` draws each sub-edit's
mask as a thin ring *outside* its region — :data:`RING` pixels in the sub-edit's colour
(:data:`PALETTE`, the legend order) and a one-pixel dark ring beyond it, so the ring shows on
any background, even one of its own colour — and leaves every pixel inside the mask as it is.
:func:`fit` scales a picture for a contact sheet: small images are enlarged with
nearest-neighbour (no blur, no invented colours) *before* the rings are drawn, so a ring around
a 32-px object is two screen pixels wide, not two image pixels.

:func:`overlay` (a filled, semi-transparent tint with a dashed black-and-white edge) is the
tinted view, kept for the places that show a separate "regions" picture beside the clean ones
(a tint changes the object's colour: yellow under red reads orange).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from mcie.metrics import dilate, erode

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
#: width of the coloured ring of :func:`outline`, pixels (of the picture as shown)
RING = 2
#: the dark ring beyond it: visible where the background has the ring's own colour
DARK = (24, 24, 24)


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


def outline(img: np.ndarray, masks: list[np.ndarray], ring: int = RING) -> np.ndarray:
    """``img`` (H, W, 3 uint8) with each mask outlined *outside* its region: ``ring`` pixels in
    the sub-edit's colour, then one dark pixel. Pixels inside a mask keep their colour (a ring
    may cross another sub-edit's region where two masks touch; later sub-edits draw over
    earlier ones)."""
    out = img.copy()
    h, w = img.shape[:2]
    for k, m in enumerate(masks):
        if m.shape != (h, w):
            raise ValueError(f"mask {k} has shape {m.shape}, the image {(h, w)}")
        m = m.astype(bool)
        near = dilate(m, ring)
        out[dilate(near, 1) & ~near] = DARK
        out[near & ~m] = colour(k)
    return out


def scale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` resized to ``size`` (width, height): nearest-neighbour when enlarging (the
    region keeps its exact pixels), :func:`shrink_mask` when shrinking."""
    h, w = mask.shape
    if size[0] >= w and size[1] >= h:
        img = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(size, Image.NEAREST)
        return np.asarray(img) >= 128
    return shrink_mask(mask, size)


def fit(
    img: np.ndarray, masks: list[np.ndarray] | None, size: tuple[int, int], ring: int = RING
) -> np.ndarray:
    """``img`` scaled to ``size`` (width, height) — nearest-neighbour when enlarging, Lanczos
    when shrinking — with the masks (image-sized) outlined at the new size (:func:`outline`)."""
    h, w = img.shape[:2]
    up = size[0] >= w and size[1] >= h
    scaled = np.asarray(Image.fromarray(img).resize(size, Image.NEAREST if up else Image.LANCZOS))
    if not masks:
        return scaled
    return outline(scaled, [scale_mask(m, size) for m in masks], ring)


def jpeg_data_uri(img: np.ndarray, quality: int = 80) -> str:
    """A ``data:image/jpeg;base64,…`` URI of ``img`` (inline in HTML: no file, no request)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png;base64,…`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

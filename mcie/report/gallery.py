"""What the HTML gallery embeds per sample: the clean pictures and one mask layer per sub-edit.

The pictures carry no ink at all: the page's script draws the masks over them at the size they
are shown (thin rings outside each region by default, a tint on request, each mask on or off in
the enlarged view; ``assets/gallery.js``), so the colours a reader judges are the image's own.

* A picture whose long side is at most ``side`` is embedded at full resolution. Given its
  stored bytes (a shard's ``src.jpg``), those bytes go in verbatim: the page shows exactly the
  pixels the shard holds, with no second JPEG pass. Arrays (a benchmark's output) are embedded
  as PNG, lossless.
* A larger picture is shrunk to ``side`` on its long edge (Lanczos) and embedded as JPEG: the
  page of a build of 1024-px photos stays a few MB.
* A mask is a 1-bit PNG at the picture's embedded size, opaque white inside the region and
  transparent outside (a few hundred bytes): the script scales it with nearest-neighbour, so
  its edge stays on the image's pixel grid at any zoom.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from mcie.report.overlay import jpeg_data_uri, png_data_uri, shrink_mask
from mcie.shards import image_ext

#: MIME types of stored image bytes embedded verbatim, by member extension
STORED_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


def embedded_size(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(width, height) a picture of ``shape`` (H, W, …) is embedded at: as is when its long
    side is at most ``side``, else shrunk to ``side`` on its long edge."""
    h, w = shape[:2]
    if max(h, w) <= side:
        return w, h
    scale = side / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def picture_uri(
    img: np.ndarray, side: int, stored: tuple[bytes, str] | None = None, quality: int = 85
) -> str:
    """A ``data:`` URI of ``img`` for the gallery (see the module docstring); ``stored`` is
    ``(bytes, extension)`` of the same picture as stored, embedded verbatim when it fits."""
    size = embedded_size(img.shape, side)
    if size == (img.shape[1], img.shape[0]):
        if stored is not None and stored[1] in STORED_TYPES:
            return f"data:{STORED_TYPES[stored[1]]};base64," + base64.b64encode(stored[0]).decode("ascii")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", optimize=True)
        return png_data_uri(buf.getvalue())
    return jpeg_data_uri(np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS)), quality)


def mask_uri(mask: np.ndarray, size: tuple[int, int]) -> str:
    """A 1-bit PNG ``data:`` URI of ``mask`` at ``size`` (width, height): white inside,
    transparent outside."""
    m = mask.astype(bool) if mask.shape == (size[1], size[0]) else shrink_mask(mask, size)
    img = Image.fromarray(m.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255])
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True, transparency=0, bits=1)
    return png_data_uri(buf.getvalue())


def sample_pictures(
    columns: list[tuple[str, np.ndarray, tuple[bytes, str] | None]], masks: list[np.ndarray], side: int
) -> dict[str, Any]:
    """A gallery item's pictures: ``{"img": [[header, URI], …], "m": [mask URI per sub-edit],
    "wh": [width, height]}``. ``columns`` are (header, image, stored bytes or None); the masks
    are image-sized, in sub-edit order, and are drawn over every column alike."""
    size = embedded_size(columns[0][1].shape, side)
    return {
        "img": [[head, picture_uri(img, side, stored)] for head, img, stored in columns],
        "m": [mask_uri(m, size) for m in masks],
        "wh": list(size),
    }


def shard_pictures(
    members: dict[str, bytes], src: np.ndarray, tgt: np.ndarray, masks: list[np.ndarray], side: int
) -> dict[str, Any]:
    """:func:`sample_pictures` of a shard sample (its members as :func:`mcie.shards.read_tar`
    yields them, decoded to ``src``, ``tgt`` and ``masks``): source | target, each from its
    stored bytes where it fits."""
    ext = image_ext(members)
    stored = {name: (members[f"{name}.{ext}"], ext) for name in ("src", "tgt")}
    return sample_pictures([("source", src, stored["src"]), ("target", tgt, stored["tgt"])], masks, side)

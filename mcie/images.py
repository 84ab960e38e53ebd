"""Image and mask codecs used by every table and shard.

In memory, images are ``uint8`` arrays of shape (H, W, 3) in RGB and masks are ``bool`` arrays
of shape (H, W). On disk masks are 8-bit PNGs holding 0 or 255.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
from PIL import Image

#: JPEG quality for shard images; 95 keeps edges of small objects crisp at 256 px.
JPEG_QUALITY = 95
#: zlib level for PNGs in intermediate tables: level 1 is ~5x faster than 6 for ~10% more bytes.
PNG_LEVEL_FAST = 1


def encode_png(array: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode an RGB image (H, W, 3) or a mask (H, W) as PNG bytes (masks as 0/255)."""
    if array.ndim == 2:
        array = np.where(array, np.uint8(255), np.uint8(0)) if array.dtype == bool else array
        img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L")
    else:
        img = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode an RGB image as baseline JPEG (4:4:4 so thin colour edges survive)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="RGB").save(
        buf, format="JPEG", quality=quality, subsampling=0
    )
    return buf.getvalue()


#: the most pixels (width x height) a reader decodes from a shard, a table or a user's file:
#: the image source's own default limit (``ImageSourceConfig.max_pixels``), far above any
#: sample's size; a bigger header is a hostile or damaged file, refused before its pixels are
#: decoded (a few bytes of PNG can claim gigapixels). ``MCIE_MAX_IMAGE_PIXELS`` raises it.
MAX_PIXELS = 64_000_000
ENV_MAX_PIXELS = "MCIE_MAX_IMAGE_PIXELS"


class ImageTooLarge(ValueError):
    """An image's header claims more pixels than :func:`max_pixels`."""


def max_pixels() -> int:
    """The pixel cap in force (:data:`MAX_PIXELS` or ``$MCIE_MAX_IMAGE_PIXELS``)."""
    raw = os.environ.get(ENV_MAX_PIXELS)
    try:
        return int(raw) if raw else MAX_PIXELS
    except ValueError:
        raise ValueError(f"{ENV_MAX_PIXELS}={raw!r} is not a number of pixels") from None


def check_pixels(width: int, height: int) -> None:
    """Raise :class:`ImageTooLarge` when ``width`` x ``height`` is over :func:`max_pixels`."""
    cap = max_pixels()
    if width * height > cap:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the cap of {cap} "
            f"({ENV_MAX_PIXELS} raises it)"
        )


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to an RGB ``uint8`` array (H, W, 3); :class:`ImageTooLarge` over
    the pixel cap."""
    with Image.open(io.BytesIO(data)) as img:
        check_pixels(*img.size)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def decode_mask(data: bytes) -> np.ndarray:
    """Decode a mask PNG to a ``bool`` array (H, W); any non-zero pixel is inside;
    :class:`ImageTooLarge` over the pixel cap."""
    with Image.open(io.BytesIO(data)) as img:
        check_pixels(*img.size)
        return np.asarray(img.convert("L")) > 127


def pixel_hash(array: np.ndarray) -> str:
    """A content hash of decoded pixels (shape included), hex, no dots."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()

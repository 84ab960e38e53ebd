"""Image and mask codecs used by every table and shard.

In memory, images are ``uint8`` arrays of shape (H, W, 3) in RGB and masks are ``bool`` arrays
of shape (H, W). On disk masks are 8-bit PNGs holding 0 or 255.
"""

from __future__ import annotations

import hashlib
import io

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


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to an RGB ``uint8`` array (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def decode_mask(data: bytes) -> np.ndarray:
    """Decode a mask PNG to a ``bool`` array (H, W); any non-zero pixel is inside."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) > 127


def pixel_hash(array: np.ndarray) -> str:
    """A content hash of decoded pixels (shape included), hex, no dots."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()

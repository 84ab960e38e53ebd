"""A folder of broken and awkward image files, and what each must become."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

#: file name → expected outcome: "ok", or the reason code
EXPECTED = {
    "good.jpg": "ok",
    "truncated.jpg": "source_unreadable",
    "empty.png": "source_unreadable",
    "not_an_image.png": "source_unreadable",
    "cmyk.jpg": "ok",
    "sixteen_bit.png": "ok",
    "palette_alpha.png": "ok",
    "exif_rotated.jpg": "ok",
    "animated.gif": "ok",
    "huge.png": "source_refused",
    "tiny.png": "source_refused",
    "sub" + os.sep + "nested.webp": "ok",
}


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def _forged_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` (tiny on disk): a decompression bomb."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def make_awkward_folder(d: str) -> dict[str, str]:
    """Write the files of :data:`EXPECTED` into ``d``; returns EXPECTED keyed by full path."""
    os.makedirs(os.path.join(d, "sub"), exist_ok=True)
    img = Image.fromarray(_gradient(96, 64))
    img.save(os.path.join(d, "good.jpg"), quality=90)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    with open(os.path.join(d, "truncated.jpg"), "wb") as fh:
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    open(os.path.join(d, "empty.png"), "wb").close()
    with open(os.path.join(d, "not_an_image.png"), "w") as fh:
        fh.write("this is a text file with an image extension\n")
    img.convert("CMYK").save(os.path.join(d, "cmyk.jpg"))
    sixteen = (np.linspace(0, 65535, 80 * 48).reshape(48, 80)).astype(np.uint16)
    Image.fromarray(sixteen, mode="I;16").save(os.path.join(d, "sixteen_bit.png"))
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(os.path.join(d, "palette_alpha.png"), transparency=0)
    # 96x64 stored, EXIF orientation 6 (rotate 90° clockwise to view): viewed as 64x96
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(os.path.join(d, "exif_rotated.jpg"), exif=exif.tobytes(), quality=90)
    frames = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(os.path.join(d, "animated.gif"), save_all=True, append_images=frames[1:], duration=50)
    with open(os.path.join(d, "huge.png"), "wb") as fh:
        fh.write(_forged_png(30000, 30000))
    Image.fromarray(_gradient(16, 16)).save(os.path.join(d, "tiny.png"))
    img.save(os.path.join(d, "sub", "nested.webp"))
    return {os.path.join(d, k): v for k, v in EXPECTED.items()}

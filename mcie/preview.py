"""``mcie preview OUT``: a contact sheet (PNG) of samples with each sub-edit's mask outlined in
its own colour on the target, and the instruction underneath — to look at what a build made."""

from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mcie import storage
from mcie.metrics import erode
from mcie.shards import SHARDS_DIR, decode_sample, read_tar, shard_paths
from mcie.validate import check_sample

#: outline colours for sub-edits 0..4 (legend order)
OUTLINE = [(255, 0, 0), (0, 200, 0), (0, 90, 255), (255, 0, 255), (255, 140, 0)]


def _outline(img: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    out = img.copy()
    for k, m in enumerate(masks):
        edge = m & ~erode(m, 1)
        edge |= np.roll(edge, 1, axis=0) & m  # 2 px thick, still inside the mask
        out[edge] = OUTLINE[k % len(OUTLINE)]
    return out


def contact_sheet(
    out: str, n: int = 16, columns: int = 4, shard_dir: str = SHARDS_DIR, tile: int = 256
) -> Image.Image:
    """The first ``n`` samples (by shard, then key) of ``out/shard_dir`` as one image."""
    samples = []
    for path in shard_paths(out, shard_dir):
        for key, members in read_tar(path):
            check_sample(key, members, path)  # a damaged sample: an error naming shard and key
            samples.append(members)
            if len(samples) == n:
                break
        if len(samples) == n:
            break
    if not samples:
        raise ValueError(f"no samples in {storage.join(out, shard_dir)}")
    font = ImageFont.load_default(size=13)
    text_h = 104  # five sub-instructions and the status line
    cell_w, cell_h = 2 * tile + 12, tile + text_h
    rows = (len(samples) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, members in enumerate(samples):
        meta, src, tgt, masks = decode_sample(members)
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        sheet.paste(Image.fromarray(src).resize((tile, tile)), (x, y))
        sheet.paste(
            Image.fromarray(_outline(tgt, masks)).resize((tile, tile), Image.NEAREST), (x + tile + 4, y)
        )
        lines = []
        for k, sub in enumerate(meta["sub_edits"]):
            lines.append((OUTLINE[k % len(OUTLINE)], f"{k}: {sub['instruction']}"))
        ty = y + tile + 2
        for colour, line in lines:
            for part in textwrap.wrap(line, width=80)[:1]:
                draw.text((x + 2, ty), part, fill=colour, font=font)
                ty += 16
        draw.text((x + 2, ty), f"[{meta['status']}{': ' + meta['reason'] if meta['reason'] else ''}]",
                  fill=(90, 90, 90), font=font)  # fmt: skip
    return sheet


def write_preview(out: str, path: str | None = None, n: int = 16, shard_dir: str = SHARDS_DIR) -> str:
    """Write the contact sheet of ``out`` to ``path`` (default ``out/preview.png``); either may
    be local or a storage URL."""
    path = path or storage.join(out, "preview.png" if shard_dir == SHARDS_DIR else f"preview-{shard_dir}.png")
    buf = io.BytesIO()
    contact_sheet(out, n=n, shard_dir=shard_dir).save(buf, format="PNG", optimize=True)
    storage.atomic_write(path, buf.getvalue())
    return path

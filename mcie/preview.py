"""``mcie preview OUT``: a contact sheet (PNG) of samples, to look at what a build made.

Each cell: the clean source and target under column headers — true colours, no tint — with
each sub-edit's mask drawn on both as a thin ring outside its region in the sub-edit's colour
(small images enlarged with nearest-neighbour first, so the ring never covers the object;
:mod:`mcie.report.overlay`), then the sample's status as the index records it (after a Label
Studio review too) with its reason and key, and every sub-instruction with its mask colour, the
judge's verdict ✓/✗ and score, wrapped, never cut.
"""

from __future__ import annotations

import io

from PIL import Image

from mcie import storage
from mcie.layout import INDEX_FILE, SHARDS_DIR
from mcie.managed import refuse_managed_output
from mcie.report.sheet import SheetCell
from mcie.report.sheet import contact_sheet as draw_sheet
from mcie.shards import decode_sample, read_tar, shard_paths
from mcie.tables import read_table
from mcie.validate import check_sample

STATUS_TONE = {"accepted": (46, 125, 50), "rejected": (198, 40, 40), "pending": (160, 110, 0)}


def _index_status(out: str) -> dict[str, tuple[str, str]]:
    """key → (status, reason) from the index: the record of where a sample ended (a review in
    Label Studio changes it there); empty when the folder has no index."""
    path = storage.join(out, INDEX_FILE)
    if not storage.exists(path):
        return {}
    rows = read_table(path, columns=["key", "status", "reason"]).to_pylist()
    return {r["key"]: (r["status"], r["reason"] or "") for r in rows}


def _cell(key: str, members: dict[str, bytes], status: tuple[str, str] | None) -> SheetCell:
    meta, src, tgt, masks = decode_sample(members)
    subs = meta["sub_edits"]
    st, reason = status or (meta.get("status", "?"), meta.get("reason") or "")
    return SheetCell(
        images=[src, tgt],
        masks=masks,
        title=f"[{st}{': ' + reason if reason else ''}] {key}",
        title_colour=STATUS_TONE.get(st, (60, 60, 60)),
        subs=[(s["instruction"], s.get("executed"), (s.get("scores") or {}).get("compliance")) for s in subs],
    )


def preview_cells(out: str, n: int = 16, shard_dir: str = SHARDS_DIR) -> list[SheetCell]:
    """The cells of the first ``n`` samples (by shard, then key) of ``out/shard_dir``."""
    status = _index_status(out)
    cells: list[SheetCell] = []
    for path in shard_paths(out, shard_dir):
        for key, members in read_tar(path):
            check_sample(key, members, path)  # a damaged sample: an error naming shard and key
            cells.append(_cell(key, members, status.get(key)))
            if len(cells) == n:
                return cells
    return cells


def contact_sheet(
    out: str, n: int = 16, columns: int = 4, shard_dir: str = SHARDS_DIR, tile: int = 256
) -> Image.Image:
    """The first ``n`` samples (by shard, then key) of ``out/shard_dir`` as one image."""
    cells = preview_cells(out, n, shard_dir)
    if not cells:
        raise ValueError(f"no samples in {storage.join(out, shard_dir)}")
    return draw_sheet(["source", "target"], cells, tile=tile, per_row=columns)


def write_preview(out: str, path: str | None = None, n: int = 16, shard_dir: str = SHARDS_DIR) -> str:
    """Write the contact sheet of ``out`` to ``path`` (default ``out/preview.png``); either may
    be local or a storage URL."""
    path = path or storage.join(out, "preview.png" if shard_dir == SHARDS_DIR else f"preview-{shard_dir}.png")
    refuse_managed_output(path)  # a PNG over a shard or the index would lose the data
    buf = io.BytesIO()
    contact_sheet(out, n=n, shard_dir=shard_dir).save(buf, format="PNG", optimize=True)
    storage.atomic_write(path, buf.getvalue())
    return path

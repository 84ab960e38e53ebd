"""Contact sheets (PNG) shared by ``mcie preview`` and CIE-Bench runs: a grid of cells, each a
row of images under column headers, then the cell's title (key, status) and every
sub-instruction with its mask colour, its verdict ✓/✗ and score — wrapped at word boundaries
to the cell's width, never cut.

A cell that carries its masks shows every image alike: scaled to the tile (nearest-neighbour
when enlarging) and each mask outlined outside its region at the tile's resolution
(:func:`mcie.report.overlay.fit`), so the pictures keep their true colours and the columns
(source | target, or expected | output) can be compared pixel for pixel.

Text is drawn with DejaVu Sans (shipped inside matplotlib, so it is there wherever the reports
work) because it has the ✓ and ✗ glyphs Pillow's default font lacks.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mcie.report.overlay import colour, fit

GAP = 6  # pixels between images and around cells
LINE = 16  # text line height
HEADER = 16  # column header height
OK, BAD, UNKNOWN = (46, 125, 50), (198, 40, 40), (110, 110, 110)


@functools.lru_cache(maxsize=8)
def font(size: int = 13, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans at ``size`` (matplotlib's copy), or Pillow's default font if it is absent."""
    try:
        from matplotlib import font_manager

        path = font_manager.findfont(f"DejaVu Sans{':bold' if bold else ''}", fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except Exception:  # pragma: no cover - matplotlib is a core dependency
        return ImageFont.load_default(size=size)


def wrap(text: str, width: int, fnt: ImageFont.FreeTypeFont) -> list[str]:
    """``text`` split into lines no wider than ``width`` pixels, at spaces (a single word
    longer than the line is broken, as nothing else can be done with it)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}" if line else word
        if fnt.getlength(trial) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        while fnt.getlength(word) > width and len(word) > 1:  # a word wider than the line
            cut = max(1, int(len(word) * width / fnt.getlength(word)) - 1)
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines or [""]


@dataclasses.dataclass
class SheetCell:
    """One sample of a contact sheet."""

    images: list[np.ndarray]  # one per column, any size (shown at ``tile`` px)
    title: str  # e.g. "[rejected: sub_edit_not_executed] 0a1b…"
    subs: list[tuple[str, bool | None, float | None]]  # (sub-instruction, executed, score)
    title_colour: tuple[int, int, int] = (60, 60, 60)
    note: str = ""  # an extra line under the sub-instructions (e.g. the complex instruction)
    #: image-sized masks in sub-edit order, outlined on every image; None: images shown as given
    masks: list[np.ndarray] | None = None


def _tile(img: np.ndarray, masks: list[np.ndarray] | None, tile: int) -> Image.Image:
    """One image of a cell at ``tile`` × ``tile``: with masks, nearest-neighbour enlarged and
    outlined (:func:`fit`); without, resized as before (Lanczos)."""
    if masks is None:
        return Image.fromarray(img).resize((tile, tile), Image.LANCZOS)
    return Image.fromarray(fit(img, masks, (tile, tile)))


def _cell_lines(cell: SheetCell, width: int) -> list[tuple[str, tuple[int, int, int], int]]:
    """(text, colour, swatch index or -1) per line of a cell's text block."""
    f = font()
    out = [(t, cell.title_colour, -1) for t in wrap(cell.title, width, f)]
    for k, (text, done, score) in enumerate(cell.subs):
        mark = "✓" if done is True else "✗" if done is False else "?"
        tail = "" if score is None else f"  ({score:.2f})"
        tone = OK if done is True else BAD if done is False else UNKNOWN
        for i, part in enumerate(wrap(f"{mark} {k}: {text}{tail}", width - 16, f)):
            out.append((part, tone, k if i == 0 else -2))
    if cell.note:
        out += [(t, (80, 80, 80), -1) for t in wrap(cell.note, width, f)]
    return out


def contact_sheet(
    columns: list[str], cells: list[SheetCell], tile: int = 256, per_row: int = 4
) -> Image.Image:
    """The cells in a grid of ``per_row`` cells a row; ``columns`` are the image headers."""
    if not cells:
        raise ValueError("no samples for the contact sheet")
    n_img = len(columns)
    cell_w = n_img * tile + (n_img - 1) * GAP
    blocks = [_cell_lines(c, cell_w) for c in cells]
    rows = [list(range(i, min(i + per_row, len(cells)))) for i in range(0, len(cells), per_row)]
    heights = [HEADER + tile + GAP + LINE * max(len(blocks[i]) for i in r) + 2 * GAP for r in rows]
    sheet = Image.new(
        "RGB", (GAP + min(per_row, len(cells)) * (cell_w + 2 * GAP), sum(heights) + GAP), "white"
    )
    draw = ImageDraw.Draw(sheet)
    bold = font(13, bold=True)
    y0 = GAP
    for r, h in zip(rows, heights, strict=True):
        for j, i in enumerate(r):
            x0 = GAP + j * (cell_w + 2 * GAP)
            for c, (head, img) in enumerate(zip(columns, cells[i].images, strict=True)):
                x = x0 + c * (tile + GAP)
                draw.text((x, y0), head, fill=(30, 30, 30), font=bold)
                sheet.paste(_tile(img, cells[i].masks, tile), (x, y0 + HEADER))
            ty = y0 + HEADER + tile + GAP
            for text, tone, k in blocks[i]:
                tx = x0
                if k >= 0:  # the swatch of the sub-edit's mask colour
                    draw.rectangle((tx, ty + 3, tx + 10, ty + 13), fill=colour(k), outline=(0, 0, 0))
                if k != -1:
                    tx += 16
                draw.text((tx, ty), text, fill=tone, font=font())
                ty += LINE
            if len(r) > 1 and j < len(r) - 1:  # a rule between cells
                draw.line((x0 + cell_w + GAP, y0, x0 + cell_w + GAP, y0 + h - GAP), fill=(220, 220, 220))
        y0 += h
        draw.line((GAP, y0 - GAP // 2, sheet.width - GAP, y0 - GAP // 2), fill=(220, 220, 220))
    return sheet

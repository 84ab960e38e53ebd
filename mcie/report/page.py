"""One self-contained HTML page: inline CSS, inline JS, images as ``data:`` URIs.

No server, no CDN, no request leaves the page: it opens from a file, offline. Everything that
comes from data (instructions, keys, reason codes, error text) is escaped — ``html.escape`` in
the static sections, ``textContent`` in the gallery script, and the embedded JSON has every
``<`` written as ``\\u003c`` so no string can close its ``<script>`` element.

The gallery is drawn by the script from one JSON document (see :func:`gallery_json`): filters
by status, reason, edit type and number of sub-edits, sorting by status (the failures first),
key, score or reason, and paging, over the items that carry pictures. The pictures are clean;
the script draws each mask over them at the size shown — a thin ring outside the region, or a
tint on request — and a click opens a picture enlarged (full resolution at least, small images
enlarged by whole pixels), each mask switched on or off there; ``combos`` gives the count of
every (status, reason, sub-edits, edit types) combination in the whole index, so the page says
how many candidates match a filter in total, not only how many it shows — in a size that does
not grow with the number of candidates.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import importlib.resources
import json
from collections.abc import Iterable, Sequence
from typing import Any

from mcie.report.charts import STATUS_COLOURS
from mcie.report.overlay import ALPHA, PALETTE, png_data_uri

#: gallery cards per page
PER_PAGE = 24
#: width of a card's picture, CSS pixels (a click enlarges it to full resolution or more)
DISPLAY = 176


def _asset(name: str) -> str:
    """A file of ``mcie/report/assets`` (the page's CSS and the gallery script), as text."""
    return importlib.resources.files("mcie.report").joinpath("assets", name).read_text("utf-8")


#: the page's one script; the CSP allows it by hash (:func:`_script_hash`) and nothing else
_GALLERY_JS = _asset("gallery.js")


@dataclasses.dataclass
class Section:
    """One titled part of the page; ``body`` is trusted HTML built with this module's helpers."""

    id: str
    title: str
    body: str


def esc(value: Any) -> str:
    """HTML-escape ``value`` (None → an em dash: a missing figure is shown as missing)."""
    return "—" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A figure for a table cell: floats rounded, None as an em dash (never Python's ``None``)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """An HTML table; cells are escaped (use :class:`Raw` for trusted HTML in a cell)."""

    def cell(v: Any) -> str:
        return v.html if isinstance(v, Raw) else esc(fmt(v))

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclasses.dataclass(frozen=True)
class Raw:
    """Trusted HTML for a table cell."""

    html: str


def figure(png: bytes, alt: str) -> str:
    """A chart (PNG bytes) inline."""
    return f'<figure><img class="chart" src="{png_data_uri(png)}" alt="{esc(alt)}"></figure>'


def gallery_json(
    items: list[dict[str, Any]],
    combos: list[list[Any]],
    filters: Sequence[tuple[str, str]],
    note: str,
    per_page: int = PER_PAGE,
    status_order: Sequence[str] = (),
    display: int = DISPLAY,
) -> dict[str, Any]:
    """The gallery's data. ``items``: ``{"k": key, "st": status, "r": reason, "n": sub-edit
    count, "t": [edit types], "sub": [[text, executed (bool|None), score|None], …],
    "img": [[column header, data URI], …], "err": error text, optional "ins": the complex
    instruction, "sc": the sample's score (the score sort), "m": [mask data URI per sub-edit]
    and "wh": [width, height] of the pictures (:func:`mcie.report.gallery.sample_pictures`)}``;
    ``combos``: ``[status, reason, n, [types], count]`` over everything the items were drawn
    from; ``filters``: (field, label) pairs shown as drop-downs (fields: ``st``, ``r``, ``t``,
    ``n``); ``status_order``: the statuses in the order the status sort and drop-down list
    them (others after, by name); ``display``: the width of a card's picture in CSS pixels."""
    return {
        "items": items,
        "combos": combos,
        "filters": [list(f) for f in filters],
        "note": note,
        "perPage": per_page,
        "palette": ["#{:02x}{:02x}{:02x}".format(*c) for c in PALETTE],
        "alpha": ALPHA,
        "statusColours": STATUS_COLOURS,
        "statusOrder": list(status_order),
        "display": display,
    }


def _script_hash() -> str:
    """The CSP source of the gallery script (``'sha256-…'`` of its exact text)."""
    digest = hashlib.sha256(_GALLERY_JS.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def _script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` at all, so no ``</script>``."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(title: str, sections: list[Section], gallery: dict[str, Any] | None = None, meta: str = "") -> str:
    """The whole page as a string."""
    nav = " · ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    if gallery is not None:
        nav += ' · <a href="#gallery">Gallery</a>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # no request may leave the page: forbid every fetch except inline data; the one script
        # allowed to run is the page's own gallery script, named by its hash, so a value from
        # a data file that slipped through unescaped still cannot run a script of its own
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"img-src data:; style-src 'unsafe-inline'; script-src '{_script_hash()}'\">",
        f"<title>{esc(title)}</title><style>{_asset('page.css')}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p class='meta'>{meta}</p><nav>{nav}</nav></header><main>",
    ]
    for s in sections:
        parts.append(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>')
    if gallery is not None:
        parts += [
            '<section id="gallery"><h2>Gallery</h2>',
            '<p class="note" id="gallery-note"></p><div id="legend"></div>',
            '<div id="filters"></div>',
            '<p id="gallery-status" aria-live="polite"></p>',
            '<div id="pager"><button id="prev" type="button">&larr; previous</button>'
            '<span id="page-label"></span><button id="next" type="button">next &rarr;</button></div>',
            '<div id="cards"></div><dialog id="zoom" aria-label="enlarged pictures"></dialog></section>',
            f'<script type="application/json" id="gallery-data">{_script_json(gallery)}</script>',
            f"<script>{_GALLERY_JS}</script>",
        ]
    parts.append("</main></body></html>")
    return "\n".join(parts)

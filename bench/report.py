"""CIE-Bench reports: what a run writes besides ``samples.jsonl`` and what ``bench compare``
writes — tables, charts, a contact sheet and one static HTML page each.

* **Uncertainty.** Every headline figure comes with a 95% bootstrap confidence interval over
  sets (percentile method, :data:`BOOTSTRAP` resamples, seeded: the same run gives the same
  interval). A figure pooled over sub-instructions (compliance by edit type) is resampled by
  set too (a cluster bootstrap: sub-instructions of one set are not independent). With 10 sets
  per group, 0.70 against 0.90 is within the noise, and the intervals show it.
* **Comparisons** put editors side by side (one column each) overall, by number of
  sub-instructions and by edit type; when the runs share their sets, the difference to the
  first run comes with a *paired* bootstrap interval (the same resampled sets for both).
* **Charts** (matplotlib, :mod:`mcie.report.charts`) have axes, the count behind every bar,
  the editor's name and the intervals as error bars; a figure of 0 shows as 0.00, not as an
  empty chart. Missing figures print as ``—``, never Python's ``None``.
* **Contact sheet** (``contact.png``): source | expected | output under column headers, all
  three drawn alike — true colours, each region outlined outside its edge, small sets enlarged
  with nearest-neighbour first — and every sub-instruction with its verdict ✓/✗ and judge
  score, wrapped at words: which sub-instruction failed is visible at a glance, and expected
  and output can be compared colour for colour.
"""

from __future__ import annotations

import collections
import csv
import html
import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.report import charts
from mcie.report.gallery import sample_pictures
from mcie.report.page import Raw, Section, esc, figure, fmt, gallery_json, render, table
from mcie.report.sheet import SheetCell, contact_sheet

#: bootstrap resamples and seed of every interval
BOOTSTRAP = 1000
SEED = 0
#: the per-set figures with intervals: (samples.jsonl field, label)
SET_METRICS = (
    ("compliance", "instruction compliance"),
    ("all_executed", "all-executed rate"),
    ("compliance_exact", "IC exact"),
    ("background_ssim", "background SSIM"),
    ("background_psnr", "background PSNR (dB)"),
    ("background_l1", "background L1"),
)
#: summary.md / summary.csv columns (summary key, header)
SUMMARY_COLUMNS = (
    ("instruction_compliance", "compliance"),
    ("ic_exact", "IC exact"),
    ("all_executed_rate", "all executed"),
    ("background_ssim", "bg SSIM"),
    ("background_psnr", "bg PSNR"),
    ("background_l1", "bg L1"),
    ("l1", "L1"),
    ("l2", "L2"),
)
RUN_FILES = ("summary.json", "samples.jsonl")


#: a spreadsheet runs a cell that starts with one of these as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v: Any) -> Any:
    """A text cell from a run folder (an editor name, an edit type) made inert for
    spreadsheets: a leading formula character gets a ``'`` before it (OWASP's advice)."""
    return "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v


def _md(v: Any) -> str:
    """Text from a run folder for a Markdown table cell: HTML escaped (Markdown viewers render
    HTML), ``|`` escaped and line breaks flattened, so a name cannot add cells, rows or markup."""
    return html.escape(str(v), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([[_csv_cell(v) for v in r] for r in rows])
    return buf.getvalue()


# ---------------------------------------------------------------------------- statistics


def _resample(n: int, seed: int = SEED, b: int = BOOTSTRAP) -> np.ndarray:
    """(b, n) indices of ``b`` resamples of ``n`` sets with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def bootstrap_ci(values: Sequence[float], seed: int = SEED) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean of ``values`` (None when empty)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None
    means = v[_resample(v.size, seed)].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def ratio_ci(num: Sequence[float], den: Sequence[float], seed: int = SEED) -> tuple[float, float] | None:
    """95% cluster-bootstrap interval of ``sum(num) / sum(den)``, resampling sets (pairs)."""
    a, b = np.asarray(num, float), np.asarray(den, float)
    if a.size == 0 or b.sum() == 0:
        return None
    idx = _resample(a.size, seed)
    tot = b[idx].sum(axis=1)
    ratios = np.divide(a[idx].sum(axis=1), tot, out=np.full(tot.shape, np.nan), where=tot > 0)
    ratios = ratios[np.isfinite(ratios)]
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def paired_diff_ci(a: Sequence[float], b: Sequence[float], seed: int = SEED) -> tuple[float, float, float]:
    """Mean of ``b - a`` over paired sets and its 95% paired-bootstrap interval."""
    d = np.asarray(b, float) - np.asarray(a, float)
    means = d[_resample(d.size, seed)].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _value(rows: list[dict[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in rows if r.get(field) is not None]


def run_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures with intervals from a run's per-set rows: overall and by number of
    sub-instructions (every :data:`SET_METRICS`), and compliance by edit type (pooled)."""

    def block(group: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"sets": len(group)}
        for field, _ in SET_METRICS:
            vals = _value(group, field)
            out[field] = {"value": float(np.mean(vals)) if vals else None, "ci": bootstrap_ci(vals)}
        return out

    by_n = collections.defaultdict(list)
    for r in rows:
        by_n[r["num_sub_edits"]].append(r)
    types = sorted({t for r in rows for t in r["edit_types"]})
    by_type = {}
    for t in types:
        num = [sum(e for tt, e in zip(r["edit_types"], r["executed"], strict=True) if tt == t) for r in rows]
        den = [sum(1 for tt in r["edit_types"] if tt == t) for r in rows]
        by_type[t] = {
            "sub_instructions": int(sum(den)),
            "value": float(sum(num) / sum(den)),
            "ci": ratio_ci(num, den),
        }
    return {
        "overall": block(rows),
        "by_num_sub_edits": {str(k): block(v) for k, v in sorted(by_n.items())},
        "by_edit_type": by_type,
    }


# ---------------------------------------------------------------------------- reading a run


def load_run(run: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """A run folder's summary, per-set rows and gallery pictures by set id (``{"img": [[header,
    URI], …], "m": [mask URI, …], "wh": [width, height]}``; ``{}`` when absent)."""
    for name in RUN_FILES:
        if not os.path.isfile(os.path.join(run, name)):
            raise UsageError(f"{run!r} is not a bench run (no {name})")
    with open(os.path.join(run, "summary.json")) as fh:
        summary = json.load(fh)
    rows = []
    with open(os.path.join(run, "samples.jsonl")) as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{run}/samples.jsonl line {n}: not JSON ({exc.msg})") from exc
    thumbs = {}
    path = os.path.join(run, "gallery.jsonl")
    if os.path.isfile(path):
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    g = json.loads(line)
                    thumbs[int(g["set_id"])] = _pictures(g)
    return summary, rows, thumbs


def _pictures(g: dict[str, Any]) -> dict[str, Any]:
    """A ``gallery.jsonl`` line's pictures for the page. The run folder is untrusted: only
    ``data:image/`` URIs pass (the page's policy would refuse anything else anyway) and the size
    must be two positive integers; a line of an older run (no masks) shows its pictures alone."""

    def ok(uri: Any) -> bool:
        return isinstance(uri, str) and uri.startswith("data:image/")

    img = [[str(h), u] for h, u in g.get("img") or [] if ok(u)]
    masks = [u for u in g.get("m") or [] if ok(u)]
    wh = g.get("wh")
    if not (
        isinstance(wh, list) and len(wh) == 2 and all(isinstance(v, int) and 0 < v < 1 << 16 for v in wh)
    ):
        return {"img": img, "m": [], "wh": None}
    return {"img": img, "m": masks, "wh": wh}


# ---------------------------------------------------------------------------- what a run writes


class RunGallery:
    """Collects, while a run goes, the first sets' images for the contact sheet and small
    thumbnails for the HTML gallery (at most ``max_items`` sets: the page stays small)."""

    def __init__(self, editor: str, max_items: int = 120, sheet_items: int = 8, thumb: int = 256):
        self.editor, self.max_items, self.sheet_items, self.thumb = editor, max_items, sheet_items, thumb
        self.cells: list[SheetCell] = []
        self.thumbs: list[dict[str, Any]] = []

    def add(self, item, output: np.ndarray, res: dict[str, Any]) -> None:
        """Record one set (a :class:`BenchItem`, the editor's output, its result row)."""
        if len(self.cells) >= self.sheet_items and len(self.thumbs) >= self.max_items:
            return
        regions = item.regions
        if len(self.cells) < self.sheet_items:
            self.cells.append(
                SheetCell(
                    images=[item.src, item.expected, output],
                    masks=regions,
                    title=_set_title(res),
                    subs=_subs(item.sub_instructions, res),
                    title_colour=(46, 125, 50) if res["all_executed"] else (198, 40, 40),
                    note=f"instruction: {item.instruction}",
                )
            )
        if len(self.thumbs) < self.max_items:
            columns = [
                ("source", item.src, None),
                ("expected", item.expected, None),
                ("output", output, None),
            ]
            self.thumbs.append(
                {
                    "set_id": item.set_id,
                    "sub_instructions": item.sub_instructions,
                    **sample_pictures(columns, regions, self.thumb),
                }
            )

    def write(self, out: str) -> None:
        """``contact.png`` and ``gallery.jsonl`` into the run folder."""
        # every report file is written atomically: a full disk never leaves a cut file
        if self.cells:
            buf = io.BytesIO()
            contact_sheet(
                ["source", "expected", f"output: {self.editor}"], self.cells, tile=256, per_row=2
            ).save(buf, format="PNG", optimize=True)
            storage.atomic_write(os.path.join(out, "contact.png"), buf.getvalue())
        lines = "".join(json.dumps(t, sort_keys=True) + "\n" for t in self.thumbs)
        storage.atomic_write(os.path.join(out, "gallery.jsonl"), lines)


def _set_title(res: dict[str, Any]) -> str:
    done = sum(bool(e) for e in res["executed"])
    return f"set {res['set_id']} · {done} of {len(res['executed'])} sub-instructions executed"


def _subs(texts: list[str], res: dict[str, Any]) -> list[tuple[str, bool | None, float | None]]:
    scores = res.get("judge_scores") or res.get("agreement") or [None] * len(texts)
    return [(t, bool(e), s) for t, e, s in zip(texts, res["executed"], scores, strict=False)]


def write_run_reports(
    out: str, summary: dict[str, Any], rows: list[dict[str, Any]], gallery: RunGallery
) -> None:
    """Everything a run writes besides samples.jsonl: summary.json/.md/.csv, the two charts,
    contact.png, gallery.jsonl and report.html; each atomically (whole or absent)."""
    storage.write_json(os.path.join(out, "summary.json"), summary)
    stats = run_stats(rows)
    _write_summary_md(out, summary, stats)
    _write_summary_csv(out, summary)
    editor = summary["editor"]
    storage.atomic_write(os.path.join(out, "compliance_by_num_sub_edits.png"), _chart_by_n({editor: stats}))
    storage.atomic_write(os.path.join(out, "compliance_by_edit_type.png"), _chart_by_type({editor: stats}))
    gallery.write(out)
    write_run_html(out)


def _ci_text(ci: tuple[float, float] | None, digits: int = 3) -> str:
    return "—" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _write_summary_md(out: str, s: dict[str, Any], stats: dict[str, Any]) -> None:
    ic = stats["overall"]["compliance"]
    lines = [
        f"# CIE-Bench: {_md(s['editor'])}",
        "",
        f"{_md(s['sets'])} sets, decomposition: {_md(s.get('decomposition', '—'))}; compliance checker: "
        f"{_md(s.get('checker') or '—')} (IC exact: the exact-target checker). Instruction compliance "
        f"{fmt(ic['value'], 4)}, 95% bootstrap CI {_ci_text(ic['ci'])} ({BOOTSTRAP} resamples of sets).",
        "",
        "| group | sets | " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " | compliance 95% CI |",
        "|---" * (len(SUMMARY_COLUMNS) + 3) + "|",
    ]
    groups = [("overall", s, stats["overall"])] + [
        (f"{k} sub-instructions", v, stats["by_num_sub_edits"].get(k, {}))
        for k, v in s["by_num_sub_edits"].items()
    ]
    for name, v, st in groups:
        cells = [fmt(v.get(k), 4) for k, _ in SUMMARY_COLUMNS]
        ci = _ci_text((st.get("compliance") or {}).get("ci"))
        lines.append(f"| {_md(name)} | {_md(v['sets'])} | " + " | ".join(map(_md, cells)) + f" | {ci} |")
    lines += ["", "| edit type | sub-instructions | compliance | 95% CI |", "|---|---|---|---|"]
    for t, v in s["by_edit_type"].items():
        ci = _ci_text(stats["by_edit_type"].get(t, {}).get("ci"))
        lines.append(f"| {_md(t)} | {_md(v['sub_instructions'])} | {_md(fmt(v['compliance'], 4))} | {ci} |")
    extra = {k: s.get(k) for k in ("clip_i", "clip_t", "dino", "lpips")}
    shown = ", ".join(f"{k.upper().replace('_', '-')} {fmt(v, 4)}" for k, v in extra.items())
    lines += ["", f"{_md(shown)} (—: not computed; {_md(s.get('unavailable', ''))})."]
    storage.atomic_write(os.path.join(out, "summary.md"), "\n".join(lines) + "\n")


def _write_summary_csv(out: str, s: dict[str, Any]) -> None:
    keys = (
        "instruction_compliance", "ic_exact", "sub_instruction_compliance", "all_executed_rate",
        "background_ssim", "background_psnr", "background_l1", "l1", "l2",
    )  # fmt: skip
    rows: list[list[Any]] = [["group", "sets", *keys]]
    groups = [("overall", s)] + [(f"{k} sub-instructions", v) for k, v in s["by_num_sub_edits"].items()]
    rows += [[name, v["sets"], *[v.get(k) for k in keys]] for name, v in groups]
    for t, v in s["by_edit_type"].items():
        row = dict.fromkeys(keys, "")
        row["sub_instruction_compliance"] = v["compliance"]
        rows.append([f"type:{t}", v["sub_instructions"], *row.values()])
    storage.atomic_write(os.path.join(out, "summary.csv"), _csv(rows))


# ---------------------------------------------------------------------------- charts


def _chart_by_n(stats_of: dict[str, dict[str, Any]]) -> bytes:
    names = ", ".join(stats_of)
    series, errors, counts = {}, {}, {}
    for editor, st in stats_of.items():
        groups = st["by_num_sub_edits"]
        series[editor] = {k: g["compliance"]["value"] for k, g in groups.items()}
        errors[editor] = {k: g["compliance"]["ci"] for k, g in groups.items() if g["compliance"]["ci"]}
        counts.update({k: g["sets"] for k, g in groups.items()})
    return charts.bars(
        series,
        f"Instruction compliance by number of sub-instructions — {names}",
        "instruction compliance (95% CI)",
        "sub-instructions per set (n = sets)",
        counts=counts,
        errors=errors,
    )


def _chart_by_type(stats_of: dict[str, dict[str, Any]]) -> bytes:
    names = ", ".join(stats_of)
    series, errors, counts = {}, {}, {}
    for editor, st in stats_of.items():
        series[editor] = {t: g["value"] for t, g in st["by_edit_type"].items()}
        errors[editor] = {t: g["ci"] for t, g in st["by_edit_type"].items() if g["ci"]}
        counts.update({t: g["sub_instructions"] for t, g in st["by_edit_type"].items()})
    return charts.bars(
        series,
        f"Sub-instruction compliance by edit type — {names}",
        "compliance (95% CI)",
        "edit type (n = sub-instructions)",
        counts=counts,
        errors=errors,
    )


# ---------------------------------------------------------------------------- HTML


def _cell(m: dict[str, Any], digits: int = 3) -> Raw:
    ci = m.get("ci")
    extra = "" if ci is None else f" <span class='note'>{esc(_ci_text(ci, digits))}</span>"
    return Raw(esc(fmt(m.get("value"), digits)) + extra)


def _overall_table(stats_of: dict[str, dict[str, Any]]) -> str:
    rows = [["sets", *[st["overall"]["sets"] for st in stats_of.values()]]]
    for field, label in SET_METRICS:
        rows.append([label, *[_cell(st["overall"][field]) for st in stats_of.values()]])
    return table(["figure (95% CI)", *stats_of], rows)


def _breakdown_tables(stats_of: dict[str, dict[str, Any]]) -> str:
    ns = sorted({k for st in stats_of.values() for k in st["by_num_sub_edits"]}, key=int)
    rows = []
    for k in ns:
        groups = [st["by_num_sub_edits"].get(k) for st in stats_of.values()]
        sets = next((g["sets"] for g in groups if g), 0)
        rows.append([k, sets, *[_cell(g["compliance"]) if g else "—" for g in groups]])
    by_n = table(["sub-instructions", "sets", *stats_of], rows)
    types = sorted({t for st in stats_of.values() for t in st["by_edit_type"]})
    rows = []
    for t in types:
        groups = [st["by_edit_type"].get(t) for st in stats_of.values()]
        n = next((g["sub_instructions"] for g in groups if g), 0)
        rows.append([t, n, *[_cell(g) if g else "—" for g in groups]])
    by_t = table(["edit type", "sub-instructions", *stats_of], rows)
    return (
        "<h3>Instruction compliance by number of sub-instructions</h3>"
        + by_n
        + figure(_chart_by_n(stats_of), "compliance by number of sub-instructions")
        + "<h3>Sub-instruction compliance by edit type</h3>"
        + by_t
        + figure(_chart_by_type(stats_of), "compliance by edit type")
    )


def _gallery(rows: list[dict[str, Any]], thumbs: dict[int, dict[str, Any]], editor: str) -> dict[str, Any]:
    items, combos = [], collections.Counter()
    for r in rows:
        outcome = "all executed" if r["all_executed"] else "not all executed"
        types = sorted(set(r["edit_types"]))
        combos[(outcome, "", r["num_sub_edits"], tuple(types))] += 1
        if r["set_id"] not in thumbs:
            continue
        texts = r.get("sub_instructions") or [f"({t})" for t in r["edit_types"]]
        items.append(
            {
                "k": f"set {r['set_id']}",
                "st": outcome,
                "r": "",
                "n": r["num_sub_edits"],
                "t": types,
                "sub": [[t, e, None if s is None else round(float(s), 3)] for t, e, s in _subs(texts, r)],
                "sc": _score(r.get("compliance")),
                **thumbs[r["set_id"]],
                "err": "",
                "ins": r["instruction"],
            }
        )
    note = (
        f"The first {len(items)} sets: source | expected | output of {editor}, all in their true "
        "colours, each region outlined outside its edge (switch to a tint above; click a picture "
        "to enlarge it and choose the regions); ✓/✗ is the checker's verdict per "
        "sub-instruction, the number the judge's score. Totals count every set."
    )
    return gallery_json(
        items,
        [[s, r, n, list(t), c] for (s, r, n, t), c in sorted(combos.items())],
        [("st", "outcome"), ("t", "edit type"), ("n", "sub-instructions")],
        note,
        status_order=["not all executed", "all executed"],
    )


def _score(v: Any) -> float | None:
    """A set's score for the gallery's sort (None when absent or not a number)."""
    return round(float(v), 4) if isinstance(v, int | float) and not isinstance(v, bool) else None


def write_run_html(run: str, path: str | None = None) -> str:
    """``report.html`` of a run folder (``mcie bench report``); returns its path."""
    summary, rows, thumbs = load_run(run)
    editor = summary["editor"]
    stats = {editor: run_stats(rows)}
    meta = " · ".join(
        [
            esc(os.path.abspath(run)),
            f"{esc(summary.get('sets'))} sets",  # every value from the run folder is escaped
            f"checker {esc(summary.get('checker') or '—')}",
            f"decomposition {esc(summary.get('decomposition', '—'))}",
            f"intervals: {BOOTSTRAP} bootstrap resamples, seed {SEED}",
        ]
    )
    extra = [
        [k.upper().replace("_", "-"), fmt(summary.get(k), 4)] for k in ("clip_i", "clip_t", "dino", "lpips")
    ]
    sections = [
        Section(
            "overall",
            "Overall",
            _overall_table(stats)
            + table(["figure", editor], extra)
            + f"<p class='note'>—: not computed ({esc(summary.get('unavailable', ''))}).</p>",
        ),  # fmt: skip
        Section("breakdowns", "Breakdowns", _breakdown_tables(stats)),
    ]
    html = render(f"CIE-Bench run: {editor}", sections, _gallery(rows, thumbs, editor), meta)
    path = path or os.path.join(run, "report.html")
    storage.atomic_write(path, html)
    return path


# ---------------------------------------------------------------------------- compare


def compare(runs: list[str], out: str) -> str:
    """``comparison.md``, ``comparison.csv`` and ``comparison.html`` over several runs (one
    column per editor, breakdowns, intervals, paired differences); returns the Markdown path."""
    loaded = [load_run(r) for r in runs]
    names = _unique_names([s["editor"] for s, _, _ in loaded])
    stats_of = {n: run_stats(rows) for n, (_, rows, _) in zip(names, loaded, strict=True)}
    os.makedirs(out, exist_ok=True)
    diffs = _paired_diffs(names, [rows for _, rows, _ in loaded])
    head = ["editor", "sets", "instruction_compliance", "ic_exact", "sub_instruction_compliance",
            "all_executed_rate", "background_ssim", "background_psnr", "background_l1",
            "l1", "l2"]  # fmt: skip
    md = ["# CIE-Bench comparison", "", "| " + " | ".join([*head, "compliance 95% CI"]) + " |"]
    md.append("|" + "---|" * (len(head) + 1))
    for n, (s, _, _) in zip(names, loaded, strict=True):
        cells = [_md(n), *[_md(fmt(s.get(k), 4)) for k in head[1:]]]
        md.append("| " + " | ".join(cells) + f" | {_ci_text(stats_of[n]['overall']['compliance']['ci'])} |")
    if diffs:
        md += ["", f"Paired difference in instruction compliance against {_md(names[0])} (same sets):", ""]
        md += [f"- {_md(n)}: {d:+.4f} [{lo:+.4f}, {hi:+.4f}]" for n, (d, lo, hi) in diffs.items()]
    md_path = os.path.join(out, "comparison.md")
    storage.atomic_write(md_path, "\n".join(md) + "\n")
    table_rows: list[list[Any]] = [[*head, "compliance_ci_low", "compliance_ci_high"]]
    for n, (s, _, _) in zip(names, loaded, strict=True):
        ci = stats_of[n]["overall"]["compliance"]["ci"] or (None, None)
        table_rows.append([n, *[s.get(k) for k in head[1:]], *ci])
    storage.atomic_write(os.path.join(out, "comparison.csv"), _csv(table_rows))
    sections = [Section("overall", "Overall (one column per editor)", _overall_table(stats_of))]
    if diffs:
        rows = [[n, f"{d:+.4f}", _ci_text((lo, hi), 4), "yes" if lo > 0 or hi < 0 else "no"]
                for n, (d, lo, hi) in diffs.items()]  # fmt: skip
        sections.append(
            Section(
                "paired",
                f"Difference to {names[0]} (paired by set)",
                table(["editor", "Δ instruction compliance", "95% CI", "CI excludes 0"], rows),
            )
        )
    sections.append(Section("breakdowns", "Breakdowns", _breakdown_tables(stats_of)))
    meta = " · ".join(f"{esc(n)}: {esc(os.path.abspath(r))}" for n, r in zip(names, runs, strict=True))
    html = render(
        "CIE-Bench comparison", sections, None, meta + f" · {BOOTSTRAP} bootstrap resamples, seed {SEED}"
    )
    storage.atomic_write(os.path.join(out, "comparison.html"), html)
    return md_path


def _unique_names(names: list[str]) -> list[str]:
    """Editor names as column headers; a repeated editor gets ``#2``, ``#3``."""
    seen: collections.Counter = collections.Counter()
    out = []
    for n in names:
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n} #{seen[n]}")
    return out


def _paired_diffs(
    names: list[str], rows_of: list[list[dict[str, Any]]]
) -> dict[str, tuple[float, float, float]]:
    """Paired bootstrap differences of instruction compliance against the first run, when
    every run scored the same sets (by set id); else empty."""
    if len(rows_of) < 2:
        return {}
    base = {r["set_id"]: r["compliance"] for r in rows_of[0]}
    out = {}
    for n, rows in zip(names[1:], rows_of[1:], strict=True):
        other = {r["set_id"]: r["compliance"] for r in rows}
        if other.keys() != base.keys():
            return {}
        ids = sorted(base)
        out[n] = paired_diff_ci([base[i] for i in ids], [other[i] for i in ids])
    return out

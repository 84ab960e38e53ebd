"""``mcie report OUT``: one static HTML page about a build (``OUT/report.html`` by default).

What it shows: counts by status and reason, histograms of the judge's scores and the background
metrics by status, the audit figures when ``truth.parquet`` is there (:mod:`mcie.audit`), and a
gallery of samples — the clean source | target (the shard's own bytes when small enough, see
:mod:`mcie.report.gallery`) with each sub-edit's mask drawn over them by the page (a ring outside
the region, or a tint), click to enlarge, every sub-instruction with its verdict ✓/✗ and score,
key, status and reason — filtered by status, reason, edit type and number of sub-edits, sorted
by status (rejected first), key, score or reason, with paging.

**Gallery size (our choice, so a 90k build's page stays bounded — about 15 MB at the default
480 samples of 256-px images at full resolution, about 3 MB with ``--thumb 128``):** pictures are
embedded for a *stratified sample*, not for every candidate — at most ``per_group`` candidates
of every (status, reason, number of sub-edits) group, the first by key (keys are content
hashes, so this is an unbiased draw that a rebuild reproduces), and at most ``max_items`` in
all, taken round-robin over the groups so rare groups (a failure reason seen twice) are never
crowded out by accepted samples. The filters' totals still count the whole index: the page
embeds one count per (status, reason, sub-edits, edit types) combination, a few hundred
numbers whatever the build's size.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.keys import InvalidKeyError, check_shard_ref
from mcie.layout import BuildLayout
from mcie.managed import refuse_managed_output
from mcie.progress import track
from mcie.report import charts
from mcie.report.gallery import shard_pictures
from mcie.report.page import Raw, Section, esc, figure, gallery_json, render, table
from mcie.shards import ShardError, decode_sample, read_tar
from mcie.tables import iter_rows, open_parquet, system_allocator

#: the index columns the report reads (no pixels)
INDEX_COLUMNS = (
    "key", "shard", "status", "reason", "error", "num_sub_edits", "edit_types", "sub_instructions",
    "sub_executed", "sub_compliance", "compliance", "bg_ssim", "bg_psnr", "bg_l1", "bg_changed",
)  # fmt: skip
#: histogram panels: (index column, label)
SCORE_PANELS = (
    ("compliance", "judge: instruction compliance"),
    ("sub_compliance", "judge: sub-instruction score"),
    ("bg_ssim", "background SSIM"),
    ("bg_psnr", "background PSNR (dB)"),
    ("bg_l1", "background L1"),
    ("bg_changed", "background changed share"),
)
STATUS_ORDER = ("accepted", "rejected", "pending", "failed", "candidate")
#: the gallery's order: what needs a look first (accepted samples last)
GALLERY_ORDER = ("rejected", "failed", "pending", "candidate", "accepted")


def gallery_order(r: dict[str, Any]) -> tuple[int, str, str, str]:
    """Sort key of an index row in the gallery: status in :data:`GALLERY_ORDER`, reason, key."""
    s = r["status"]
    rank = GALLERY_ORDER.index(s) if s in GALLERY_ORDER else len(GALLERY_ORDER)
    return rank, s, r["reason"] or "", r["key"]


@dataclasses.dataclass(frozen=True)
class GalleryConfig:
    """How many samples the gallery embeds and how large their thumbnails are."""

    per_group: int = 12  # per (status, reason, number of sub-edits) group
    max_items: int = 480  # in all
    thumb: int = 256  # pictures up to this long side are embedded at full resolution, larger shrunk to it
    quality: int = 85  # JPEG quality of shrunk pictures

    def __post_init__(self) -> None:
        if self.per_group < 1 or self.max_items < 1:
            raise ValueError("per_group and max_items must be at least 1")
        if not 32 <= self.thumb <= 512:
            raise ValueError(f"thumb must be within 32..512 pixels, got {self.thumb}")


def _index_path(out: str) -> str:
    """The index of the build in ``out``, checked to be there with the report's columns (a
    UsageError otherwise)."""
    path = BuildLayout(out).index
    if not storage.exists(path):
        raise UsageError(f"{path} is missing: not the output folder of mcie build or mcie shard")
    with open_parquet(path) as pf:
        names = set(pf.schema_arrow.names)
    missing = [c for c in INDEX_COLUMNS if c not in names]
    if missing:  # a hand-edited or foreign table: name the columns, not pyarrow's internals
        raise UsageError(f"{path} lacks the column(s) {', '.join(missing)} of an mcie index")
    return path


def iter_index(out: str, batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
    """The index rows of the build in ``out`` (the report's columns), in file order, a batch
    of ``batch_rows`` in memory at a time (a UsageError when there is no index)."""
    return iter_rows(_index_path(out), list(INDEX_COLUMNS), batch_rows)


def read_index(out: str) -> list[dict[str, Any]]:
    """All the index rows of the build in ``out`` at once (a small build's; the report itself
    streams them with :func:`iter_index`)."""
    return list(iter_index(out))


def _status_key(s: str) -> tuple[int, str]:
    return (STATUS_ORDER.index(s) if s in STATUS_ORDER else len(STATUS_ORDER), s)


class CountTally:
    """Counts by status, by (status, reason), and per filter combination, one row at a time."""

    def __init__(self) -> None:
        self.by_status: collections.Counter = collections.Counter()
        self.by_reason: collections.Counter = collections.Counter()
        self.combos: collections.Counter = collections.Counter()
        self.candidates = 0

    def add(self, r: dict[str, Any]) -> None:
        self.candidates += 1
        self.by_status[r["status"]] += 1
        self.by_reason[(r["status"], r["reason"] or "")] += 1
        types = tuple(sorted(set(r["edit_types"] or [])))
        self.combos[(r["status"], r["reason"] or "", r["num_sub_edits"], types)] += 1

    def result(self) -> dict[str, Any]:
        """See :func:`counts`."""
        by_status, by_reason = self.by_status, self.by_reason
        return {
            "candidates": self.candidates,
            "by_status": {s: by_status[s] for s in sorted(by_status, key=_status_key)},
            "by_reason": {
                f"{s}:{r}" if r else s: n
                for (s, r), n in sorted(by_reason.items(), key=lambda x: (_status_key(x[0][0]), x[0][1]))
            },
            "combos": [[s, r, n, list(t), c] for (s, r, n, t), c in sorted(self.combos.items())],
        }


def counts(index: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status, by (status, reason), and per filter combination (the gallery's
    ``combos``: status, reason, number of sub-edits, sorted distinct edit types, count)."""
    tally = CountTally()
    for r in index:
        tally.add(r)
    return tally.result()


class GalleryTally:
    """The gallery's stratified sample (see the module docstring) drawn from rows met in any
    order: each group keeps its ``per_group`` smallest keys, so memory is bounded by the groups,
    not the index."""

    def __init__(self, config: GalleryConfig) -> None:
        self.config = config
        self.groups: dict[tuple, list[tuple[str, int, dict[str, Any]]]] = collections.defaultdict(list)
        self.seen = 0

    def add(self, r: dict[str, Any]) -> None:
        g = self.groups[(_status_key(r["status"]), r["reason"] or "", r["num_sub_edits"])]
        g.append((r["key"], self.seen, r))  # the row number breaks ties as a stable sort would
        self.seen += 1
        if len(g) >= 2 * self.config.per_group:
            self._trim(g)

    def _trim(self, g: list) -> None:
        g.sort(key=lambda x: x[:2])
        del g[self.config.per_group :]

    def result(self) -> list[dict[str, Any]]:
        """See :func:`select_gallery`."""
        for g in self.groups.values():
            self._trim(g)
        queues = [[x[2] for x in self.groups[k]] for k in sorted(self.groups)]
        chosen: list[dict[str, Any]] = []
        depth = 0
        while len(chosen) < self.config.max_items and any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q) and len(chosen) < self.config.max_items:
                    chosen.append(q[depth])
            depth += 1
        return sorted(chosen, key=lambda r: (_status_key(r["status"]), r["reason"] or "", r["key"]))


def select_gallery(index: Iterable[dict[str, Any]], config: GalleryConfig) -> list[dict[str, Any]]:
    """The stratified sample of index rows the gallery embeds (see the module docstring)."""
    tally = GalleryTally(config)
    for r in index:
        tally.add(r)
    return tally.result()


def _sub_rows(row: dict[str, Any]) -> list[list[Any]]:
    texts = row["sub_instructions"] or []
    done = row["sub_executed"] or [None] * len(texts)
    scores = row["sub_compliance"] or [None] * len(texts)
    return [
        [t, e, None if s is None else round(float(s), 3)]
        for t, e, s in zip(texts, done, scores, strict=False)
    ]


def load_thumbnails(
    out: str, rows: list[dict[str, Any]], config: GalleryConfig
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Pictures (``{"img": [[header, data URI], …], "m": [mask URI, …], "wh": [w, h]}``) of
    ``rows`` read from their shards, one pass per shard reading only the chosen samples' bytes;
    and the problems met (an unreadable shard or sample is reported, and its cards show without
    images: nothing is dropped)."""
    wanted: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        if r["shard"]:
            wanted[r["shard"]].add(r["key"])
    thumbs: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    # a progress line with an ETA every 30 s into a pipe, a bar on a terminal: a gallery can
    # span every shard of a large build
    for shard in track(sorted(wanted), "report: gallery", "shards"):
        keys = wanted[shard]
        try:
            # the index is untrusted: its shard column may only name a tar inside this build
            # (an absolute path would embed another build's images; a FIFO would hang the page)
            rel = check_shard_ref(shard, BuildLayout(out).index)
            for key, members in read_tar(BuildLayout(out).path(rel), keys=keys):
                try:
                    thumbs[key] = _sample_thumbs(members, config)
                except Exception as exc:  # one bad sample costs its images, not the page
                    problems.append(f"{shard}:{key}: {type(exc).__name__}: {exc}")
        except (ShardError, InvalidKeyError, OSError) as exc:
            problems.append(f"{shard}: {type(exc).__name__}: {exc}")
            continue
        for key in sorted(keys - thumbs.keys()):
            if not any(p.startswith(f"{shard}:{key}:") for p in problems):
                problems.append(f"{shard}:{key}: not found in the shard")
    return thumbs, problems


def _sample_thumbs(members: dict[str, bytes], config: GalleryConfig) -> dict[str, Any]:
    """The sample's clean pictures and mask layers (:func:`shard_pictures`)."""
    _, src, tgt, masks = decode_sample(members)
    return shard_pictures(members, src, tgt, masks, config.thumb)


class ScoreTally:
    """The histogram panels' values by status, one row at a time, packed as 32-bit floats
    (the index stores them so: four bytes a value, not a Python float and a list slot)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, array.array]] = {col: {} for col, _ in SCORE_PANELS}

    def add(self, r: dict[str, Any]) -> None:
        for col, _ in SCORE_PANELS:
            vals: Iterable = (r["sub_compliance"] or []) if col == "sub_compliance" else [r[col]]
            groups = self.values[col]
            for v in vals:
                if v is not None:
                    groups.setdefault(r["status"], array.array("f")).append(v)

    def result(self) -> list[tuple[str, dict[str, array.array]]]:
        """``(label, {status: values})`` per panel, statuses in their order, empty ones left out."""
        panels = []
        for col, label in SCORE_PANELS:
            groups = self.values[col]
            panels.append((label, {s: groups[s] for s in sorted(groups, key=_status_key) if groups[s]}))
        return panels


def _audit_section(out: str) -> Section | None:
    if not storage.exists(BuildLayout(out).truth):
        return None
    from mcie.audit import audit

    a = audit(out)
    if "mask_miou" not in a:
        return None
    c = a["confusion"]
    body = [
        "<p class='note'>Measured against <code>truth.parquet</code> (what the synthetic generator "
        "really did; no pipeline stage reads it). A positive is a candidate with an injected failure.</p>",
        table(
            [
                "audit",
                "filter precision",
                "filter recall",
                "mask mIoU (clean)",
                "sub-edits",
                "tp",
                "fp",
                "fn",
                "tn",
            ],
            [
                [
                    "OK" if a["ok"] else f"{a['num_problems']} problems",
                    a["filter_precision"],
                    a["filter_recall"],
                    a["mask_miou"],
                    a["mask_count"],
                    c["tp"],
                    c["fp"],
                    c["fn"],
                    c["tn"],
                ]
            ],
        ),  # fmt: skip
    ]
    if a["problems"]:
        body.append("<ul>" + "".join(f"<li class='err'>{esc(p)}</li>" for p in a["problems"]) + "</ul>")
    pos = a["positives_by_failure"]
    body.append(
        figure(
            charts.bars(
                {"mask IoU": a["mask_miou_by_type"]},
                "Mask mIoU of clean candidates by edit type",
                "mIoU vs truth masks",
                "edit type",
            ),
            "mask mIoU by edit type",
        )
    )
    body.append(
        figure(
            charts.bars(
                {"filter recall": a["recall_by_failure"]},
                "Share of injected failures the filter rejected",
                "recall",
                "injected failure type",
                counts=pos,
            ),
            "filter recall by failure type",
        )
    )
    body += _detection_parts(a)
    return Section("audit", "Audit against the truth", "".join(body))


def _calibration_section(out: str) -> Section | None:
    """The judge against the reviewers (``mcie calibrate``'s ``calibration.json``), if run."""
    from mcie.card import CALIBRATION_FILE

    path = storage.join(out, CALIBRATION_FILE)
    if not storage.exists(path):
        return None
    c = storage.read_json(path)

    def cell(f: dict[str, Any]) -> str:
        return f"{f['value']} {f['ci95']}" if f["ci95"] else str(f["value"])

    rows = [
        [
            level.replace("_", "-"),
            c[level]["n"],
            cell(c[level]["accuracy"]),
            cell(c[level]["precision"]),
            cell(c[level]["recall"]),
            cell(c[level]["kappa"]),
            c[level]["at_target"]["threshold"],
            c[level]["at_target"]["recall"],
        ]
        for level in ("samples", "sub_edits")
    ]
    body = [
        "<p class='note'>The judge's pass against the reviewers' verdicts imported from Label Studio "
        "(<code>mcie calibrate</code>; bootstrap 95% intervals in brackets).</p>",
        table(
            [
                "level",
                "n",
                "accuracy",
                "precision",
                "recall",
                "kappa",
                f"threshold at precision {c['target_precision']}",
                "recall there",
            ],
            rows,
        ),  # fmt: skip
    ]
    pairs = [
        [" / ".join(a["reviewers"]), a["tasks"], a["agreement"], a["kappa"]] for a in c["reviewer_agreement"]
    ]
    if pairs:
        body.append(table(["reviewers", "shared tasks", "agreement", "kappa"], pairs))
    own = [
        [
            a["reviewer"],
            a["tasks"],
            f"{a['agreement']['value']} {a['agreement']['ci95']}",
            a["kappa"]["value"],
        ]
        for a in c.get("reviewer_vs_judge", [])
    ]
    if own:
        body.append(table(["reviewer", "tasks", "agreement with the judge", "kappa"], own))
    return Section("calibration", "The judge against the reviewers", "".join(body))


def _detection_parts(a: dict[str, Any]) -> list[str]:
    """Recall by failure type and magnitude class (a chart) and the detection curves (a
    table: recall in bins of each failure's strength), from :func:`mcie.audit.magnitude_figures`."""
    by_mag = a.get("recall_by_magnitude") or {}
    if not by_mag:
        return []
    mags = sorted({m for v in by_mag.values() for m in v})
    series = {m: {k: v[m]["recall"] for k, v in by_mag.items() if m in v} for m in mags}
    counts = {k: sum(x["positives"] for x in v.values()) for k, v in by_mag.items()}
    parts = [
        figure(
            charts.bars(
                series,
                "Filter recall by failure type and magnitude",
                "recall",
                "injected failure type",
                counts=counts,
            ),
            "filter recall by failure type and magnitude (standard / subtle)",
        )
    ]
    rows = [
        [name, f"{b['low']:g}-{b['high']:g} {c['unit']}", b["positives"], b["recall"]]
        for name, c in a.get("detection_curves", {}).items()
        for b in c["bins"]
    ]
    if rows:
        parts.append("<h3>Detection curves: recall against failure strength</h3>")
        parts.append(table(["failure", "strength", "positives", "recall"], rows))
    return parts


def build_report(
    out: str,
    config: GalleryConfig | None = None,
    with_audit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The page for the build in ``out`` and a summary (counts, gallery size, problems).
    ``with_audit=False`` leaves out the audit section: the audit reads and checks every sample
    (about 60% of the report's time on the demo), the rest reads the index and the gallery's
    samples only. ``progress`` receives a line as each step starts."""
    with system_allocator():  # a streamed index leaves no decoded pages mapped behind it
        return _build_report(out, config or GalleryConfig(), with_audit, progress or (lambda line: None))


def _build_report(
    out: str, config: GalleryConfig, with_audit: bool, say: Callable[[str], None]
) -> tuple[str, dict[str, Any]]:
    t0 = time.perf_counter()
    # one pass over the index, a batch at a time: the counts, the gallery's rows and the
    # histograms' values are all that is kept of it
    tallies = CountTally(), GalleryTally(config), ScoreTally()
    for r in iter_index(out):
        for tally in tallies:
            tally.add(r)
    c, chosen, panels = (tally.result() for tally in tallies)
    shards = len({r["shard"] for r in chosen if r["shard"]})
    say(f"{c['candidates']} candidates; gallery: {len(chosen)} samples from {shards} shards")
    thumbs, problems = load_thumbnails(out, chosen, config)
    say("charts")
    items = [
        {
            "k": r["key"],
            "st": r["status"],
            "r": r["reason"] or "",
            "n": r["num_sub_edits"],
            "t": sorted(set(r["edit_types"] or [])),
            "sub": _sub_rows(r),
            "sc": None if r["compliance"] is None else round(float(r["compliance"]), 4),
            "img": [],
            **thumbs.get(r["key"], {}),
            "err": r["error"] or "",
        }
        for r in sorted(chosen, key=gallery_order)
    ]
    status_rows = [[s, n, f"{n / max(1, c['candidates']):.1%}"] for s, n in c["by_status"].items()]
    reason_rows = [[k, n] for k, n in c["by_reason"].items()]
    sections = [
        Section(
            "counts",
            "Counts by status and reason",
            table(
                ["status", "candidates", "share"],
                [*status_rows, [Raw("<b>all</b>"), c["candidates"], "100%"]],
            )
            + table(["status:reason", "candidates"], reason_rows)
            + figure(
                charts.count_bars(
                    c["by_reason"],
                    "Candidates by status and reason",
                    "candidates",
                    {k: charts.STATUS_COLOURS.get(k.split(":")[0], "#1565c0") for k in c["by_reason"]},
                ),
                "candidates by status and reason",
            ),  # fmt: skip
        ),
        Section(
            "scores",
            "Judge scores and background metrics",
            figure(charts.histograms(panels, "Scores by status (stacked)"), "score histograms"),
        ),
    ]
    if with_audit and storage.exists(BuildLayout(out).truth):  # no truth: nothing to audit against
        say("audit against the truth (reads every sample; --no-audit skips it)")
    audit_section = _audit_section(out) if with_audit else None
    if audit_section:
        sections.append(audit_section)
    calibration = _calibration_section(out)
    if calibration:
        sections.append(calibration)
    if problems:
        sections.append(
            Section(
                "problems",
                "Problems met while reading shards",
                "<ul>" + "".join(f"<li class='err'>{esc(p)}</li>" for p in problems[:200]) + "</ul>",
            )
        )
    note = (
        f"The gallery embeds a stratified sample: up to {config.per_group} candidates per (status, reason, "
        f"number of sub-edits) group, {len(items)} in all (cap {config.max_items}), the first by key; "
        f"totals count the whole index. Pictures: source | target in their true colours (full resolution "
        f"up to {config.thumb} px), each sub-edit's mask drawn as a ring outside its region in its colour "
        "(switch to a tint above; click a picture to enlarge it and choose the masks); ✓/✗ is the "
        "judge's verdict per sub-instruction, the number its score."
    )
    gallery = gallery_json(
        items,
        c["combos"],
        [("st", "status"), ("r", "reason"), ("t", "edit type"), ("n", "sub-edits")],
        note,
        status_order=GALLERY_ORDER,
    )
    seconds = time.perf_counter() - t0
    meta = (
        f"{esc(out)} · {c['candidates']} candidates · "
        + " · ".join(f"{esc(s)} {n}" for s, n in c["by_status"].items())
        + f" · made by mcie report in {seconds:.1f} s"
    )
    html = render("mcie build report", sections, gallery, meta)
    summary = {
        "candidates": c["candidates"],
        "by_status": c["by_status"],
        "by_reason": c["by_reason"],
        "gallery_items": len(items),
        "gallery_thumbnails": sum(1 for i in items if i["img"]),
        "problems": problems,
        "seconds": round(seconds, 2),
    }
    return html, summary


def write_build_report(
    out: str,
    path: str | None = None,
    config: GalleryConfig | None = None,
    with_audit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the report of ``out`` to ``path`` (default ``out/report.html``; either may be a
    storage URL); returns the summary with ``path`` and ``bytes``."""
    storage.require_folder(out)
    path = path or storage.join(out, "report.html")
    refuse_managed_output(path)  # before minutes of work: a page over the index loses the verdicts
    html, summary = build_report(out, config, with_audit, progress)
    data = html.encode("utf-8")
    storage.atomic_write(path, data)
    return {**summary, "path": path, "bytes": len(data)}

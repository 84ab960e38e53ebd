"""``mcie audit OUT``: check an output directory and, where the truth is present, measure the
pipeline against it.

Checks: every shard is a whole, readable tar whose samples are sorted by key and pass the one
sample validator (:mod:`mcie.validate`: key shape, JSON, source and target of equal size, one
PNG mask per sub-edit, 8-bit 0/255 at image size);
the index is sorted with unique keys and agrees with the shards (each shard row is in the
tar it names, with the same status); the per-unit stats add up to the index.

Against ``truth.parquet`` (definitions from the foundation issue):

* a *positive* is a candidate with at least one injected failure; precision and recall are of
  ``rejected`` against positives (failed candidates are left out and counted);
* mask mIoU is over the sub-edits of clean candidates against the truth masks (empty against
  empty counts 1); recall is also reported per failure type, per failure type and magnitude
  class (``standard`` / ``subtle``, ``--failure-magnitude``), and as a *detection curve*: recall
  in bins of each failure's strength (:data:`CURVES`).
"""

from __future__ import annotations

import array
import collections
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mcie import storage
from mcie.images import decode_mask
from mcie.layout import SHARD_DIRS, STATS_DIR, BuildLayout
from mcie.metrics import iou
from mcie.progress import track
from mcie.shards import read_tar, shard_paths
from mcie.tables import INDEX_SCHEMA, iter_rows, open_parquet, read_table, system_allocator
from mcie.validate import check_members


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


#: detection curves: curve name -> (unit, bin edges); bins are [low, high), the last one
#: closed; a failure's strength is read by :func:`failure_strength`. Edges cover both
#: magnitude classes' ranges (levels are integers: 4-8 is the subtle shift, 8-16 the standard).
CURVES: dict[str, tuple[str, tuple[float, ...]]] = {
    "colour_off": ("hue degrees", (10, 14, 18, 22, 30, 38, 45)),
    "partial": ("share undone", (0.15, 0.25, 0.35, 0.5, 0.6, 0.7)),
    "background_drift:shift": ("levels", (4, 6, 9, 13, 17)),
    "background_drift:blotch": ("levels", (16, 24, 33, 41, 56, 71)),
}


def failure_strength(f: dict[str, Any]) -> tuple[str, float] | None:
    """(curve name, strength) of one injected failure from ``truth.parquet``, or None for a
    failure without a strength (missed, wrong object) or from a build that did not record it."""
    kind = f.get("type")
    if kind == "colour_off" and "hue_degrees" in f:
        return kind, abs(float(f["hue_degrees"]))
    if kind == "partial" and "fraction" in f:
        return kind, round(1.0 - float(f["fraction"]), 6)
    if kind == "background_drift" and "levels" in f:
        return f"{kind}:{f.get('drift')}", float(f["levels"])
    return None


def _bin(edges: tuple[float, ...], v: float) -> int:
    for i in range(len(edges) - 1):
        if v < edges[i + 1] or i == len(edges) - 2:
            return i
    return 0


class MagnitudeTally:
    """Recall per (failure type, magnitude class) and the detection curves, counted one truth
    row at a time (:meth:`add`), so a set of any size costs a few counters."""

    def __init__(self) -> None:
        self.pos: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.hit: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.cpos: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.chit: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def add(self, failures_json: str | None, rejected: bool) -> None:
        """Count one candidate's injected failures (its truth row's ``failures_json``), each a
        hit when the filter ``rejected`` the candidate."""
        for f in json.loads(failures_json or "[]"):
            mag = f.get("magnitude", "standard")  # builds before the knob were standard
            self.pos[f["type"]][mag] += 1
            self.hit[f["type"]][mag] += rejected
            s = failure_strength(f)
            if s is not None and s[0] in CURVES:
                b = _bin(CURVES[s[0]][1], s[1])
                self.cpos[s[0]][b] += 1
                self.chit[s[0]][b] += rejected

    def figures(self) -> dict[str, Any]:
        """``recall_by_magnitude`` and ``detection_curves`` of what was counted."""
        pos, hit, cpos, chit = self.pos, self.hit, self.cpos, self.chit
        by_mag = {
            k: {m: {"positives": pos[k][m], "recall": _ratio(hit[k][m], pos[k][m])} for m in sorted(pos[k])}
            for k in sorted(pos)
        }
        curves = {}
        for name in sorted(cpos):
            unit, edges = CURVES[name]
            curves[name] = {
                "unit": unit,
                "bins": [
                    {
                        "low": edges[b],
                        "high": edges[b + 1],
                        "positives": cpos[name][b],
                        "recall": _ratio(chit[name][b], cpos[name][b]),
                    }
                    for b in sorted(cpos[name])
                ],
            }
        return {"recall_by_magnitude": by_mag, "detection_curves": curves}


def magnitude_figures(truth: Iterable[dict[str, Any]], rejected: dict[str, bool]) -> dict[str, Any]:
    """Recall per (failure type, magnitude class) and the detection curves, from truth rows
    (``key``, ``failures_json``) and ``rejected`` (key -> whether the filter rejected it; a key
    missing from it, a failed candidate, is left out)."""
    tally = MagnitudeTally()
    for t in truth:
        if t["key"] in rejected:
            tally.add(t.get("failures_json"), rejected[t["key"]])
    return tally.figures()


def truth_summary(out: str) -> dict[str, Any] | None:
    """The filter against the truth from the index and ``truth.parquet`` alone (no shard is
    read): precision, recall and :func:`magnitude_figures`; None without a truth file. For the
    dataset card. Streams the truth; holds the index's keys and statuses only."""
    layout = BuildLayout(out)
    truth_path = layout.truth
    if not storage.exists(truth_path):
        return None
    index = IndexView(layout.index, ("key", "status"))
    tp = fp = fn = 0
    tally = MagnitudeTally()
    for t in iter_rows(truth_path, ["key", "num_failures", "failures_json"]):
        i = index.row_of(t["key"])
        if i is None or index.status(i) == "failed":
            continue
        status = index.status(i)
        rejected = status == "rejected"
        tp += bool(t["num_failures"]) and rejected
        fp += (not t["num_failures"]) and rejected
        fn += bool(t["num_failures"]) and not rejected
        tally.add(t.get("failures_json"), rejected)
    return {"filter_precision": _ratio(tp, tp + fp), "filter_recall": _ratio(tp, tp + fn), **tally.figures()}


def curve_line(figures: dict[str, Any]) -> str:
    """One line of text: recall per failure type and magnitude class, then each detection
    curve as ``low-high: recall (n)`` bins."""
    parts = []
    for k, mags in figures["recall_by_magnitude"].items():
        parts.append(f"{k} " + ", ".join(f"{m} {v['recall']} (n={v['positives']})" for m, v in mags.items()))
    for name, c in figures["detection_curves"].items():
        bins = ", ".join(f"{b['low']:g}-{b['high']:g}: {b['recall']} (n={b['positives']})" for b in c["bins"])
        parts.append(f"{name} by {c['unit']} [{bins}]")
    return "; ".join(parts)


class IndexView:
    """The index columns the audit joins on, held as arrays (Arrow, and the keys sorted for a
    binary search; a repeated key finds its last row, as a dict of rows would): no Python row
    per candidate."""

    def __init__(
        self,
        path: str,
        columns: Iterable[str] = (
            "key",
            "shard",
            "status",
            "verdict_json",
            "edit_types",
            "num_sub_edits",
            "instruction",
        ),
    ):
        with open_parquet(path) as pf:
            present = set(pf.schema_arrow.names)
        # verdicts came with Label Studio review: an older index lacks the column
        columns = [c for c in columns if c in present or c != "verdict_json"]
        table = read_table(path, columns=columns)
        self.num_rows = table.num_rows
        # the keys as one sorted array of UTF-8 bytes (a few bytes a key; a dict of 90k keys
        # took ~10 MB): a lookup is a binary search
        keys = _key_array(table.column("key").combine_chunks())
        self.is_sorted = bool(np.all(keys[:-1] <= keys[1:]))
        self._order = np.argsort(keys, kind="stable").astype(np.int32)  # equal keys stay in file order
        self._sorted = keys[self._order]
        self.duplicates = int(len(keys) - len(np.unique(self._sorted)))
        del keys
        self._status = _Coded(table.column("status").combine_chunks())
        self._cols: dict[str, Any] = {}
        for c in columns:
            col = table.column(c).combine_chunks()
            if c == "shard":
                self._cols[c] = _Coded(col)  # a few hundred names for the whole set
            elif c == "edit_types":
                self._cols[c] = _CodedLists(col)  # a dozen types
            elif c not in ("key", "status"):
                self._cols[c] = col

    def row_of(self, key: str) -> int | None:
        """The row of ``key`` (its last row when repeated), None when the index lacks it."""
        k = key.encode()
        j = int(np.searchsorted(self._sorted, k, side="right")) - 1
        if j < 0 or self._sorted[j] != k:
            return None
        return int(self._order[j])

    def status(self, i: int) -> str | None:
        return self._status[i]

    def value(self, column: str, i: int) -> Any:
        """Row ``i``'s value in ``column`` as a Python object (None where the index lacks the
        column)."""
        col = self._cols.get(column)
        if col is None:
            return None
        return col[i] if isinstance(col, _Coded | _CodedLists) else col[i].as_py()

    def by_status(self) -> dict[str, int]:
        """Candidates per status."""
        return self._status.counts()

    def in_shards(self) -> int:
        """Rows that name a shard."""
        return sum(n for name, n in self._cols["shard"].counts().items() if name)


class _Coded:
    """A string column as small integer codes into its distinct values: four bytes a row, not
    a string (statuses, shard names)."""

    def __init__(self, col: pa.Array) -> None:
        enc = pc.dictionary_encode(col)
        self.values = [*enc.dictionary.to_pylist(), None]  # the last one: a null
        self.codes = enc.indices.fill_null(len(self.values) - 1).to_numpy()

    def __getitem__(self, i: int) -> str | None:
        return self.values[self.codes[i]]

    def counts(self) -> dict[str | None, int]:
        """Rows per value (values that occur)."""
        n = np.bincount(self.codes, minlength=len(self.values))
        return {self.values[c]: int(k) for c, k in enumerate(n) if k}


class _CodedLists:
    """A column of string lists (edit types) as codes and offsets; a null list reads as empty."""

    def __init__(self, col: pa.ListArray) -> None:
        self.offsets = col.offsets.to_numpy()  # into col.values, the slice's offset included
        self.items = _Coded(col.values)

    def __getitem__(self, i: int) -> list[str | None]:
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return [self.items.values[c] for c in self.items.codes[lo:hi]]


def _key_array(col: pa.Array) -> np.ndarray:
    """A string column as a fixed-width bytes array (UTF-8). Our keys all have one length, so
    the column's data buffer is the array as it stands; keys of mixed lengths (a foreign
    index) go through Python one by one."""
    col = col.cast(pa.large_string())
    if not len(col):
        return np.zeros(0, "S1")
    lengths = pc.binary_length(col)
    width = pc.max(lengths).as_py() or 1
    if col.null_count == 0 and pc.min(lengths).as_py() == width:
        _, offsets, data = col.buffers()
        start = int(np.frombuffer(offsets, np.int64)[col.offset])
        return np.frombuffer(data, dtype=f"S{width}", count=len(col), offset=start)
    return np.array([k.encode() for k in col.to_pylist()], dtype=bytes)


class TruthView:
    """``truth.parquet`` read for the audit: its keys, failure counts and rows (as small
    arrays) up front, its masks one row group at a time (the build writes one per unit), so the
    masks of a whole set are never in memory together."""

    def __init__(self, path: str, index: IndexView):
        self.path = path
        num_failures: list[int] = []
        self._more: dict[int, list[int]] = {}  # index row -> its further truth rows (a repeated key)
        first_of = np.full(index.num_rows, -1, np.int64)  # per index row: its first truth row
        for r, t in enumerate(iter_rows(path, ["key", "num_failures"])):
            num_failures.append(t["num_failures"])
            i = index.row_of(t["key"])
            if i is None:
                continue
            if first_of[i] < 0:
                first_of[i] = r
            else:
                self._more.setdefault(i, []).append(r)
        self.first_of = first_of
        self.num_failures = num_failures
        self._group: tuple[int, int, Any] | None = None  # (first row, row count, masks column)

    def rows_of(self, i: int) -> list[int]:
        """The truth rows of index row ``i``, in file order."""
        r = int(self.first_of[i])
        return [] if r < 0 else [r, *self._more.get(i, [])]

    def masks(self, r: int) -> list[bytes]:
        """Truth row ``r``'s mask PNGs (its row group is read once and kept until another is
        asked for)."""
        g = self._group
        if g is None or not g[0] <= r < g[0] + g[1]:
            with open_parquet(self.path) as pf:
                start = 0
                for n in range(pf.metadata.num_row_groups):
                    rows = pf.metadata.row_group(n).num_rows
                    if r < start + rows:
                        col = pf.read_row_group(n, columns=["masks_png"]).column(0).combine_chunks()
                        g = self._group = (start, rows, col)
                        break
                    start += rows
        return g[2][r - g[0]].as_py() or []


class _IouLog:
    """Mask IoUs of clean candidates, recorded per truth row as shards are read (in any order)
    and averaged in truth order at the end, so the figures equal those of one pass over the
    truth: a few numbers per sub-edit, not its masks."""

    def __init__(self) -> None:
        self.rows, self.starts, self.lens = array.array("i"), array.array("i"), array.array("i")
        self.values, self.types = array.array("d"), array.array("H")
        self.type_names: dict[str, int] = {}

    def record(self, r: int, pairs: list[tuple[str, float]]) -> None:
        """Truth row ``r``'s (edit type, IoU) pairs; a later record of ``r`` replaces this one
        (the sample read again from another shard, as the last reading counted before)."""
        self.rows.append(r)
        self.starts.append(len(self.values))
        self.lens.append(len(pairs))
        for etype, v in pairs:
            self.values.append(v)
            self.types.append(self.type_names.setdefault(etype, len(self.type_names)))

    def figures(self) -> dict[str, Any]:
        rows = _as_numpy(self.rows, np.int32)
        order = np.lexsort((np.arange(len(rows)), rows))  # by truth row, then by when recorded
        last = np.ones(len(order), bool)
        last[:-1] = rows[order][1:] != rows[order][:-1]  # the last record of each row
        values, types = _as_numpy(self.values, np.float64), _as_numpy(self.types, np.uint16)
        keep = order[last]
        starts = _as_numpy(self.starts, np.int32)[keep].astype(np.int64)
        lens = _as_numpy(self.lens, np.int32)[keep].astype(np.int64)
        # the kept records' value positions, record after record: start + offset within it
        offsets = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        idx = np.repeat(starts, lens) + offsets
        ious, kinds = values[idx], types[idx]
        names = {c: t for t, c in self.type_names.items()}
        by_type = {names[c]: round(float(np.mean(ious[kinds == c])), 4) for c in np.unique(kinds)}
        return {
            "mask_miou": round(float(np.mean(ious)), 4) if len(ious) else None,
            "mask_miou_by_type": dict(sorted(by_type.items())),
            "mask_count": int(len(ious)),
        }


def _as_numpy(a: array.array, dtype) -> np.ndarray:
    """A packed array as numpy (numpy refuses an empty buffer)."""
    return np.frombuffer(a, dtype) if len(a) else np.zeros(0, dtype)


#: problems kept in the report (all are counted)
MAX_PROBLEMS = 50


class _Problems:
    """The first :data:`MAX_PROBLEMS` problems and the count of all."""

    def __init__(self) -> None:
        self.first: list[str] = []
        self.count = 0

    def extend(self, items: Iterable[str]) -> None:
        for p in items:
            self.count += 1
            if len(self.first) < MAX_PROBLEMS:
                self.first.append(p)


def audit(out: str) -> dict[str, Any]:
    """Audit ``out``; returns a report with ``ok``, ``problems`` and the figures.

    Streams the build: one shard's samples at a time, the truth's masks one row group at a
    time; what it keeps grows only by a few bytes per candidate (the index's keys, statuses
    and types, one IoU per sub-edit), never by its images or masks."""
    with system_allocator():
        return _audit(out)


def _audit(out: str) -> dict[str, Any]:
    problems = _Problems()
    layout = BuildLayout(out)
    index_path = layout.index
    if not storage.exists(index_path):
        return {"ok": False, "problems": [f"{index_path} is missing"]}
    with open_parquet(index_path) as pf:
        schema = pf.schema_arrow
    problems.extend(_schema_problems(schema))
    if any(n not in schema.names for n in INDEX_SCHEMA.names):
        return {"ok": False, "problems": problems.first, "num_problems": problems.count}
    for row in iter_rows(index_path, _VALUE_COLUMNS):  # one batch of rows at a time
        problems.extend(_value_problems(row))
    index = IndexView(index_path)
    if not index.is_sorted:
        problems.extend(["index.parquet is not sorted by key"])
    if index.duplicates:
        problems.extend([f"index.parquet has {index.duplicates} duplicate keys"])
    truth_path = layout.truth
    truth = TruthView(truth_path, index) if storage.exists(truth_path) else None
    ious = _IouLog()
    in_shards = 0
    paths = [path for d in SHARD_DIRS for path in shard_paths(out, d)]
    for path in track(paths, "audit", "shards"):
        rel = storage.relpath(path, out)
        shard = _ShardAudit(rel, index, truth)
        try:
            for key, members in read_tar(path):
                shard.sample(key, members)
        except Exception as exc:  # the shard counts as unread: none of its samples count
            problems.extend([f"{rel}: unreadable ({type(exc).__name__}: {exc})"])
            continue
        problems.extend(shard.problems())
        in_shards += shard.samples
        for r, pairs in shard.ious:
            ious.record(r, pairs)
    expected = index.in_shards()
    if expected != in_shards:
        problems.extend([f"index names {expected} samples in shards, the shards hold {in_shards}"])
    stats_total = 0
    for path in storage.list_folder(layout.folder(STATS_DIR), "*.json"):
        stats_total += storage.read_json(path)["candidates"]
    if stats_total != index.num_rows:
        problems.extend([f"per-unit stats count {stats_total} candidates, the index {index.num_rows}"])
    report: dict[str, Any] = {
        "ok": not problems.count,
        "problems": problems.first,
        "num_problems": problems.count,
        "candidates": index.num_rows,
        "by_status": dict(sorted(index.by_status().items())),
        "samples_in_shards": in_shards,
    }
    if truth is not None:
        report.update(_against_truth(truth_path, index, ious))
    return report


class _ShardAudit:
    """One shard's samples checked against the index (and their masks measured against the
    truth), kept aside until the whole tar has read: an unreadable shard counts as unread."""

    def __init__(self, rel: str, index: IndexView, truth: TruthView | None):
        self.rel, self.index, self.truth = rel, index, truth
        self.samples = 0
        self.in_order = True
        self.last_key: str | None = None
        self.found: list[str] = []
        self.ious: list[tuple[int, list[tuple[str, float]]]] = []

    def problems(self) -> list[str]:
        head = [] if self.in_order else [f"{self.rel}: samples not sorted by key or repeated"]
        return head + self.found

    def sample(self, key: str, members: dict[str, bytes]) -> None:
        self.samples += 1
        if self.last_key is not None and key <= self.last_key:
            self.in_order = False
        self.last_key = key
        where = f"{self.rel}:{key}"
        i = self.index.row_of(key)
        if i is None:
            self.found.append(f"{where}: not in the index")
            return
        if self.index.value("shard", i) != self.rel:
            self.found.append(f"{where}: index says shard {self.index.value('shard', i)}")
        checked = check_members(key, members)  # the one sample validator
        self.found += [f"{self.rel}:{p}" for p in checked.problems]
        meta = checked.meta
        if meta is None:
            return
        status = self.index.status(i)
        verdict = self.index.value("verdict_json", i)
        review = (json.loads(verdict) or {}).get("review") if verdict else None
        if isinstance(review, dict) and "prior_status" in review:  # reviewed in Label Studio (mcie ls)
            status = review["prior_status"]
        if meta.get("status") != status:
            self.found.append(f"{where}: JSON status {meta.get('status')} but index {status}")
        row = {c: self.index.value(c, i) for c in ("num_sub_edits", "edit_types", "instruction")}
        self.found += _json_disagreements(where, row, meta, review if isinstance(review, dict) else {})
        if not checked.problems and self.truth is not None:
            self._measure(i, checked.masks)

    def _measure(self, i: int, masks: list[np.ndarray]) -> None:
        """IoU of a clean candidate's masks against the truth's (a failed candidate's rows are
        left out of every figure)."""
        if self.index.status(i) == "failed":
            return
        types = self.index.value("edit_types", i) or []
        for r in self.truth.rows_of(i):
            if self.truth.num_failures[r] > 0:
                continue
            pairs = []
            for k, (etype, m, tm) in enumerate(zip(types, masks, self.truth.masks(r), strict=False)):
                truth_mask = decode_mask(tm)
                if truth_mask.shape != m.shape:  # a sample not of the truth's size: say which
                    (h, w), (th, tw) = m.shape, truth_mask.shape
                    self.found.append(
                        f"{self.rel}:{self.last_key}: mask{k}.png is {w}x{h}, its truth mask {tw}x{th}"
                    )
                    continue
                pairs.append((etype, iou(m, truth_mask)))
            self.ious.append((r, pairs))


#: index columns holding scores: each value must be a finite number (or null)
_SCORE_COLUMNS = ("compliance", "bg_ssim", "bg_psnr", "bg_l1", "bg_changed")
#: the columns :func:`_value_problems` reads
_VALUE_COLUMNS = [
    "key",
    "shard",
    "num_sub_edits",
    "edit_types",
    "sub_instructions",
    "sub_compliance",
    *_SCORE_COLUMNS,
]


def _schema_problems(schema) -> list[str]:
    """The index's columns against :data:`mcie.tables.INDEX_SCHEMA`: missing, unknown or of
    another type (a hand-edited index)."""
    have = {f.name: f.type for f in schema}
    out = []
    missing = [n for n in INDEX_SCHEMA.names if n not in have]
    if missing:
        out.append(f"index.parquet lacks the column(s) {', '.join(missing)} of an mcie index")
    unknown = [n for n in have if n not in INDEX_SCHEMA.names]
    if unknown:
        out.append(f"index.parquet has unknown column(s) {', '.join(n[:60] for n in unknown[:10])}")
    for f in INDEX_SCHEMA:
        if f.name in have and have[f.name] != f.type:
            out.append(f"index.parquet column {f.name} is {have[f.name]}, not {f.type}")
    return out


def _value_problems(row: dict[str, Any]) -> list[str]:
    """One index row's values that no build writes: NaN or infinite scores, a sub-edit count
    that disagrees with its own lists."""
    out = []
    where = f"index.parquet row {str(row['key'])[:80]}"
    for c in _SCORE_COLUMNS:
        v = row.get(c)
        if v is not None and not np.isfinite(v):
            out.append(f"{where}: {c} is {v}")
    subs = row.get("sub_compliance") or []
    if any(v is not None and not np.isfinite(v) for v in subs):
        out.append(
            f"{where}: sub_compliance holds {[v for v in subs if v is not None and not np.isfinite(v)][:3]}"
        )
    n = row.get("num_sub_edits")
    for c in ("edit_types", "sub_instructions"):
        if row["shard"] and row.get(c) is not None and len(row[c]) != n:
            out.append(f"{where}: num_sub_edits {n} but {len(row[c])} {c}")
    return out


def _json_disagreements(where: str, row: dict[str, Any], meta: dict[str, Any], review: dict) -> list[str]:
    """Where an index row says otherwise than its sample's JSON (sub-edits, instruction). A
    reviewed row (``mcie ls import``) holds the reviewers' wording; its ``review`` keeps the
    original the JSON has."""
    subs = meta.get("sub_edits") or []
    out = []
    if row["num_sub_edits"] != len(subs):
        out.append(
            f"{where}: index num_sub_edits {row['num_sub_edits']} but the JSON has {len(subs)} sub-edits"
        )
    types = [s.get("edit_type") if isinstance(s, dict) else None for s in subs]
    if row["edit_types"] is not None and list(row["edit_types"]) != types:
        out.append(f"{where}: index edit_types {row['edit_types'][:5]} but the JSON {types[:5]}")
    if review.get("original_instruction", row["instruction"]) != meta.get("instruction"):
        out.append(f"{where}: index instruction differs from the JSON's")
    return out


def _against_truth(truth_path: str, index: IndexView, ious: _IouLog) -> dict[str, Any]:
    """The filter against the truth, one truth row at a time, and the masks' IoUs."""
    tp = fp = fn = tn = failed = 0
    pos_type = collections.Counter()
    hit_type = collections.Counter()
    tally = MagnitudeTally()
    for t in iter_rows(truth_path, ["key", "num_failures", "failure_types", "failures_json"]):
        i = index.row_of(t["key"])
        if i is None or index.status(i) == "failed":
            failed += 1
            continue
        positive = t["num_failures"] > 0
        rejected = index.status(i) == "rejected"
        tp += positive and rejected
        fp += (not positive) and rejected
        fn += positive and not rejected
        tn += (not positive) and not rejected
        for ft in set(t["failure_types"]):
            pos_type[ft] += 1
            hit_type[ft] += rejected
        tally.add(t.get("failures_json"), rejected)
    return {
        **ious.figures(),
        "filter_precision": _ratio(tp, tp + fp),
        "filter_recall": _ratio(tp, tp + fn),
        "recall_by_failure": {k: _ratio(hit_type[k], pos_type[k]) for k in sorted(pos_type)},
        "positives_by_failure": dict(sorted(pos_type.items())),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "failed_excluded": failed},
        **tally.figures(),
    }


def format_report(r: dict[str, Any]) -> str:
    """Human-readable audit report."""
    head = "OK" if r["ok"] else "PROBLEMS"
    lines = [f"audit: {head} — {r.get('candidates', 0)} candidates {r.get('by_status', {})}"]
    lines += [f"  problem: {p}" for p in r["problems"]]
    if "mask_miou" in r:
        c = r["confusion"]
        lines += [
            f"  mask mIoU (clean candidates, {r['mask_count']} sub-edits): {r['mask_miou']}",
            f"    by edit type: {r['mask_miou_by_type']}",
            f"  filter precision {r['filter_precision']}  recall {r['filter_recall']}",
            f"    tp {c['tp']} fp {c['fp']} fn {c['fn']} tn {c['tn']}; failed: {c['failed_excluded']}",
            f"  recall by failure type: {r['recall_by_failure']}",
            f"    positives: {r['positives_by_failure']}",
            f"  recall by magnitude: {curve_line(r)}",
        ]
    return "\n".join(lines)

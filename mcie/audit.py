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

import collections
import json
from typing import Any

import numpy as np

from mcie import storage
from mcie.images import decode_mask
from mcie.layout import SHARD_DIRS, STATS_DIR, BuildLayout
from mcie.metrics import iou
from mcie.progress import track
from mcie.shards import read_tar, shard_paths
from mcie.tables import INDEX_SCHEMA, read_table
from mcie.validate import sample_problems


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


def magnitude_figures(truth: list[dict[str, Any]], rejected: dict[str, bool]) -> dict[str, Any]:
    """Recall per (failure type, magnitude class) and the detection curves, from truth rows
    (``key``, ``failures_json``) and ``rejected`` (key -> whether the filter rejected it; a key
    missing from it, a failed candidate, is left out)."""
    pos: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    hit: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    cpos: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    chit: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for t in truth:
        if t["key"] not in rejected:
            continue
        r = rejected[t["key"]]
        for f in json.loads(t.get("failures_json") or "[]"):
            mag = f.get("magnitude", "standard")  # builds before the knob were standard
            pos[f["type"]][mag] += 1
            hit[f["type"]][mag] += r
            s = failure_strength(f)
            if s is not None and s[0] in CURVES:
                b = _bin(CURVES[s[0]][1], s[1])
                cpos[s[0]][b] += 1
                chit[s[0]][b] += r
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


def truth_summary(out: str) -> dict[str, Any] | None:
    """The filter against the truth from the index and ``truth.parquet`` alone (no shard is
    read): precision, recall and :func:`magnitude_figures`; None without a truth file. For the
    dataset card."""
    layout = BuildLayout(out)
    truth_path = layout.truth
    if not storage.exists(truth_path):
        return None
    index = read_table(layout.index, columns=["key", "status"]).to_pylist()
    rejected = {r["key"]: r["status"] == "rejected" for r in index if r["status"] != "failed"}
    truth = read_table(truth_path, columns=["key", "num_failures", "failures_json"]).to_pylist()
    tp = sum(1 for t in truth if t["num_failures"] and rejected.get(t["key"]) is True)
    fp = sum(1 for t in truth if not t["num_failures"] and rejected.get(t["key"]) is True)
    fn = sum(1 for t in truth if t["num_failures"] and rejected.get(t["key"]) is False)
    return {
        "filter_precision": _ratio(tp, tp + fp),
        "filter_recall": _ratio(tp, tp + fn),
        **magnitude_figures(truth, rejected),
    }


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


def audit(out: str) -> dict[str, Any]:
    """Audit ``out``; returns a report with ``ok``, ``problems`` and the figures."""
    problems: list[str] = []
    layout = BuildLayout(out)
    index_path = layout.index
    if not storage.exists(index_path):
        return {"ok": False, "problems": [f"{index_path} is missing"]}
    table = read_table(index_path)
    problems += _schema_problems(table.schema)
    if any(n not in table.column_names for n in INDEX_SCHEMA.names):
        return {"ok": False, "problems": problems, "num_problems": len(problems)}
    index = table.to_pylist()
    problems += [p for r in index for p in _value_problems(r)]
    keys = [r["key"] for r in index]
    if keys != sorted(keys):
        problems.append("index.parquet is not sorted by key")
    if len(set(keys)) != len(keys):
        problems.append(f"index.parquet has {len(keys) - len(set(keys))} duplicate keys")
    by_key = {r["key"]: r for r in index}
    masks_of: dict[str, list[np.ndarray]] = {}
    in_shards = 0
    paths = [path for d in SHARD_DIRS for path in shard_paths(out, d)]
    for path in track(paths, "audit", "shards"):
        rel = storage.relpath(path, out)
        try:
            samples = list(read_tar(path))
        except Exception as exc:
            problems.append(f"{rel}: unreadable ({type(exc).__name__}: {exc})")
            continue
        tar_keys = [k for k, _ in samples]
        if tar_keys != sorted(tar_keys) or len(set(tar_keys)) != len(tar_keys):
            problems.append(f"{rel}: samples not sorted by key or repeated")
        for key, members in samples:
            in_shards += 1
            problems.extend(_check_sample(rel, key, members, by_key.get(key), masks_of))
    expected = sum(1 for r in index if r["shard"])
    if expected != in_shards:
        problems.append(f"index names {expected} samples in shards, the shards hold {in_shards}")
    by_status = collections.Counter(r["status"] for r in index)
    stats_total = 0
    for path in storage.list_folder(layout.folder(STATS_DIR), "*.json"):
        stats_total += storage.read_json(path)["candidates"]
    if stats_total != len(index):
        problems.append(f"per-unit stats count {stats_total} candidates, the index {len(index)}")
    report: dict[str, Any] = {
        "ok": not problems,
        "problems": problems[:50],
        "num_problems": len(problems),
        "candidates": len(index),
        "by_status": dict(sorted(by_status.items())),
        "samples_in_shards": in_shards,
    }
    truth_path = layout.truth
    if storage.exists(truth_path):
        truth_problems: list[str] = []
        report.update(_against_truth(read_table(truth_path).to_pylist(), by_key, masks_of, truth_problems))
        if truth_problems:
            problems += truth_problems
            report.update(ok=False, problems=problems[:50], num_problems=len(problems))
    return report


def _check_sample(rel, key, members, row, masks_of) -> list[str]:
    where = f"{rel}:{key}"
    if row is None:
        return [f"{where}: not in the index"]
    out = []
    if row["shard"] != rel:
        out.append(f"{where}: index says shard {row['shard']}")
    problems, meta = sample_problems(key, members)  # the one sample validator
    out += [f"{rel}:{p}" for p in problems]
    if meta is None:
        return out
    status = row["status"]
    review = (json.loads(row["verdict_json"]) or {}).get("review") if row.get("verdict_json") else None
    if isinstance(review, dict) and "prior_status" in review:  # reviewed in Label Studio (mcie ls)
        status = review["prior_status"]
    if meta.get("status") != status:
        out.append(f"{where}: JSON status {meta.get('status')} but index {status}")
    out += _json_disagreements(where, row, meta, review if isinstance(review, dict) else {})
    if not problems:
        masks_of[key] = [decode_mask(members[f"mask{i}.png"]) for i in range(len(meta["sub_edits"]))]
    return out


#: index columns holding scores: each value must be a finite number (or null)
_SCORE_COLUMNS = ("compliance", "bg_ssim", "bg_psnr", "bg_l1", "bg_changed")


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


def _against_truth(truth, by_key, masks_of, problems: list[str]) -> dict[str, Any]:
    tp = fp = fn = tn = failed = 0
    rejected_of: dict[str, bool] = {}
    pos_type = collections.Counter()
    hit_type = collections.Counter()
    ious: list[float] = []
    ious_by_type: dict[str, list[float]] = collections.defaultdict(list)
    for t in truth:
        row = by_key.get(t["key"])
        if row is None or row["status"] == "failed":
            failed += 1
            continue
        positive = t["num_failures"] > 0
        rejected = row["status"] == "rejected"
        rejected_of[t["key"]] = rejected
        tp += positive and rejected
        fp += (not positive) and rejected
        fn += positive and not rejected
        tn += (not positive) and not rejected
        for ft in set(t["failure_types"]):
            pos_type[ft] += 1
            hit_type[ft] += rejected
        if not positive and t["key"] in masks_of:
            for k, (etype, m, tm) in enumerate(
                zip(row["edit_types"], masks_of[t["key"]], t["masks_png"], strict=False)
            ):
                truth_mask = decode_mask(tm)
                if truth_mask.shape != m.shape:  # a sample not of the truth's size: say which
                    (h, w), (th, tw) = m.shape, truth_mask.shape
                    problems.append(
                        f"{row['shard']}:{t['key']}: mask{k}.png is {w}x{h}, its truth mask {tw}x{th}"
                    )
                    continue
                v = iou(m, truth_mask)
                ious.append(v)
                ious_by_type[etype].append(v)
    return {
        "mask_miou": round(float(np.mean(ious)), 4) if ious else None,
        "mask_miou_by_type": {k: round(float(np.mean(v)), 4) for k, v in sorted(ious_by_type.items())},
        "mask_count": len(ious),
        "filter_precision": _ratio(tp, tp + fp),
        "filter_recall": _ratio(tp, tp + fn),
        "recall_by_failure": {k: _ratio(hit_type[k], pos_type[k]) for k in sorted(pos_type)},
        "positives_by_failure": dict(sorted(pos_type.items())),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "failed_excluded": failed},
        **magnitude_figures(truth, rejected_of),
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

"""The streamed audit gives the figures and problems of the audit that held the whole build
in memory (kept here as the reference), and its memory does not grow with the build."""

from __future__ import annotations

import collections
import json
import os
import shutil
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from mcie import storage
from mcie.audit import audit, magnitude_figures, truth_summary
from mcie.cli import main
from mcie.images import decode_mask
from mcie.layout import SHARD_DIRS, STATS_DIR, BuildLayout
from mcie.metrics import iou
from mcie.shards import read_tar, shard_paths
from mcie.tables import read_table
from mcie.validate import sample_problems


# --- the reference: the audit as it was before it streamed (the whole index, the whole truth
# and every clean sample's decoded masks in memory at once) -----------------------------------
def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def reference_audit(out: str) -> dict:
    problems: list[str] = []
    layout = BuildLayout(out)
    index = read_table(layout.index).to_pylist()
    keys = [r["key"] for r in index]
    if keys != sorted(keys):
        problems.append("index.parquet is not sorted by key")
    if len(set(keys)) != len(keys):
        problems.append(f"index.parquet has {len(keys) - len(set(keys))} duplicate keys")
    by_key = {r["key"]: r for r in index}
    masks_of: dict[str, list[np.ndarray]] = {}
    in_shards = 0
    for d in SHARD_DIRS:
        for path in shard_paths(out, d):
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
                problems.extend(_reference_sample(rel, key, members, by_key.get(key), masks_of))
    expected = sum(1 for r in index if r["shard"])
    if expected != in_shards:
        problems.append(f"index names {expected} samples in shards, the shards hold {in_shards}")
    by_status = collections.Counter(r["status"] for r in index)
    stats = storage.list_folder(layout.folder(STATS_DIR), "*.json")
    stats_total = sum(storage.read_json(p)["candidates"] for p in stats)
    if stats_total != len(index):
        problems.append(f"per-unit stats count {stats_total} candidates, the index {len(index)}")
    report = {
        "ok": not problems,
        "problems": problems[:50],
        "num_problems": len(problems),
        "candidates": len(index),
        "by_status": dict(sorted(by_status.items())),
        "samples_in_shards": in_shards,
    }
    if storage.exists(layout.truth):
        report.update(_reference_truth(read_table(layout.truth).to_pylist(), by_key, masks_of))
    return report


def _reference_sample(rel, key, members, row, masks_of) -> list[str]:
    where = f"{rel}:{key}"
    if row is None:
        return [f"{where}: not in the index"]
    out = []
    if row["shard"] != rel:
        out.append(f"{where}: index says shard {row['shard']}")
    problems, meta = sample_problems(key, members)
    out += [f"{rel}:{p}" for p in problems]
    if meta is None:
        return out
    status = row["status"]
    review = (json.loads(row["verdict_json"]) or {}).get("review") if row.get("verdict_json") else None
    if isinstance(review, dict) and "prior_status" in review:
        status = review["prior_status"]
    if meta.get("status") != status:
        out.append(f"{where}: JSON status {meta.get('status')} but index {status}")
    if not problems:
        masks_of[key] = [decode_mask(members[f"mask{i}.png"]) for i in range(len(meta["sub_edits"]))]
    return out


def _reference_truth(truth, by_key, masks_of) -> dict:
    tp = fp = fn = tn = failed = 0
    rejected_of: dict[str, bool] = {}
    pos_type, hit_type = collections.Counter(), collections.Counter()
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
            for etype, m, tm in zip(row["edit_types"], masks_of[t["key"]], t["masks_png"], strict=False):
                v = iou(m, decode_mask(tm))
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


def reference_truth_summary(out: str) -> dict:
    layout = BuildLayout(out)
    index = read_table(layout.index, columns=["key", "status"]).to_pylist()
    rejected = {r["key"]: r["status"] == "rejected" for r in index if r["status"] != "failed"}
    truth = read_table(layout.truth, columns=["key", "num_failures", "failures_json"]).to_pylist()
    tp = sum(1 for t in truth if t["num_failures"] and rejected.get(t["key"]) is True)
    fp = sum(1 for t in truth if not t["num_failures"] and rejected.get(t["key"]) is True)
    fn = sum(1 for t in truth if t["num_failures"] and rejected.get(t["key"]) is False)
    return {"filter_precision": _ratio(tp, tp + fp), "filter_recall": _ratio(tp, tp + fn),
            **magnitude_figures(truth, rejected)}  # fmt: skip


# --- the tests ---------------------------------------------------------------------------------
def _copy(build: str, tmp_path) -> str:
    out = str(tmp_path / "copy")
    shutil.copytree(build, out)
    return out


def _rewrite(path: str, row_group_size: int, rows=None) -> None:
    """Rewrite a Parquet file in row groups of ``row_group_size`` (optionally with ``rows``)."""
    table = pq.read_table(path)
    if rows is not None:
        table = table.from_pylist(rows, schema=table.schema)
    pq.write_table(table, path, row_group_size=row_group_size)


def test_streamed_audit_equals_the_reference(small_build):
    got = audit(small_build)
    assert got == reference_audit(small_build)
    assert got["ok"] and got["candidates"] == 24 and got["mask_count"] > 0
    assert truth_summary(small_build) == reference_truth_summary(small_build)


def test_truth_in_small_row_groups_gives_the_same_figures(small_build, tmp_path):
    out = _copy(small_build, tmp_path)
    _rewrite(os.path.join(out, "truth.parquet"), 5)  # masks read 5 rows at a time, out of shard order
    assert pq.ParquetFile(os.path.join(out, "truth.parquet")).metadata.num_row_groups == 5
    got = audit(out)
    assert got == reference_audit(small_build) and got["mask_count"] > 0


def test_damaged_build_gives_the_same_problems_as_the_reference(small_build, tmp_path):
    out = _copy(small_build, tmp_path)
    index_path = os.path.join(out, "index.parquet")
    rows = pq.read_table(index_path).to_pylist()
    tars = sorted(p for d in SHARD_DIRS for p in shard_paths(out, d))
    first = storage.relpath(tars[0], out)
    shard_rows = [r for r in rows if r["shard"] == first]  # the last tar is cut short below
    shard_rows[0]["status"] = "pending"  # JSON status disagrees with the index
    shard_rows[1]["shard"] = "shards/elsewhere.tar"  # the index names another shard
    dropped = shard_rows[2]["key"]
    rows = [r for r in rows if r["key"] != dropped]  # a sample the index lacks
    rows.append(dict(rows[-1]))  # a repeated key, out of order
    rows.append({**rows[3], "key": "0" * 20, "shard": None, "status": "failed"})
    _rewrite(index_path, 4, rows)
    with open(tars[-1], "r+b") as fh:  # one shard cut short: unread, its samples uncounted
        fh.truncate(os.path.getsize(tars[-1]) // 2)
    truth_path = os.path.join(out, "truth.parquet")
    truth = pq.read_table(truth_path).to_pylist()
    truth.append(dict(truth[0]))  # a repeated truth row
    _rewrite(truth_path, 3, truth)
    got = audit(out)
    assert got == reference_audit(out)
    assert not got["ok"] and got["num_problems"] >= 6
    assert any("unreadable" in p for p in got["problems"]) and any(dropped in p for p in got["problems"])
    assert main(["audit", out, "--json"]) == 2


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> dict[int, str]:
    """The same recipe built at 12 and 60 candidates (64 px, 12 per shard)."""
    outs = {}
    for n in (12, 60):
        out = str(tmp_path_factory.mktemp(f"size{n}") / "out")
        args = ["build", "--out", out, "--samples", str(n), "--seed", "4", "--shard-size", "12"]
        assert main([*args, "--image-size", "64", "--workers", "1", "--no-progress"]) == 0
        outs[n] = out
    return outs


def _traced_peak(fn, *args) -> int:
    """Peak bytes Python (and numpy) allocated while ``fn(*args)`` ran."""
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_audit_memory_does_not_grow_with_the_build(two_sizes):
    """Five times the candidates: the reference's peak grows with them (it held every clean
    sample's masks and the whole truth), the streamed audit's stays within a shard's worth."""
    audit(two_sizes[12])  # imports and caches before measuring
    small, large = (_traced_peak(audit, two_sizes[n]) for n in (12, 60))
    ref_small, ref_large = (_traced_peak(reference_audit, two_sizes[n]) for n in (12, 60))
    assert ref_large > 2 * ref_small  # what the measure sees: the old audit grew
    assert large < 1.3 * small, (small, large, ref_small, ref_large)
    assert audit(two_sizes[60]) == reference_audit(two_sizes[60])


# --- the report's index pass -------------------------------------------------------------------
def reference_select_gallery(index: list[dict], config) -> list[dict]:
    """The gallery's draw as it was: the whole index sorted by key, then grouped."""
    from mcie.report.dataset import _status_key

    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in sorted(index, key=lambda r: r["key"]):
        g = groups[(_status_key(r["status"]), r["reason"] or "", r["num_sub_edits"])]
        if len(g) < config.per_group:
            g.append(r)
    chosen: list[dict] = []
    queues = [groups[k] for k in sorted(groups)]
    depth = 0
    while len(chosen) < config.max_items and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < config.max_items:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen, key=lambda r: (_status_key(r["status"]), r["reason"] or "", r["key"]))


def test_gallery_drawn_from_rows_in_any_order_equals_the_sorted_draw():
    from mcie.report.dataset import GalleryConfig, select_gallery

    rng = np.random.default_rng(0)
    rows = [
        {"key": f"{int(k):012x}", "status": ["accepted", "rejected", "failed"][int(k) % 3],
         "reason": "" if int(k) % 3 == 0 else "r", "num_sub_edits": 2 + int(k) % 2, "i": i}
        for i, k in enumerate(rng.integers(0, 400, 300))  # repeated keys too
    ]  # fmt: skip
    for config in (GalleryConfig(per_group=3, max_items=10), GalleryConfig(per_group=7, max_items=480)):
        want = reference_select_gallery(rows, config)
        assert select_gallery(rows, config) == want
        assert select_gallery(rows[::-1], config) == reference_select_gallery(rows[::-1], config)
        assert len(want) == min(config.max_items, 6 * config.per_group)


def test_report_streams_the_index_in_batches(small_build, tmp_path):
    from mcie.report.dataset import counts, iter_index, read_index, write_build_report

    rows = pq.read_table(os.path.join(small_build, "index.parquet")).to_pylist()
    assert list(iter_index(small_build, batch_rows=5)) == read_index(small_build)
    assert [r["key"] for r in iter_index(small_build, batch_rows=5)] == [r["key"] for r in rows]
    summary = write_build_report(small_build, str(tmp_path / "r.html"))
    c = counts(rows)
    assert (summary["candidates"], summary["by_status"], summary["by_reason"]) == (
        24, c["by_status"], c["by_reason"])  # fmt: skip
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    # the audit section shows the streamed audit's figures
    a = reference_audit(small_build)
    from mcie.report.page import fmt

    cells = [fmt(a[k]) for k in ("filter_precision", "filter_recall", "mask_miou", "mask_count")]
    assert "".join(f"<td>{v}</td>" for v in cells) in html


def test_index_view_finds_rows_by_key_in_any_index(tmp_path):
    """Keys of one length are read from Arrow's buffer, others one by one; a repeated key finds
    its last row (as a dict of rows did), a missing key none."""
    import pyarrow as pa

    from mcie.audit import IndexView

    for keys in (["cc", "aa", "bb", "aa"], ["c", "aé", "bbb", "aé"]):
        path = str(tmp_path / "index.parquet")
        status = ["accepted", "rejected", None, "failed"]
        pq.write_table(pa.table({"key": keys, "status": status}), path, row_group_size=2)
        view = IndexView(path, ("key", "status"))
        assert [view.row_of(k) for k in keys] == [0, 3, 2, 3]
        assert view.row_of("zz") is None and view.row_of("a") is None
        assert (view.is_sorted, view.duplicates, view.status(3), view.status(2)) == (False, 1, "failed", None)
        assert view.by_status() == {"accepted": 1, "rejected": 1, None: 1, "failed": 1}

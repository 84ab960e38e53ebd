"""``mcie ls shard OUT --out FINAL``: final shards of the samples people accepted.

Reads ``OUT/index.parquet`` after ``mcie ls import`` and writes, for every sample a reviewer
accepted (decision ``accept`` or ``fixed``; ``--include-unreviewed`` adds the pipeline's
accepted samples nobody reviewed):

* ``FINAL/shards/mcie-NNNNNN.tar`` — the original image members byte for byte (no JPEG
  generation loss), each mask from ``OUT/review`` where a reviewer repainted it (else the
  original PNG), and the JSON with the corrected wording, boxes recomputed from corrected
  masks, status ``accepted`` and the human verdict in ``verdict``;
``--exclude-bench BENCH`` leaves out every sample whose source image (``source_hash``) is one
of a benchmark's sets, so the final shards can be training data beside a held-out benchmark
built from the same build.

* ``FINAL/index.parquet`` (same schema as a build's index; one row per sample written),
  ``FINAL/shards.json`` (wids descriptor) and ``FINAL/stats/reviewed.json`` (counts), so
  ``mcie audit FINAL`` checks it like a build.

Samples are sorted by key and the tars are byte-reproducible, so equal inputs give equal bytes.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

from mcie import storage
from mcie.annotation import review_index as ri
from mcie.annotation.importer import review_dir
from mcie.exitcodes import UsageError
from mcie.images import decode_mask
from mcie.keys import check_shard_ref
from mcie.layout import DEFAULT_SHARD_SIZE, INDEX_FILE, SHARDS_DIR, STATS_DIR, WIDS_FILES, shard_name
from mcie.managed import refuse_managed_output
from mcie.records import mask_box
from mcie.runlock import RunLock
from mcie.shards import read_tar, wids_descriptor, write_tar
from mcie.tables import INDEX_SCHEMA, write_rows
from mcie.validate import check_sample


def _chosen(rows: dict[str, dict[str, Any]], include_unreviewed: bool, exclude: frozenset[str]) -> list[str]:
    keys = []
    for k, r in rows.items():
        if r["source_hash"] in exclude:  # a held-out source image: never in training shards
            continue
        rv = ri.review_of(r)
        human_ok = bool(rv) and rv.get("decision") in ("accept", "fixed")
        unreviewed_ok = include_unreviewed and not rv and r["status"] == "accepted" and bool(r["shard"])
        if human_ok or unreviewed_ok:
            keys.append(k)
    return sorted(keys)


def _verdict(review: dict[str, Any]) -> dict[str, Any]:
    """The human verdict written to the final JSON and index (the review minus its state)."""
    return {k: v for k, v in review.items() if k != "state"}


def _final_members(
    key: str, members: dict[str, bytes], row: dict[str, Any], out: str
) -> list[tuple[str, bytes]]:
    meta = json.loads(members["json"])
    rv = ri.review_of(row)
    result: list[tuple[str, bytes]] = []
    for role in ("src", "tgt"):
        name = next(n for n in members if n.startswith(f"{role}."))
        result.append((f"{key}.{name}", members[name]))
    corrected = set(rv["corrected"]["masks"]) if rv else set()
    for i, sub in enumerate(meta["sub_edits"]):
        data = members[f"mask{i}.png"]
        if i in corrected:
            with storage.open_read(storage.join(review_dir(out), f"{key}.mask{i}.png")) as fh:
                data = fh.read()
            box = mask_box(decode_mask(data))
            sub["box"] = list(box) if box else None
        result.append((f"{key}.mask{i}.png", data))
    if rv:
        meta["instruction"] = row["instruction"]
        for sub, text in zip(meta["sub_edits"], row["sub_instructions"], strict=True):
            sub["instruction"] = text
        meta["verdict"] = _verdict(rv)
    meta["status"], meta["reason"] = "accepted", ""
    result.append((f"{key}.json", json.dumps(meta, sort_keys=True).encode()))
    return result


def write_final(
    out: str,
    final: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    include_unreviewed: bool = False,
    exclude_sources: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Write final shards of accepted samples from ``out`` into ``final``; returns a summary.
    ``exclude_sources``: source-image hashes to leave out (a benchmark's held-out images,
    ``--exclude-bench``); the summary then counts the accepted samples left out as ``held_out``."""
    if shard_size < 1:
        raise UsageError("--shard-size must be >= 1")
    if os.path.abspath(out) == os.path.abspath(final):
        raise UsageError("--out must differ from the reviewed build directory")
    if os.path.lexists(final) and not os.path.isdir(final):  # a file, or a link to nowhere
        raise UsageError(f"--out {final!r} is not a folder; give an empty or new folder for the final shards")
    refuse_managed_output(final)
    if os.path.isdir(final) and os.listdir(final):
        raise UsageError(f"{final!r} is not empty")
    ri.read_index(out)  # a usage error before the lock creates anything
    # the build's run lock: the index is not rewritten under us by an import or an export
    with RunLock(out, "ls shard"):
        return _write_final_locked(out, final, shard_size, include_unreviewed, frozenset(exclude_sources))


def _write_final_locked(
    out: str, final: str, shard_size: int, include_unreviewed: bool, exclude: frozenset[str]
) -> dict[str, Any]:
    rows = ri.read_index(out)
    keys = _chosen(rows, include_unreviewed, exclude)
    held_out = len(_chosen(rows, include_unreviewed, frozenset())) - len(keys)
    wanted_by_shard: dict[str, set[str]] = collections.defaultdict(set)
    for k in keys:
        wanted_by_shard[rows[k]["shard"]].add(k)
    samples: dict[str, list[tuple[str, bytes]]] = {}
    for shard in sorted(wanted_by_shard):
        path = storage.join(out, check_shard_ref(shard, ri.index_path(out)))
        for key, members in read_tar(path):
            if key in wanted_by_shard[shard]:
                check_sample(key, members, path)
                samples[key] = _final_members(key, members, rows[key], out)
                # corrected masks come from OUT/review: the written sample is checked as well
                check_sample(key, {n.split(".", 1)[1]: b for n, b in samples[key]}, review_dir(out))
    missing = sorted(set(keys) - set(samples))
    if missing:
        raise UsageError(f"{len(missing)} accepted samples are not in their shards, e.g. {missing[0]}")
    index, counts = [], {}
    for n, start in enumerate(range(0, len(keys), shard_size)):
        chunk = keys[start : start + shard_size]
        rel = shard_name(n)
        counts[rel] = write_tar(os.path.join(final, rel), (samples[k] for k in chunk))
        for k in chunk:
            row = dict(rows[k])
            row["shard"], row["status"], row["reason"] = rel, "accepted", ""
            rv = ri.review_of(rows[k])
            if rv:  # the same verdict as the sample's JSON (the review state stays in OUT)
                row["verdict_json"] = json.dumps(_verdict(rv), sort_keys=True)
            index.append(row)
    os.makedirs(os.path.join(final, STATS_DIR), exist_ok=True)
    write_rows(os.path.join(final, INDEX_FILE), index, INDEX_SCHEMA)
    # small files too are written atomically: a full disk never leaves a 0-byte descriptor
    stats = {"unit": 0, "candidates": len(index), "by_status": {"accepted": len(index)}, "by_reason": {}}
    storage.write_json(os.path.join(final, STATS_DIR, "reviewed.json"), stats)  # what `mcie audit` adds up
    descriptor = wids_descriptor(final, SHARDS_DIR, "mcie-reviewed", counts)
    storage.write_json(os.path.join(final, WIDS_FILES[SHARDS_DIR]), descriptor)
    decisions = collections.Counter((ri.review_of(rows[k]) or {}).get("decision", "unreviewed") for k in keys)
    summary = {"samples": len(keys), "shards": len(counts), "by_decision": dict(sorted(decisions.items()))}
    if exclude:
        summary["held_out"] = held_out
    return summary

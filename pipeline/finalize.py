"""The one final step after all units: merge the per-unit parts, sorted, and describe the set.

Writes ``index.parquet`` and ``truth.parquet`` (sorted by key), the wids descriptors
``shards.json`` (accepted) and ``rejected.json``, and the dataset card ``README.md``. None of
these depends on which worker ran what, so equal options give equal bytes.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
from typing import Any

import pyarrow.parquet as pq

from mcie.card import write_card
from mcie.tables import INDEX_SCHEMA, TRUTH_SCHEMA, merge_parts


def wids_descriptor(out: str, shard_dir: str, name: str, counts: dict[str, int]) -> dict[str, Any]:
    """A wids ``wids-shard-index-v1`` descriptor; URLs are relative to the JSON's folder."""
    shardlist = []
    for path in sorted(glob.glob(os.path.join(out, shard_dir, "*.tar"))):
        rel = os.path.relpath(path, out)
        n = counts.get(rel, 0)
        if n:  # wids cannot index an empty shard
            shardlist.append({"url": rel, "nsamples": n, "filesize": os.path.getsize(path)})
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name,
        "shardlist": shardlist,
    }


def language_stats(instructions: list[str]) -> dict[str, Any]:
    """Type/token ratio and sizes of the instructions (lower-cased word tokens)."""
    tokens = [t for text in instructions for t in re.findall(r"[a-z]+", text.lower())]
    return {
        "instructions": len(instructions),
        "distinct_instructions": len(set(instructions)),
        "tokens": len(tokens),
        "types": len(set(tokens)),
        "type_token_ratio": round(len(set(tokens)) / len(tokens), 4) if tokens else None,
        "mean_words": round(len(tokens) / len(instructions), 1) if instructions else None,
    }


def finalize(out: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Merge and describe ``out``; returns the summary (counts by status and reason)."""
    n = merge_parts(
        os.path.join(out, "parts", "index-*.parquet"),
        os.path.join(out, "index.parquet"),
        INDEX_SCHEMA,
    )
    if glob.glob(os.path.join(out, "parts", "truth-*.parquet")):
        merge_parts(
            os.path.join(out, "parts", "truth-*.parquet"),
            os.path.join(out, "truth.parquet"),
            TRUTH_SCHEMA,
        )
    index = pq.read_table(
        os.path.join(out, "index.parquet"), columns=["shard", "status", "reason"]
    ).to_pylist()
    per_shard = collections.Counter(r["shard"] for r in index if r["shard"])
    for name, d in (("shards.json", "shards"), ("rejected.json", "rejected")):
        desc = wids_descriptor(out, d, f"mcie-{d}", per_shard)
        with open(os.path.join(out, name), "w") as fh:
            json.dump(desc, fh, indent=1, sort_keys=True)
    by_status = collections.Counter(r["status"] for r in index)
    instructions = pq.read_table(
        os.path.join(out, "index.parquet"), columns=["instruction", "status"]
    ).to_pylist()
    by_reason = collections.Counter(f"{r['status']}:{r['reason']}" for r in index if r["reason"])
    summary = {
        "candidates": n,
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "shards": sum(1 for k in per_shard if k.startswith("shards/")),
        "language": language_stats([r["instruction"] for r in instructions if r["status"] == "accepted"]),
    }
    write_card(out, summary, meta)
    return summary

"""The one final step after all units: merge the per-unit parts, sorted, and describe the set.

Writes ``index.parquet`` (sorted by key) and ``truth.parquet`` (unit by unit), the wids descriptors
``shards.json`` (accepted) and ``rejected.json``, and the dataset card ``README.md``. None of
these depends on which worker ran what, so equal options give equal bytes.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mcie import storage
from mcie.card import write_card
from mcie.layout import REJECTED_DIR, SHARDS_DIR, BuildLayout
from mcie.shards import wids_descriptor
from mcie.tables import INDEX_SCHEMA, TRUTH_SCHEMA, concat_parts, merge_parts, read_table

from .duplicates import resolve_duplicates


def language_stats(instructions) -> dict[str, Any]:
    """Type/token ratio and sizes of the instructions (lower-cased word tokens), in one pass
    that keeps only the word types, never the tokens."""
    n = tokens = 0
    types: set[str] = set()
    distinct: set[str] = set()
    for text in instructions:
        words = re.findall(r"[a-z]+", text.lower())
        n += 1
        tokens += len(words)
        types.update(words)
        distinct.add(text)
    return {
        "instructions": n,
        "distinct_instructions": len(distinct),
        "tokens": tokens,
        "types": len(types),
        "type_token_ratio": round(len(types) / tokens, 4) if tokens else None,
        "mean_words": round(tokens / n, 1) if n else None,
    }


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Value counts of a string column (nulls left out), without a Python row per value."""
    return {v["values"]: v["counts"] for v in pc.value_counts(column).to_pylist() if v["values"] is not None}


def finalize(out: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Merge and describe ``out``; returns the summary (counts by status and reason)."""
    duplicates = resolve_duplicates(out)  # one key, one candidate, across units too
    layout = BuildLayout(out)
    n = merge_parts(layout.index_parts_pattern(), layout.index, INDEX_SCHEMA)
    if storage.glob(layout.truth_parts_pattern()):
        # the truth holds every mask: appended part by part (each sorted by key), never whole
        concat_parts(layout.truth_parts_pattern(), layout.truth, TRUTH_SCHEMA)
    columns = ["shard", "status", "reason", "instruction"]
    table = read_table(layout.index, columns=columns)
    per_shard = _counts(table.column("shard"))
    for d in (SHARDS_DIR, REJECTED_DIR):
        storage.write_json(layout.wids(d), wids_descriptor(out, d, f"mcie-{d}", per_shard))
    reasons = pc.binary_join_element_wise(table.column("status"), table.column("reason"), ":")
    with_reason = pc.not_equal(table.column("reason"), "")
    accepted = table.filter(pc.equal(table.column("status"), "accepted")).column("instruction")
    summary = {
        "candidates": n,
        "by_status": dict(sorted(_counts(table.column("status")).items())),
        "by_reason": dict(sorted(_counts(pc.filter(reasons, with_reason)).items())),
        "shards": sum(1 for k in per_shard if k.startswith(f"{SHARDS_DIR}/")),
        "duplicates_across_units": duplicates,
        "language": language_stats(s for chunk in accepted.chunks for s in chunk.to_pylist()),
    }
    write_card(out, summary, meta)
    return summary

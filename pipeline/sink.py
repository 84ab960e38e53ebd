"""The unit sink: one unit's samples → its shard(s), index part, truth part and stats.

Accepted samples go to ``shards/``, rejected ones to ``rejected/`` (same layout: nothing is
dropped), failed ones to the index only. The stats file is written last and doubles as the
unit's done-marker.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any

from mcie.reasons import Reason, Status
from mcie.records import EditSample
from mcie.shards import sample_members, write_tar
from mcie.tables import INDEX_SCHEMA, TRUTH_SCHEMA, index_row, write_rows

from .units import unit_stats_path

SHARD_DIRS = {Status.ACCEPTED: "shards", Status.REJECTED: "rejected", Status.PENDING: "pending"}


class ShardSink:
    """Writes one unit at a time into an output directory."""

    def __init__(self, out: str, lossless: bool = False, policy: str = "continue") -> None:
        self.out = out
        self.lossless = lossless
        self.policy = policy
        for d in ("parts", "stats", "shards", "rejected"):
            os.makedirs(os.path.join(out, d), exist_ok=True)

    def write_unit(
        self,
        unit_id: int,
        samples: list[EditSample],
        truth_rows: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Write the unit and return its stats (also written as its done-marker)."""
        stem = f"mcie-{unit_id:06d}"
        samples = sorted(samples, key=lambda s: s.key)
        seen: set[str] = set()
        members: dict[Status, list[list[tuple[str, bytes]]]] = collections.defaultdict(list)
        for s in samples:
            if s.key in seen:
                s.reject(Reason.DUPLICATE)
                s.key = f"{s.key}-dup{len(seen)}"  # stays unique, sorts right after the original
            seen.add(s.key)
            if s.status not in SHARD_DIRS:
                continue
            try:
                members[s.status].append(sample_members(s, self.lossless))
            except Exception as exc:
                if self.policy == "raise":
                    raise
                s.fail(Reason.ENCODE_ERROR, exc)
        rows = []
        shard_of: dict[str, str] = {}
        for status, d in SHARD_DIRS.items():
            rel = f"{d}/{stem}.tar"
            if members[status] or status != Status.PENDING:
                write_tar(os.path.join(self.out, rel), members[status])
            for m in members[status]:
                shard_of[m[0][0].split(".", 1)[0]] = rel
        for s in samples:
            rows.append(index_row(s, shard_of.get(s.key), unit_id))
        write_rows(os.path.join(self.out, "parts", f"index-{unit_id:06d}.parquet"), rows, INDEX_SCHEMA)
        if truth_rows is not None:
            write_rows(
                os.path.join(self.out, "parts", f"truth-{unit_id:06d}.parquet"),
                truth_rows,
                TRUTH_SCHEMA,
            )
        stats = unit_stats(unit_id, samples)
        tmp = unit_stats_path(self.out, unit_id) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(stats, fh, sort_keys=True, indent=1)
        os.replace(tmp, unit_stats_path(self.out, unit_id))
        return stats


def unit_stats(unit_id: int, samples: list[EditSample]) -> dict[str, Any]:
    """Counts by status and by reason for one unit."""
    by_status = collections.Counter(s.status.value for s in samples)
    by_reason = collections.Counter(f"{s.status.value}:{s.reason}" for s in samples if s.reason)
    return {
        "unit": unit_id,
        "candidates": len(samples),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
    }

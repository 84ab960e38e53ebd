"""The unit sink: one unit's samples → its shard(s), index part, truth part and stats.

Accepted samples go to ``shards/``, rejected ones to ``rejected/`` (same layout: nothing is
dropped), failed ones to the index only. Samples are encoded as they arrive and their pixels
dropped, so a unit holds only compressed bytes (~50 KB a sample at 256 px), never decoded
images. The stats file is written last and doubles as the unit's done-marker: it lists the
unit's files with their sizes and SHA-256 (``files``), so ``--resume`` can check them
(:mod:`mcie.pipeline.markers`). Every file is written atomically through :mod:`mcie.storage`,
so ``out`` may be a local folder or a ``gs://`` / ``s3://`` URL.
"""

from __future__ import annotations

import collections
from typing import Any

from mcie import storage
from mcie.layout import (
    PARTS_DIR,
    PENDING_DIR,
    REJECTED_DIR,
    SHARDS_DIR,
    STATS_DIR,
    BuildLayout,
    index_part_name,
    shard_name,
    truth_part_name,
)
from mcie.reasons import Reason, Status
from mcie.records import EditSample
from mcie.shards import sample_members, tar_into
from mcie.tables import INDEX_SCHEMA, TRUTH_SCHEMA, index_row, write_rows

from .duplicates import mark_duplicate
from .markers import unit_stats

#: the shard folder of each status that has one (failed samples go to the index only)
FOLDER_OF = {Status.ACCEPTED: SHARDS_DIR, Status.REJECTED: REJECTED_DIR, Status.PENDING: PENDING_DIR}


class UnitWriter:
    """Collects one unit's samples (encoded on arrival) and writes the unit on :meth:`close`."""

    def __init__(self, sink: ShardSink, unit_id: int) -> None:
        self.sink, self.unit_id = sink, unit_id
        self.members: dict[Status, list[tuple[str, list[tuple[str, bytes]]]]] = collections.defaultdict(list)
        self.rows: list[dict[str, Any]] = []
        self.truth: list[dict[str, Any]] = []
        self.seen: set[str] = set()

    def add(self, s: EditSample, truth_row: dict[str, Any] | None = None) -> None:
        """Encode ``s`` for its shard (or record it as failed) and keep only bytes and its row."""
        if s.key in self.seen:  # the same content earlier in this unit (other units: finalize)
            mark_duplicate(s)
            if truth_row is not None:
                truth_row = {**truth_row, "key": s.key}
        self.seen.add(s.key)
        if s.status in FOLDER_OF:
            try:
                self.members[s.status].append((s.key, sample_members(s, self.sink.lossless)))
            except Exception as exc:
                if self.sink.policy == "raise":
                    raise
                s.fail(Reason.ENCODE_ERROR, exc)
        shard = shard_name(self.unit_id, FOLDER_OF[s.status]) if s.status in FOLDER_OF else None
        self.rows.append(index_row(s, shard, self.unit_id))
        if truth_row is not None:
            self.truth.append(truth_row)

    def close(self) -> dict[str, Any]:
        """Write the unit's tars, index part, truth part and (last) its stats, which list the
        files written with their sizes and checksums; return the stats."""
        layout, uid = self.sink.layout, self.unit_id
        files: dict[str, storage.FileDigest] = {}
        for status, d in FOLDER_OF.items():
            items = sorted(self.members[status], key=lambda kv: kv[0])
            if items or status != Status.PENDING:
                rel = shard_name(uid, d)
                with storage.atomic_open(layout.path(rel)) as fh:
                    tar_into(fh, (m for _, m in items))
                files[rel] = fh.digest()
        rel = index_part_name(uid)
        files[rel] = write_rows(layout.path(rel), self.rows, INDEX_SCHEMA)
        if self.truth:
            rel = truth_part_name(uid)
            files[rel] = write_rows(layout.path(rel), self.truth, TRUTH_SCHEMA)
        stats = unit_stats(uid, self.rows)
        stats["files"] = {k: v.to_json() for k, v in sorted(files.items())}
        storage.write_json(layout.stats(uid), stats)
        return stats


class ShardSink:
    """Writes units into an output directory."""

    def __init__(self, out: str, lossless: bool = False, policy: str = "continue") -> None:
        self.out = out
        self.layout = BuildLayout(out)
        self.lossless = lossless
        self.policy = policy
        for d in (PARTS_DIR, STATS_DIR, SHARDS_DIR, REJECTED_DIR):
            storage.makedirs(self.layout.folder(d))

    def open_unit(self, unit_id: int) -> UnitWriter:
        """A writer for one unit; add samples to it, then close it."""
        return UnitWriter(self, unit_id)

    def write_unit(
        self, unit_id: int, samples: list[EditSample], truth_rows: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Write a whole unit at once and return its stats."""
        writer = self.open_unit(unit_id)
        for s in samples:
            writer.add(s)
        writer.truth = list(truth_rows or [])
        return writer.close()

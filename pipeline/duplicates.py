"""One key, one candidate, across the whole run.

A key is a content hash (a real input's hashes its file's bytes), so two identical input files
are the same candidate twice. The first in the run's item order keeps the key; every later
copy becomes a ``duplicate`` row with a key of its own, so nothing is dropped and the index
never holds a key twice:

* inside a unit the sink sees the copies arrive in item order (:func:`mark_duplicate`);
* across units the final step (:func:`resolve_duplicates`, before the index merge) keeps the
  copy of the lowest unit (units are consecutive runs of items) and rewrites each later
  unit holding a copy: its sample leaves ``shards/`` for ``rejected/`` (JSON member updated),
  its index part and truth part get the new key, and its stats file (the done-marker) lists
  the new files' digests last, so ``--resume`` still verifies the unit.

Which copy wins depends on the item order only, never on ``--shard-size`` or ``--workers``,
and the loser's new key (:func:`duplicate_key`) and error text are the same either way.
A copy with images is ``rejected``; a copy that failed in a step (no images) stays ``failed``;
both get the reason ``duplicate``.
"""

from __future__ import annotations

import collections
import json
from typing import Any

from mcie import storage
from mcie.layout import REJECTED_DIR, SHARD_DIRS, BuildLayout, index_part_name, shard_name, truth_part_name
from mcie.reasons import Reason, Status
from mcie.records import EditSample, content_key
from mcie.shards import read_tar, tar_into
from mcie.tables import INDEX_SCHEMA, TRUTH_SCHEMA, read_table, write_rows

from .markers import unit_stats


def duplicate_key(key: str, source_id: str) -> str:
    """The key of the copy from ``source_id`` of the candidate ``key`` (our keys' one shape)."""
    return content_key("duplicate", key, source_id)


def duplicate_error(key: str) -> str:
    return f"same content as sample {key}, which came first in the input order"


def mark_duplicate(sample: EditSample) -> None:
    """Turn ``sample`` into the duplicate of the earlier candidate with its key."""
    first = sample.key
    sample.key = duplicate_key(first, sample.source_id)
    if sample.status != Status.FAILED:
        sample.status = Status.REJECTED
    sample.reason, sample.error = Reason.DUPLICATE.value, duplicate_error(first)


def resolve_duplicates(out: str) -> int:
    """Make every key of ``out``'s index parts unique across units (see the module docstring);
    returns the number of candidates marked ``duplicate``."""
    parts = storage.glob(BuildLayout(out).index_parts_pattern())
    units_of: dict[str, list[int]] = collections.defaultdict(list)
    for part in parts:
        table = read_table(part, columns=["key", "unit"])
        for key, unit in zip(table.column("key").to_pylist(), table.column("unit").to_pylist(), strict=True):
            units_of[key].append(unit)
    later: dict[int, set[str]] = collections.defaultdict(set)
    for key, units in units_of.items():
        for unit in sorted(units)[1:]:  # the lowest unit's copy came first
            later[unit].add(key)
    for unit, keys in sorted(later.items()):
        _rewrite_unit(out, unit, keys)
    return sum(len(k) for k in later.values())


def _rewrite_unit(out: str, unit: int, keys: set[str]) -> None:
    """Mark the candidates ``keys`` of ``unit`` as duplicates in all of its files."""
    layout = BuildLayout(out)
    index_rel = index_part_name(unit)
    rows = read_table(layout.path(index_rel), schema=INDEX_SCHEMA).to_pylist()
    renamed: dict[str, tuple[str, dict[str, Any]]] = {}  # old key -> (new key, its JSON fields)
    for row in rows:
        if row["key"] in keys:
            new = duplicate_key(row["key"], row["source_id"])
            status = Status.FAILED.value if row["shard"] is None else Status.REJECTED.value
            error = duplicate_error(row["key"])
            fields = {"status": status, "reason": Reason.DUPLICATE.value, "error": error}
            renamed[row["key"]] = (new, fields)
            row.update(key=new, **fields)
            if row["shard"] is not None:
                row["shard"] = shard_name(unit, REJECTED_DIR)
    written = _move_members(layout, unit, renamed)
    written[index_rel] = write_rows(layout.path(index_rel), rows, INDEX_SCHEMA)
    truth_rel = truth_part_name(unit)
    if storage.exists(layout.path(truth_rel)):
        truth = read_table(layout.path(truth_rel), schema=TRUTH_SCHEMA).to_pylist()
        for r in truth:
            r["key"] = renamed.get(r["key"], (r["key"],))[0]
        written[truth_rel] = write_rows(layout.path(truth_rel), truth, TRUTH_SCHEMA)
    stats_path = layout.stats(unit)
    old = storage.read_json(stats_path)
    stats = unit_stats(unit, rows)
    stats["files"] = {**old.get("files", {}), **{k: v.to_json() for k, v in written.items()}}
    stats["files"] = dict(sorted(stats["files"].items()))
    storage.write_json(stats_path, stats)  # last: the done-marker describes the files now there


def _move_members(layout: BuildLayout, unit: int, renamed: dict[str, tuple[str, dict[str, Any]]]):
    """Move the renamed samples from the unit's tars into its ``rejected/`` tar under their new
    key with their JSON updated; returns the digests of the tars rewritten."""
    tars: dict[str, list[tuple[str, dict[str, bytes]]]] = {}
    for d in SHARD_DIRS:
        path = layout.shard(unit, d)
        if storage.exists(path):
            tars[d] = list(read_tar(path))
    moved = []
    changed = set()
    for d, samples in tars.items():
        kept = []
        for key, members in samples:
            if key not in renamed:
                kept.append((key, members))
                continue
            new, fields = renamed[key]
            meta = json.loads(members["json"])
            meta.update(key=new, **fields)
            members = {**members, "json": json.dumps(meta, sort_keys=True).encode()}
            moved.append((new, members))
            changed.add(d)
        tars[d] = kept
    if not moved:
        return {}
    tars[REJECTED_DIR] = tars.get(REJECTED_DIR, []) + moved
    changed.add(REJECTED_DIR)
    written = {}
    for d in sorted(changed):
        rel = shard_name(unit, d)
        samples = sorted(tars[d], key=lambda kv: kv[0])
        with storage.atomic_open(layout.path(rel)) as fh:
            # members keep the order they were read in (src, tgt, masks, json): the sink's order
            tar_into(fh, ([(f"{k}.{s}", b) for s, b in m.items()] for k, m in samples))
        written[rel] = fh.digest()
    return written

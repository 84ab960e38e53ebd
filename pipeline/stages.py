"""Each stage alone, over stored record tables: ``mcie generate | annotate | score | shard``.

A record table is a folder with ``part-NNNNNN.parquet`` (full records, one per unit),
``stats/`` done-markers, ``run.json`` and, from ``generate``, ``truth.parquet``. A stage reads
one table and writes another, so a user can re-score with other thresholds without
regenerating. The truth file is carried forward by copying it, unread. Tables may live on
any storage :mod:`mcie.storage` reaches (a local folder, ``gs://``, ``s3://``). Running the four
stages gives the same shards and index as ``mcie build`` with the same options, for every
backend: each command runs the same :class:`~mcie.pipeline.build.UnitFn` over a cut of the
backend's steps (:data:`~mcie.pipeline.build.CUTS`), reading and writing a table instead of
the source and the shard sink.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

from mcie import storage
from mcie.card import refresh_filter_measured
from mcie.exitcodes import UsageError
from mcie.layout import STATS_DIR, BuildLayout, unit_of
from mcie.records import EditSample
from mcie.tables import TRUTH_SCHEMA, concat_parts, read_records, write_records, write_rows

from .build import UnitFn, open_shard_writer, read_source, run_units
from .markers import unit_stats
from .options import BuildOptions
from .units import Unit


def table_units(table: str) -> list[Unit]:
    """The units of a record table, from its parts; sizes from its stats."""
    if not storage.is_remote(table) and not os.path.isdir(table):
        raise UsageError(f"input table {table!r} does not exist")
    layout = BuildLayout(table)
    units = []
    for path in storage.glob(layout.record_parts_pattern()):
        uid = unit_of(storage.basename(path))
        if uid is None:
            continue
        units.append(Unit(uid, 0, storage.read_json(layout.stats(uid))["candidates"]))
    if not units:
        raise UsageError(f"input table {table!r} has no part-*.parquet files; is it a record table?")
    return units


def table_meta(table: str) -> dict[str, Any]:
    """The ``meta`` a table's ``run.json`` carries (generator, seed, thresholds...)."""
    return storage.read_json(BuildLayout(table).run_manifest).get("meta", {})


def summarize_table(out: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A record table's summary: counts summed from its stats."""
    total, by_status, by_reason = 0, collections.Counter(), collections.Counter()
    for path in storage.list_folder(BuildLayout(out).folder(STATS_DIR), "*.json"):
        st = storage.read_json(path)
        total += st["candidates"]
        by_status.update(st["by_status"])
        by_reason.update(st["by_reason"])
    return {
        "candidates": total,
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
    }


class TableWriter:
    """A unit's record-table part (and truth part): the stage commands' writer, with the
    shard sink's interface (``add``, then ``close`` → stats)."""

    def __init__(self, out: str, unit_id: int) -> None:
        self.layout, self.unit_id = BuildLayout(out), unit_id
        self.samples: list[EditSample] = []
        self.truth: list[dict[str, Any]] = []
        self.has_truth = False

    def add(self, sample: EditSample, truth: dict[str, Any] | None = None) -> None:
        self.samples.append(sample)
        if truth is not None:
            self.truth.append(truth)

    def close(self) -> dict[str, Any]:
        write_records(self.layout.record_part(self.unit_id), self.samples)
        if self.has_truth:
            write_rows(self.layout.truth_part(self.unit_id), self.truth, TRUTH_SCHEMA)
        stats = unit_stats(self.unit_id, self.samples)
        storage.write_json(self.layout.stats(self.unit_id), stats)  # atomic: the done-marker
        return stats


def open_table_writer(opts: BuildOptions, unit: Unit) -> TableWriter:
    return TableWriter(opts.out, unit.id)


def open_generate_writer(opts: BuildOptions, unit: Unit) -> TableWriter:
    w = TableWriter(opts.out, unit.id)
    w.has_truth = opts.backend.has_truth  # a truth part per unit where the backend knows truth
    return w


class TableReader:
    """A unit's records from the record table ``src`` (the stage commands' input)."""

    def __init__(self, src: str) -> None:
        self.src = src

    def __call__(self, opts: BuildOptions, unit: Unit, source=None):
        for s in read_records(BuildLayout(self.src).record_part(unit.id)):
            yield s, None


def run_generate(opts: BuildOptions) -> dict[str, Any]:
    """``mcie generate``: unannotated candidates into a record table at ``opts.out``."""

    def finish(out: str, meta: dict[str, Any]) -> dict[str, Any]:
        if not opts.backend.has_truth:
            return summarize_table(out, meta)
        layout = BuildLayout(out)
        # as the build writes it: part by part, never the whole truth in memory
        concat_parts(layout.truth_parts_pattern(), layout.truth, TRUTH_SCHEMA)
        return summarize_table(out, meta)

    backend = opts.backend
    backend.check(opts.run)
    fn = UnitFn(opts, "generate", read_source, open_generate_writer, count=False)
    units = backend.units(opts.shard_size)
    return run_units(
        opts, fn, units, command="generate", fingerprint=opts.fingerprint(), meta=opts.meta(), finish=finish
    )


def run_map_stage(stage: str, src: str, opts: BuildOptions) -> dict[str, Any]:
    """``mcie annotate`` / ``mcie score``: the backend's steps of that stage over every record
    of table ``src``, written to the table ``opts.out`` (its annotate/judge/threshold options
    apply)."""
    if stage not in ("annotate", "score"):
        raise UsageError(f"unknown stage {stage!r}; allowed: ['annotate', 'score']")
    units = table_units(src)
    meta = table_meta(src)
    if stage == "score":
        meta = {**meta, "thresholds": dataclasses.asdict(opts.thresholds)}
    fingerprint = {"input": _where(src), **opts.stage_fingerprint(stage)}
    fn = UnitFn(opts, stage, TableReader(src), open_table_writer, count=stage == "score")
    summary = run_units(
        opts, fn, units, command=stage, fingerprint=fingerprint, meta=meta, finish=summarize_table
    )
    _carry_truth(src, opts.out)
    return summary


def run_shard(src: str, opts: BuildOptions) -> dict[str, Any]:
    """``mcie shard``: a scored record table → shards, index, wids JSON, card."""
    units = table_units(src)
    fn = UnitFn(opts, "shard", TableReader(src), open_shard_writer, count=True)
    fingerprint = {"input": _where(src), "lossless": opts.lossless}
    meta = {**table_meta(src), "lossless": opts.lossless}
    summary = run_units(opts, fn, units, command="shard", fingerprint=fingerprint, meta=meta)
    if _carry_truth(src, opts.out):
        # the card was written before the truth arrived: its filter paragraph measures against it
        refresh_filter_measured(opts.out)
    return summary


def _carry_truth(src_table: str, out: str) -> bool:
    """Copy truth.parquet forward byte for byte (no stage reads it); whether there was one."""
    path = BuildLayout(src_table).truth
    if not storage.exists(path):
        return False
    storage.copy(path, BuildLayout(out).truth)
    return True


def _where(table: str) -> str:
    """A table's place in a fingerprint: a local folder as an absolute path, a URL as is."""
    return table if storage.is_remote(table) else os.path.abspath(table)

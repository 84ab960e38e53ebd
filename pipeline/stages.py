"""Each stage alone, over stored record tables: ``mcie generate | annotate | score | shard``.

A record table is a folder with ``part-NNNNNN.parquet`` (full records, one per unit),
``stats/`` done-markers, ``run.json`` and, from ``generate``, ``truth.parquet``. A stage reads
one table and writes another, so a user can re-score with other thresholds without
regenerating. The truth file is carried forward by copying it, unread. Running the four
stages gives the same shards and index as ``mcie build`` with the same options, for every
backend: each command runs the same :class:`~mcie.pipeline.build.UnitFn` over a cut of the
backend's steps (:data:`~mcie.pipeline.build.CUTS`), reading and writing a table instead of
the source and the shard sink.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import shutil
from typing import Any

from mcie.exitcodes import UsageError
from mcie.records import EditSample
from mcie.tables import TRUTH_SCHEMA, concat_parts, read_records, write_records, write_rows

from .build import UnitFn, open_shard_writer, read_source, unit_pipeline
from .options import BuildOptions
from .runner import run_pipeline
from .sink import unit_stats
from .units import Unit, unit_stats_path


def _part(table: str, unit_id: int) -> str:
    return os.path.join(table, f"part-{unit_id:06d}.parquet")


def _write_stats(table: str, unit_id: int, samples: list[EditSample]) -> dict[str, Any]:
    stats = unit_stats(unit_id, samples)
    os.makedirs(os.path.join(table, "stats"), exist_ok=True)
    tmp = unit_stats_path(table, unit_id) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(stats, fh, sort_keys=True, indent=1)
    os.replace(tmp, unit_stats_path(table, unit_id))
    return stats


def table_units(table: str) -> list[Unit]:
    """The units of a record table, from its parts; sizes from its stats."""
    if not os.path.isdir(table):
        raise UsageError(f"input table {table!r} does not exist")
    units = []
    for path in sorted(glob.glob(os.path.join(table, "part-*.parquet"))):
        uid = int(os.path.basename(path)[5:11])
        with open(unit_stats_path(table, uid)) as fh:
            n = json.load(fh)["candidates"]
        units.append(Unit(uid, 0, n))
    if not units:
        raise UsageError(f"input table {table!r} has no part-*.parquet files; is it a record table?")
    return units


def table_meta(table: str) -> dict[str, Any]:
    """The ``meta`` a table's ``run.json`` carries (generator, seed, thresholds...)."""
    with open(os.path.join(table, "run.json")) as fh:
        return json.load(fh).get("meta", {})


def summarize_table(out: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A record table's summary: counts summed from its stats."""
    total, by_status, by_reason = 0, collections.Counter(), collections.Counter()
    for path in glob.glob(os.path.join(out, "stats", "*.json")):
        with open(path) as fh:
            st = json.load(fh)
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
        self.out, self.unit_id = out, unit_id
        self.samples: list[EditSample] = []
        self.truth: list[dict[str, Any]] = []
        self.has_truth = False

    def add(self, sample: EditSample, truth: dict[str, Any] | None = None) -> None:
        self.samples.append(sample)
        if truth is not None:
            self.truth.append(truth)

    def close(self) -> dict[str, Any]:
        os.makedirs(os.path.join(self.out, "parts"), exist_ok=True)
        write_records(_part(self.out, self.unit_id), self.samples)
        if self.has_truth:
            path = os.path.join(self.out, "parts", f"truth-{self.unit_id:06d}.parquet")
            write_rows(path, self.truth, TRUTH_SCHEMA)
        return _write_stats(self.out, self.unit_id, self.samples)


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
        for s in read_records(_part(self.src, unit.id)):
            yield s, None


def run_generate(opts: BuildOptions) -> dict[str, Any]:
    """``mcie generate``: unannotated candidates into a record table at ``opts.out``."""

    def finish(out: str, meta: dict[str, Any]) -> dict[str, Any]:
        if not opts.backend.has_truth:
            return summarize_table(out, meta)
        concat_parts(  # as the build writes it: part by part, never the whole truth in memory
            os.path.join(out, "parts", "truth-*.parquet"),
            os.path.join(out, "truth.parquet"),
            TRUTH_SCHEMA,
        )
        return summarize_table(out, meta)

    backend = opts.backend
    backend.check(opts.run)
    fn = UnitFn(opts, "generate", read_source, open_generate_writer, count=False)
    return run_pipeline(
        command="generate",
        out=opts.out,
        units=backend.units(opts.shard_size),
        total_samples=backend.total(),
        fingerprint=opts.fingerprint(),
        run=opts.run,
        resume=opts.resume,
        attach=lambda p, todo: unit_pipeline(p, todo, fn),
        meta=opts.meta(),
        finish=finish,
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
    fingerprint = {"input": os.path.abspath(src), **opts.stage_fingerprint(stage)}
    fn = UnitFn(opts, stage, TableReader(src), open_table_writer, count=stage == "score")
    summary = run_pipeline(
        command=stage,
        out=opts.out,
        units=units,
        total_samples=sum(u.stop for u in units),
        fingerprint=fingerprint,
        run=opts.run,
        resume=opts.resume,
        attach=lambda p, todo: unit_pipeline(p, todo, fn),
        meta=meta,
        finish=summarize_table,
    )
    _carry_truth(src, opts.out)
    return summary


def run_shard(src: str, opts: BuildOptions) -> dict[str, Any]:
    """``mcie shard``: a scored record table → shards, index, wids JSON, card."""
    units = table_units(src)
    fn = UnitFn(opts, "shard", TableReader(src), open_shard_writer, count=True)
    summary = run_pipeline(
        command="shard",
        out=opts.out,
        units=units,
        total_samples=sum(u.stop for u in units),
        fingerprint={"input": os.path.abspath(src), "lossless": opts.lossless},
        run=opts.run,
        resume=opts.resume,
        attach=lambda p, todo: unit_pipeline(p, todo, fn),
        meta={**table_meta(src), "lossless": opts.lossless},
    )
    _carry_truth(src, opts.out)
    return summary


def _carry_truth(src_table: str, out: str) -> None:
    """Copy truth.parquet forward byte for byte (no stage reads it)."""
    path = os.path.join(src_table, "truth.parquet")
    if os.path.exists(path):
        shutil.copyfile(path, os.path.join(out, "truth.parquet"))

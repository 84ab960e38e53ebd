"""Each stage alone, over stored record tables: ``mcie generate | annotate | score | shard``.

A record table is a folder with ``part-NNNNNN.parquet`` (full records, one per unit),
``stats/`` done-markers, ``run.json`` and, from ``generate``, ``truth.parquet``. A stage reads
one table and writes another, so a user can re-score with other thresholds without
regenerating. The truth file is carried forward by copying it, unread. Running the four
stages gives the same shards and index as ``mcie build`` with the same options.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import apache_beam as beam

from mcie.exitcodes import UsageError
from mcie.records import EditSample
from mcie.tables import TRUTH_SCHEMA, concat_parts, read_records, write_records, write_rows

from .build import SampleChain, build_meta
from .options import BuildOptions, RunOptions
from .runner import count_outcome, run_pipeline
from .sink import ShardSink, unit_stats
from .units import Unit, plan_units, run_stage, unit_stats_path


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


class GenerateUnitFn(beam.DoFn):
    """Generates one unit's candidates into a record-table part (+ truth part)."""

    def __init__(self, opts: BuildOptions) -> None:
        self.opts = opts

    def setup(self) -> None:
        self.chain = SampleChain(self.opts)

    def process(self, unit: Unit):
        made = [self.chain.generate(i) for i in range(unit.start, unit.stop)]
        samples = [s for s, _ in made]
        os.makedirs(os.path.join(self.opts.out, "parts"), exist_ok=True)
        write_records(_part(self.opts.out, unit.id), samples)
        truths = [t for _, t in made if t is not None]
        write_rows(
            os.path.join(self.opts.out, "parts", f"truth-{unit.id:06d}.parquet"),
            truths,
            TRUTH_SCHEMA,
        )
        yield _write_stats(self.opts.out, unit.id, samples)


class MapPartFn(beam.DoFn):
    """Applies one per-sample step to every record of a part and writes it to ``out``."""

    def __init__(
        self,
        src: str,
        out: str,
        step: Callable[[SampleChain, EditSample], EditSample],
        opts: BuildOptions,
    ) -> None:
        self.src, self.out, self.step, self.opts = src, out, step, opts

    def setup(self) -> None:
        self.chain = SampleChain(self.opts)

    def process(self, unit: Unit):
        samples = [self.step(self.chain, s) for s in read_records(_part(self.src, unit.id))]
        write_records(_part(self.out, unit.id), samples)
        yield _write_stats(self.out, unit.id, samples)


class ShardPartFn(beam.DoFn):
    """Writes a scored part as the unit's shards, index part and stats."""

    def __init__(self, src: str, out: str, lossless: bool, policy: str) -> None:
        self.src, self.out, self.lossless, self.policy = src, out, lossless, policy

    def setup(self) -> None:
        self.sink = ShardSink(self.out, self.lossless, self.policy)

    def process(self, unit: Unit):
        samples = read_records(_part(self.src, unit.id))
        stats = self.sink.write_unit(unit.id, samples, None)
        for s in samples:
            count_outcome(s)
        yield stats


def _par_do(fn: beam.DoFn):
    return lambda p, todo: (
        p | "Units" >> beam.Create(todo) | "SpreadUnits" >> beam.Reshuffle() | "Stage" >> beam.ParDo(fn)
    )


def run_generate(opts: BuildOptions) -> dict[str, Any]:
    """``mcie generate``: unannotated candidates into a record table at ``opts.out``."""
    units = plan_units(opts.samples, opts.shard_size)

    def finish(out: str, meta: dict[str, Any]) -> dict[str, Any]:
        concat_parts(  # as the build writes it: part by part, never the whole truth in memory
            os.path.join(out, "parts", "truth-*.parquet"),
            os.path.join(out, "truth.parquet"),
            TRUTH_SCHEMA,
        )
        return summarize_table(out, meta)

    return run_pipeline(
        command="generate",
        out=opts.out,
        units=units,
        total_samples=opts.samples,
        fingerprint=opts.fingerprint(),
        run=opts.run,
        resume=opts.resume,
        attach=_par_do(GenerateUnitFn(opts)),
        meta=build_meta(opts),
        finish=finish,
    )


def _annotate(chain: SampleChain, s: EditSample) -> EditSample:
    return run_stage(s, "annotate", chain.annotator.annotate, chain.opts.run.error_policy)


def _score(chain: SampleChain, s: EditSample) -> EditSample:
    s = run_stage(s, "score", chain.score, chain.opts.run.error_policy)
    count_outcome(s)
    return s


STEPS = {"annotate": _annotate, "score": _score}


def run_map_stage(stage: str, src: str, opts: BuildOptions) -> dict[str, Any]:
    """``mcie annotate`` / ``mcie score``: one step over every record of table ``src``,
    written to the table ``opts.out`` (its annotate/judge/threshold options apply)."""
    if stage not in STEPS:
        raise UsageError(f"unknown stage {stage!r}; allowed: {sorted(STEPS)}")
    units = table_units(src)
    meta = table_meta(src)
    if stage == "score":
        meta = {**meta, "thresholds": dataclasses.asdict(opts.thresholds)}
    cfg = (
        {"annotate": opts.annotate}
        if stage == "annotate"
        else {"judge": opts.judge, "thresholds": opts.thresholds}
    )
    summary = run_pipeline(
        command=stage,
        out=opts.out,
        units=units,
        total_samples=sum(u.stop for u in units),
        fingerprint={
            "input": os.path.abspath(src),
            **{k: dataclasses.asdict(v) for k, v in cfg.items()},
        },
        run=opts.run,
        resume=opts.resume,
        attach=_par_do(MapPartFn(src, opts.out, STEPS[stage], opts)),
        meta=meta,
        finish=summarize_table,
    )
    _carry_truth(src, opts.out)
    return summary


def run_shard(src: str, out: str, lossless: bool, run: RunOptions, resume: bool = False) -> dict[str, Any]:
    """``mcie shard``: a scored record table → shards, index, wids JSON, card."""
    units = table_units(src)
    summary = run_pipeline(
        command="shard",
        out=out,
        units=units,
        total_samples=sum(u.stop for u in units),
        fingerprint={"input": os.path.abspath(src), "lossless": lossless},
        run=run,
        resume=resume,
        attach=_par_do(ShardPartFn(src, out, lossless, run.error_policy)),
        meta={**table_meta(src), "lossless": lossless},
    )
    _carry_truth(src, out)
    return summary


def _carry_truth(src_table: str, out: str) -> None:
    """Copy truth.parquet forward byte for byte (no stage reads it)."""
    path = os.path.join(src_table, "truth.parquet")
    if os.path.exists(path):
        shutil.copyfile(path, os.path.join(out, "truth.parquet"))

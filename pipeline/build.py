"""``mcie build``: generate → annotate → score → shard in one Beam pipeline.

The pipeline is parallel over units (shard-sized index ranges); inside a unit the stages run
fused, sample by sample, and the unit's shard, index part and stats are written at its end.
Only the units (three integers each) are reshuffled: image bytes never cross a shuffle.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from mcie.reasons import Reason
from mcie.records import EditSample
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import JudgeFilter, PixelJudge
from mcie.transforms.synthetic.generator import SyntheticSource

from .options import BuildOptions
from .runner import count_outcome, run_pipeline
from .sink import ShardSink
from .units import Unit, plan_units, run_stage


class SampleChain:
    """The per-sample work of a build, shared by the Beam DoFn and the plain-loop benchmark:
    generate, annotate, judge and filter under the error policy."""

    def __init__(self, opts: BuildOptions) -> None:
        self.opts = opts
        self.source = SyntheticSource(opts.synthetic)
        self.annotator = MaskAnnotator(opts.annotate)
        self.judge = PixelJudge(opts.judge)
        self.filter = JudgeFilter(opts.thresholds)

    def generate(self, index: int) -> tuple[EditSample, dict[str, Any] | None]:
        """The candidate for ``index`` and its truth row; a generator exception gives a failed
        sample (keyed by where it came from) and no truth row."""
        seed = self.opts.seed
        try:
            return self.source.generate(seed, index)
        except Exception as exc:
            if self.opts.run.error_policy == "raise":
                raise
            sample = EditSample(
                key=self.source.failed_key(seed, index),
                source_id=f"synthetic:{seed}:{index}",
                source_hash="",
                src=None,
                tgt=None,
                instruction="",
                sub_edits=[],
                provenance={"seed": seed, "index": index},
            )
            sample.fail(Reason.GENERATE_ERROR, exc)
            return sample, None

    def process(self, sample: EditSample) -> EditSample:
        """Annotate, judge and filter one candidate under the error policy."""
        policy = self.opts.run.error_policy
        sample = run_stage(sample, "annotate", self.annotator.annotate, policy)
        return run_stage(sample, "score", self.score, policy)

    def score(self, sample: EditSample) -> EditSample:
        """Judge, then filter."""
        return self.filter.apply(self.judge.judge(sample))

    def make(self, index: int) -> tuple[EditSample, dict[str, Any] | None]:
        """One candidate, scored, and its truth row (None when generation failed)."""
        sample, truth = self.generate(index)
        return self.process(sample), truth


class BuildUnitFn(beam.DoFn):
    """Builds one unit end to end; yields the unit's stats (small)."""

    def __init__(self, opts: BuildOptions) -> None:
        self.opts = opts

    def setup(self) -> None:
        # heavy state once per worker (here: cheap, but a model-backed chain loads weights here)
        self.chain = SampleChain(self.opts)
        self.sink = ShardSink(self.opts.out, self.opts.lossless, self.opts.run.error_policy)
        self.units_done = 0
        self.elapsed = Metrics.distribution("mcie", "unit_ms")

    def process(self, unit: Unit):
        t0 = time.perf_counter()
        writer = self.sink.open_unit(unit.id)
        for i in range(unit.start, unit.stop):
            sample, truth = self.chain.make(i)
            writer.add(sample, truth)  # encoded now; the pixels are not kept
            count_outcome(sample)
        stats = writer.close()
        self.elapsed.update(int(1000 * (time.perf_counter() - t0)))
        self.units_done += 1
        if self.opts.run.exit_after_units is not None and self.units_done >= self.opts.run.exit_after_units:
            os._exit(9)  # testing aid: die like kill -9, leaving this unit done and others not
        yield stats


def build_pipeline(p: beam.Pipeline, units: list[Unit], opts: BuildOptions):
    """Attach the build to pipeline ``p``; returns the PCollection of unit stats."""
    return (
        p
        | "Units" >> beam.Create(units)
        | "SpreadUnits" >> beam.Reshuffle()
        | "BuildUnits" >> beam.ParDo(BuildUnitFn(opts))
    )


def run_build(opts: BuildOptions) -> dict[str, Any]:
    """Run ``mcie build`` and return its summary (see :func:`mcie.pipeline.runner.run_pipeline`)."""
    units = plan_units(opts.samples, opts.shard_size)
    return run_pipeline(
        command="build",
        out=opts.out,
        units=units,
        total_samples=opts.samples,
        fingerprint=opts.fingerprint(),
        run=opts.run,
        resume=opts.resume,
        attach=lambda p, todo: build_pipeline(p, todo, opts),
        meta=build_meta(opts),
    )


def build_meta(opts: BuildOptions) -> dict[str, Any]:
    """What the dataset card says about how the set was made."""
    from mcie.transforms.synthetic.planner import CONNECTIVE_STYLES, template_count

    return {
        "generator": "synthetic",
        "seed": opts.seed,
        "lossless": opts.lossless,
        "thresholds": dataclasses.asdict(opts.thresholds),
        "edit_types": [t for t, _ in opts.synthetic.plan.edit_weights],
        "templates": template_count(),
        "connectives": len(CONNECTIVE_STYLES),
    }

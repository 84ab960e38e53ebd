"""Record-level Beam transforms: each stage as a ``PTransform`` over ``EditSample``s.

``mcie build`` fuses the stages inside shard-sized units for speed; these transforms are the
same steps for users who compose their own pipelines (a real-model stage in the middle, say)
and for tests with ``TestPipeline``. Every outcome is counted (see
:func:`mcie.pipeline.runner.count_outcome`); nothing is dropped.
"""

from __future__ import annotations

import apache_beam as beam

from .build import SampleChain
from .options import BuildOptions
from .runner import count_outcome
from .units import run_stage


class _StepFn(beam.DoFn):
    def __init__(self, opts: BuildOptions, stage: str) -> None:
        self.opts, self.stage = opts, stage

    def setup(self) -> None:
        self.chain = SampleChain(self.opts)  # models load once per worker, here

    def process(self, item):
        policy = self.opts.run.error_policy
        if self.stage == "generate":
            sample, _truth = self.chain.generate(item)  # truth stays out of the record flow
            yield sample
        elif self.stage == "annotate":
            yield run_stage(item, "annotate", self.chain.annotator.annotate, policy)
        else:
            sample = run_stage(item, "score", self.chain.score, policy)
            count_outcome(sample)
            yield sample


class GenerateSamples(beam.PTransform):
    """Sample indices → candidate ``EditSample``s (synthetic source)."""

    def __init__(self, opts: BuildOptions) -> None:
        super().__init__()
        self.opts = opts

    def expand(self, indices):
        return indices | "Generate" >> beam.ParDo(_StepFn(self.opts, "generate"))


class AnnotateSamples(beam.PTransform):
    """Candidates → candidates with a mask and box per sub-edit."""

    def __init__(self, opts: BuildOptions) -> None:
        super().__init__()
        self.opts = opts

    def expand(self, samples):
        return samples | "Annotate" >> beam.ParDo(_StepFn(self.opts, "annotate"))


class ScoreSamples(beam.PTransform):
    """Annotated candidates → judged and filtered (accepted/rejected/failed) samples."""

    def __init__(self, opts: BuildOptions) -> None:
        super().__init__()
        self.opts = opts

    def expand(self, samples):
        return samples | "JudgeAndFilter" >> beam.ParDo(_StepFn(self.opts, "score"))

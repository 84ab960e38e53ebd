"""The synthetic backend's steps: generate (scene → plan → ground → edit), annotate, judge.

The generator runs source, plan, ground and edit as one step because one RNG stream per sample,
seeded with (seed, index), is drawn through them in order (a crowded scene is redrawn until a
plan fits); splitting them would change the bytes of every candidate.
"""

from __future__ import annotations

from typing import Any

from mcie.reasons import Reason
from mcie.records import EditSample
from mcie.transforms.annotate import AnnotateConfig, MaskAnnotator
from mcie.transforms.step import SourceStep, Step
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge, PixelJudgeConfig


class SceneSource(SourceStep):
    """Sample index → synthetic candidate and its truth row, from the RNG of (seed, index)."""

    def __init__(self, config: SyntheticConfig, seed: int) -> None:
        self.source = SyntheticSource(config)
        self.seed = seed

    def make(self, item: int) -> tuple[EditSample, dict[str, Any] | None]:
        return self.source.generate(self.seed, item)

    def failed(self, item: int, exc: BaseException) -> EditSample:
        return EditSample(
            key=self.source.failed_key(self.seed, item),
            source_id=f"synthetic:{self.seed}:{item}",
            source_hash="",
            src=None,
            tgt=None,
            instruction="",
            sub_edits=[],
            provenance={"seed": self.seed, "index": item},
        )


class AnnotateStep(Step):
    """Masks, boxes and labels per sub-edit, from evidence (:class:`MaskAnnotator`)."""

    stage = "annotate"
    reason = Reason.ANNOTATE_ERROR

    def __init__(self, config: AnnotateConfig) -> None:
        self.annotator = MaskAnnotator(config)

    def process(self, sample: EditSample) -> EditSample:
        return self.annotator.annotate(sample)


class PixelJudgeStep(Step):
    """Per-sub-edit pixel checks and background figures (:class:`PixelJudge`)."""

    stage = "score"
    reason = Reason.SCORE_ERROR

    def __init__(self, config: PixelJudgeConfig) -> None:
        self.judge = PixelJudge(config)

    def process(self, sample: EditSample) -> EditSample:
        return self.judge.judge(sample)

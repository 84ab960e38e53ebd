"""Score stage with a VLM: per sub-instruction "executed?" with a score, an overall quality
score, and the pixel background-consistency figures outside the union of sub-edit masks.

Scores are the model's P(yes) against P(no) for the first answer token (no text to parse). The
judge sees the edited image and the wording (one image per prompt: many VLMs, LLaVA among them,
take one); the background check compares source and target pixels. Thresholds and reason codes
are :class:`mcie.transforms.judge.JudgeFilter`'s, shared with the pixel judge.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import background_metrics
from mcie.records import EditSample
from mcie.transforms.judge import Judge

from .vlm import yes_probability
from .vlm_planner import load_prompt


@dataclasses.dataclass(frozen=True)
class VLMJudgeConfig:
    """``executed_min``: P(yes) at which a sub-instruction counts as executed; ``yes_bias``: a
    logit added to yes-vs-no before the sigmoid, to calibrate a model's yes/no prior (VLMs
    lean one way; see Zhao et al. 2021, "Calibrate before use")."""

    executed_min: float = 0.5
    yes_bias: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.executed_min <= 1.0:
            raise ValueError(f"executed_min must be in [0, 1], got {self.executed_min}")


class VLMJudge(Judge):
    """The :class:`Judge` interface over a VLM; :meth:`judge_batch` scores many samples in one
    forward pass per question kind."""

    name = "vlm-judge-v1"

    def __init__(self, processor, model, config: VLMJudgeConfig | None = None) -> None:
        self.processor, self.model = processor, model
        self.config = config or VLMJudgeConfig()
        self.executed_prompt = load_prompt("judge_executed")
        self.quality_prompt = load_prompt("judge_quality")

    def judge(self, sample: EditSample) -> EditSample:
        return self.judge_batch([sample])[0]

    def judge_batch(self, samples: list[EditSample]) -> list[EditSample]:
        for s in samples:
            if s.src is None or s.tgt is None:
                raise ValueError(f"sample {s.key} has no images to judge")
        pairs = [(s, e) for s in samples for e in s.sub_edits]
        prompts = [
            self.executed_prompt.format(instruction=s.instruction, sub_instruction=e.instruction)
            for s, e in pairs
        ]
        b = self.config.yes_bias
        p_exec = (
            yes_probability(self.processor, self.model, [s.tgt for s, _ in pairs], prompts, b)
            if pairs
            else []
        )
        p_quality = yes_probability(
            self.processor, self.model, [s.tgt for s in samples], [self.quality_prompt] * len(samples), b
        )
        for (_, e), p in zip(pairs, p_exec, strict=True):
            e.scores = {**e.scores, "compliance": round(float(p), 4)}
            e.executed = bool(p >= self.config.executed_min)
        for s, q in zip(samples, p_quality, strict=True):
            union = np.zeros(s.src.shape[:2], dtype=bool)
            for e in s.sub_edits:
                if e.mask is not None:
                    union |= e.mask
            bg = background_metrics(s.src, s.tgt, ~union)
            executed = [bool(e.executed) for e in s.sub_edits]
            s.scores = {
                **s.scores,
                "compliance": round(float(np.mean(executed)) if executed else 0.0, 4),
                "quality": round(float(q), 4),
                **{k: round(v, 4) for k, v in bg.items()},
            }
            s.provenance = {**s.provenance, "judge": self.name}
        return samples

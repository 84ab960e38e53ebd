"""Beam ``ModelHandler`` per model role: load once per worker, run on batches of records.

Each handler takes and returns :class:`~mcie.records.EditSample` batches, so it works with
``RunInference`` (``beam.ml.inference.base.RunInference(handler)``) over a PCollection of
samples and with the unit pipeline (through :mod:`.steps`), which calls ``load_model`` in
``DoFn.setup`` and ``run_inference`` per batch so images never cross a shuffle.

Beam's own HuggingFace handler imports TensorFlow; these import only torch, transformers and
diffusers. A handler on a GPU asks Beam to share one copy of the model across the worker's
processes (``share_model_across_processes`` → ``large_model``) unless ``model_copies`` is set.

Error policy: the one helper :func:`mcie.transforms.step.run_isolated` runs a batch; when the batch
raises, it reruns the samples one by one so only the sample that raises fails (with the stage's
reason), never its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from mcie.reasons import Reason
from mcie.records import EditSample
from mcie.transforms.step import run_isolated

from .config import StageModel, options_for
from .grounder import DetectorSamGrounder, GrounderConfig, load_grounder
from .inpaint_editor import EditorConfig, InpaintEditor, load_inpaint
from .vlm import load_vlm
from .vlm_judge import VLMJudge, VLMJudgeConfig
from .vlm_planner import PlannerConfig, VLMPlanner


class _StageHandler(ModelHandler[EditSample, EditSample, Any]):
    """Common parts: the stage's :class:`StageModel`, batch sizes, sharing, error policy."""

    reason = Reason.GENERATE_ERROR

    def __init__(self, stage: StageModel, policy: str = "continue", model_copies: int | None = None) -> None:
        super().__init__()
        self.stage = stage
        self.policy = policy
        self._copies = model_copies
        self.config = self._config()

    def _config(self):  # pragma: no cover - overridden
        return None

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.stage.batch_size}

    def share_model_across_processes(self) -> bool:
        return self.stage.device.startswith("cuda")

    def model_copies(self) -> int:
        return self._copies or 1

    def get_metrics_namespace(self) -> str:
        return f"mcie_{self.stage.stage}"

    def run_inference(
        self, batch: Sequence[EditSample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[EditSample]:
        samples = list(batch)
        out: list[EditSample] = []
        for i in range(0, len(samples), self.stage.batch_size):
            chunk = samples[i : i + self.stage.batch_size]
            out.extend(
                run_isolated(
                    chunk, lambda b: self._apply(model, b, **(inference_args or {})), self.reason, self.policy
                )
            )
        return out

    def _apply(self, model, batch: list[EditSample], **kwargs) -> list[EditSample]:  # pragma: no cover
        raise NotImplementedError


class PlannerHandler(_StageHandler):
    """VLM planner: sets instruction and sub-edits, or fails a sample with ``plan_invalid`` and
    the raw model text in its error."""

    def _config(self):
        return options_for(PlannerConfig, self.stage)

    def load_model(self) -> VLMPlanner:
        processor, model = load_vlm(self.stage.model, self.stage.device, self.stage.dtype)
        return VLMPlanner(processor, model, self.config)

    def _apply(self, model: VLMPlanner, batch: list[EditSample]) -> list[EditSample]:
        seeds = [int(s.source_hash[:12] or "0", 16) for s in batch]  # per image: batch-independent
        for s, r in zip(batch, model.plan([s.src for s in batch], seeds), strict=True):
            s.provenance = {**s.provenance, "planner": model.name, "plan_attempts": r.attempts}
            if r.ok:
                s.instruction, s.sub_edits = r.instruction, r.sub_edits
            else:
                s.fail(Reason.PLAN_INVALID, f"{r.error}; raw model text: {r.raw}")
        return batch


class GrounderHandler(_StageHandler):
    """Detector + SAM: sets ``ground_box`` / ``ground_mask`` per sub-edit."""

    reason = Reason.ANNOTATE_ERROR

    def _config(self):
        return options_for(GrounderConfig, self.stage)

    def load_model(self) -> DetectorSamGrounder:
        parts = load_grounder(self.stage.model, self.stage.sam, self.stage.device, self.stage.dtype)
        return DetectorSamGrounder(*parts, config=self.config)

    def _apply(self, model: DetectorSamGrounder, batch: list[EditSample]) -> list[EditSample]:
        return model.ground(batch)


class EditorHandler(_StageHandler):
    """Inpainting editor: sets ``tgt`` and each sub-edit's ``mask``/``box``/seed."""

    reason = Reason.GENERATE_ERROR

    def _config(self):
        return options_for(EditorConfig, self.stage)

    def load_model(self) -> InpaintEditor:
        return InpaintEditor(load_inpaint(self.stage.model, self.stage.device, self.stage.dtype), self.config)

    def _apply(self, model: InpaintEditor, batch: list[EditSample], candidate: int = 0) -> list[EditSample]:
        return model.edit(batch, candidate)


class JudgeHandler(_StageHandler):
    """VLM judge: sets per-sub-edit compliance/executed and the sample's scores."""

    reason = Reason.SCORE_ERROR

    def _config(self):
        return options_for(VLMJudgeConfig, self.stage)

    def load_model(self) -> VLMJudge:
        processor, model = load_vlm(self.stage.model, self.stage.device, self.stage.dtype)
        return VLMJudge(processor, model, self.config)

    def _apply(self, model: VLMJudge, batch: list[EditSample]) -> list[EditSample]:
        return model.judge_batch(batch)


HANDLERS = {
    "planner": PlannerHandler,
    "grounder": GrounderHandler,
    "editor": EditorHandler,
    "judge": JudgeHandler,
}

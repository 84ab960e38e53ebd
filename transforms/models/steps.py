"""The real-model backend's steps: load image → VLM plan → detector+SAM ground → inpaint edit →
annotate from evidence → pixel precheck → VLM judge (then the shared filter).

Each model step wraps its Beam ``ModelHandler`` (:mod:`.handlers`): ``setup`` loads the model
once per worker, ``process_batch`` runs the handler on batches of the stage's ``batch_size``.
The planner and the judge often name the same VLM; :class:`ModelSet` loads it once for both.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from mcie.reasons import Reason, Status
from mcie.records import EditSample, content_key
from mcie.transforms.annotate import RegionAnnotateConfig, RegionAnnotator
from mcie.transforms.precheck import PrecheckConfig, PrecheckStep, prechecked
from mcie.transforms.sources.images import ImageLoader, ImageSourceConfig, LoadedImage, display_name
from mcie.transforms.step import SourceStep, Step

from .config import ModelsConfig
from .handlers import HANDLERS


class ImageSource(SourceStep):
    """Input file → a candidate holding its pixels; an unusable file → its failed index row
    (``source_unreadable`` / ``source_refused``)."""

    def __init__(self, config: ImageSourceConfig) -> None:
        self.loader = ImageLoader(config)

    def make(self, item: str) -> tuple[EditSample, dict[str, Any] | None]:
        li = self.loader.load(item)
        return (source_sample(li) if li.ok else failed_source_sample(li)), None

    def failed(self, item: str, exc: BaseException) -> EditSample:
        return _input_sample(item, "", None, {"source": "images"})


def _input_sample(path: str, source_hash: str, pixels, provenance: dict[str, Any]) -> EditSample:
    # a name read from disk may not be UTF-8 (surrogate escapes): its bytes make the key, its
    # \xNN form the source id (Parquet strings are UTF-8)
    key = (
        content_key("real-v1", source_hash) if pixels is not None else content_key("input", os.fsencode(path))
    )
    return EditSample(
        key=key,
        source_id=display_name(path),
        source_hash=source_hash,
        src=pixels,
        tgt=None,
        instruction="",
        sub_edits=[],
        provenance=provenance,
    )


def failed_source_sample(li: LoadedImage) -> EditSample:
    """The index row of an input that could not be used."""
    s = _input_sample(li.path, li.source_hash, None, {"source": "images"})
    s.fail(li.reason, li.error)
    return s


def source_sample(li: LoadedImage) -> EditSample:
    """A candidate for a readable input (one candidate per input file)."""
    return _input_sample(li.path, li.source_hash, li.pixels, {"source": "images", "input": li.info})


class ModelSet:
    """The stage handlers of a models file and their models, loaded once per worker."""

    def __init__(self, models: ModelsConfig, policy: str) -> None:
        self.models = models
        self.handlers = {name: HANDLERS[name](getattr(models, name), policy) for name in HANDLERS}
        self.loaded: dict[str, Any] = {}

    def load(self, name: str) -> Any:
        """The loaded model of stage ``name`` (loaded on first use)."""
        if name in self.loaded:
            return self.loaded[name]
        if not self.models.uses_gpu() and not self.loaded:
            import torch

            torch.set_num_threads(1)  # one torch thread per worker process (DESIGN.md)
        m = self.models
        if name == "judge" and "planner" in self.loaded and _same_weights(m.planner, m.judge):
            from .vlm_judge import VLMJudge

            planner = self.loaded["planner"]  # same VLM: share its weights
            self.loaded[name] = VLMJudge(planner.processor, planner.model, self.handlers[name].config)
        else:
            self.loaded[name] = self.handlers[name].load_model()
        return self.loaded[name]


def _same_weights(a, b) -> bool:
    """Two stages can share one loaded VLM when they name the same model, device and dtype."""
    return (a.model, a.device, a.dtype) == (b.model, b.device, b.dtype)


class ModelStep(Step):
    """One model stage (planner, grounder, editor or judge) run through its handler."""

    def __init__(self, models: ModelSet, name: str, stage: str) -> None:
        self.models, self.name, self.stage = models, name, stage
        self.handler = models.handlers[name]
        self.reason = self.handler.reason
        #: best-of-N: which set of edit seeds the editor uses (see :class:`BestOfN`)
        self.candidate = 0

    def setup(self) -> None:
        self.models.load(self.name)

    def process(self, sample: EditSample) -> EditSample:
        return self.process_batch([sample])[0]

    def process_batch(self, samples: list[EditSample]) -> list[EditSample]:
        args = {"candidate": self.candidate} if self.name == "editor" else None
        # a candidate the pixel precheck refused costs no model call (the handler works in place)
        todo = [s for s in samples if not prechecked(s)]
        if todo:
            self.handler.run_inference(todo, self.models.load(self.name), args)
        return samples


class AnnotateStep(Step):
    """Masks from evidence (:class:`RegionAnnotator`)."""

    stage = "annotate"
    reason = Reason.ANNOTATE_ERROR

    def __init__(self, config: RegionAnnotateConfig) -> None:
        self.annotator = RegionAnnotator(config)

    def process(self, sample: EditSample) -> EditSample:
        return self.annotator.annotate(sample)


class BestOfN(Step):
    """Edit → annotate → judge ``n`` times with other edit seeds; keep, per sample, the
    candidate the judge ranks best (not failed, then compliance, then quality)."""

    stage = "edit"
    reason = Reason.GENERATE_ERROR

    def __init__(self, edit: ModelStep, steps: list[Step], n: int) -> None:
        self.edit, self.steps, self.n = edit, [edit, *steps], n

    def setup(self) -> None:
        for s in self.steps:
            s.setup()

    def process(self, sample: EditSample) -> EditSample:
        return self.run([sample], "continue")[0]

    def run(self, samples: list[EditSample], policy: str) -> list[EditSample]:
        best: dict[int, EditSample] = {}
        for c in range(self.n):
            cands = [copy.deepcopy(s) for s in samples]
            self.edit.candidate = c
            for step in self.steps:
                cands = step.run(cands, policy)
            for i, s in enumerate(cands):
                if i not in best or rank(s) > rank(best[i]):
                    best[i] = s
        self.edit.candidate = 0
        out = [best[i] for i in range(len(samples))]
        for s in out:
            s.provenance = {**s.provenance, "candidates": self.n}
        return out


def rank(s: EditSample) -> tuple:
    """Best-of-N order: not failed, then compliance, then quality."""
    return (s.status != Status.FAILED, s.scores.get("compliance", -1.0), s.scores.get("quality", -1.0))


def model_steps(
    models: ModelsConfig,
    annotate: RegionAnnotateConfig,
    policy: str,
    precheck: PrecheckConfig | None = None,
) -> list[Step]:
    """plan → ground → edit → annotate → precheck → judge; with ``editor.candidates > 1`` the
    last four run as one :class:`BestOfN` step."""
    ms = ModelSet(models, policy)
    edit = ModelStep(ms, "editor", "edit")
    after = [AnnotateStep(annotate), PrecheckStep(precheck), ModelStep(ms, "judge", "score")]
    steps: list[Step] = [ModelStep(ms, "planner", "plan"), ModelStep(ms, "grounder", "ground")]
    n = ms.handlers["editor"].config.candidates
    return steps + ([BestOfN(edit, after, n)] if n > 1 else [edit, *after])

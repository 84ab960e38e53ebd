"""``models.yaml``: which model runs each stage, from a hub name or a local directory.

Example (``mcie models tiny DIR`` writes one for the tiny models)::

    planner:  {model: Qwen/Qwen2.5-VL-7B-Instruct, device: cuda, dtype: bfloat16, batch_size: 8}
    grounder: {detector: google/owlv2-base-patch16-ensemble, sam: facebook/sam-vit-base, device: cuda}
    editor:   {model: stable-diffusion-v1-5/stable-diffusion-inpainting, steps: 30, device: cuda,
               dtype: float16}
    judge:    {model: Qwen/Qwen2.5-VL-7B-Instruct, device: cuda, dtype: bfloat16}

Optional sections name models used by other tools: ``instruct_pix2pix`` (CIE-Bench baseline) and
``decomposer`` (the VLM of ``mcie edit --decomposer mllm``, options of
:class:`mcie.model.decompose_vlm.VLMDecomposerConfig`); they land in ``ModelsConfig.extras``.

Keys other than the common ones (``model``, ``device``, ``dtype``, ``batch_size``) are the
stage's options, checked by that stage's config dataclass, so a typo is an error that lists
the allowed keys.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from mcie.exitcodes import UsageError
from mcie.weights import require_safetensors

STAGES = ("planner", "grounder", "editor", "judge")
DTYPES = ("float32", "float16", "bfloat16")
#: stages the models file may name besides the pipeline's (used by other tools)
EXTRA_SECTIONS = ("instruct_pix2pix", "decomposer")


@dataclasses.dataclass(frozen=True)
class StageModel:
    """One stage's model: ``model`` (hub name or local dir; the grounder names ``detector`` and
    ``sam`` instead), device, dtype, batch size, and the stage's own ``options``."""

    stage: str
    model: str
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 4
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    sam: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES + EXTRA_SECTIONS:
            allowed = ", ".join(STAGES + EXTRA_SECTIONS)
            raise UsageError(f"models file: unknown stage {self.stage!r}; allowed: {allowed}")
        if not self.model:
            raise UsageError(f"models file: stage {self.stage!r} names no model")
        if self.dtype not in DTYPES:
            raise UsageError(f"models file: {self.stage}.dtype {self.dtype!r} not in {DTYPES}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise UsageError(
                f"models file: {self.stage}.device {self.device!r}: use cpu, cuda, cuda:N or mps"
            )
        if self.batch_size < 1:
            raise UsageError(f"models file: {self.stage}.batch_size must be >= 1")

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def is_local(self) -> bool:
        return os.path.isdir(self.model)


@dataclasses.dataclass(frozen=True)
class ModelsConfig:
    """The parsed models file: one :class:`StageModel` per stage, and the optional sections
    present (``extras``, by section name)."""

    planner: StageModel
    grounder: StageModel
    editor: StageModel
    judge: StageModel
    path: str = ""
    extras: dict[str, StageModel] = dataclasses.field(default_factory=dict)

    def stages(self) -> list[StageModel]:
        return [self.planner, self.grounder, self.editor, self.judge]

    def uses_gpu(self) -> bool:
        return any(s.device.startswith("cuda") for s in self.stages())


def load_models_config(path: str) -> ModelsConfig:
    """Read and check a models file; relative local paths are relative to the file's folder."""
    import yaml

    if not os.path.isfile(path):
        raise UsageError(f"--models: {path!r} does not exist")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"--models: {path!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--models: {path!r} must be a mapping of stage → model")
    unknown = set(data) - set(STAGES) - set(EXTRA_SECTIONS)
    if unknown:
        raise UsageError(f"--models: unknown sections {sorted(unknown)}; allowed: {', '.join(STAGES)}")
    missing = [s for s in STAGES if s not in data]
    if missing:
        raise UsageError(f"--models: {path!r} lacks stages {missing}")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(name: str) -> str:
        cand = os.path.join(base, name)
        return cand if not os.path.isabs(name) and os.path.isdir(cand) else name

    stages, extras = {}, {}
    for stage in STAGES + tuple(s for s in EXTRA_SECTIONS if s in data):
        sec = dict(data[stage] or {})
        model = sec.pop("detector" if stage == "grounder" else "model", "")
        sam = sec.pop("sam", "") if stage == "grounder" else ""
        if stage == "grounder" and not sam:
            raise UsageError("models file: grounder needs `detector` and `sam`")
        common = {k: sec.pop(k) for k in ("device", "dtype", "batch_size") if k in sec}
        (stages if stage in STAGES else extras)[stage] = StageModel(
            stage=stage,
            model=resolve(str(model)),
            sam=resolve(str(sam)) if sam else "",
            options=sec,
            **common,
        )
    for s in [*stages.values(), *extras.values()]:  # refused on the launcher, before any worker starts
        for folder in (s.model, s.sam):
            if folder:
                require_safetensors(folder, f"--models {s.stage}")
    return ModelsConfig(**stages, path=os.path.abspath(path), extras=extras)


def options_for(cls, stage: StageModel):
    """Build ``cls`` (a config dataclass) from the stage's options; unknown keys are an error
    listing the allowed ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    bad = set(stage.options) - names
    if bad:
        raise UsageError(
            f"models file: {stage.stage} has unknown options {sorted(bad)}; allowed: {sorted(names)}"
        )
    try:
        return cls(**stage.options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"models file: {stage.stage}: {exc}") from exc

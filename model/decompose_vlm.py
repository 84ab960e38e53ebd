"""The MLLM decomposer on a real VLM (``mcie edit --decomposer mllm --vlm DIR_OR_MODELS_YAML``).

A VLM loaded once with :func:`mcie.transforms.models.vlm.load_vlm` (any transformers
image-text-to-text model, from a local folder or a models file) answers
:data:`~mcie.model.decompose.MLLM_PROMPT`. Decoding is constrained, as the VLM planner's, by a
regular expression of the reply's JSON (:func:`decomposition_pattern`), so even a random model
writes parseable JSON with 1..``max_subs`` sub-instructions, each starting with a letter, and box
coordinates in 0-1000; :func:`~mcie.model.decompose.parse_mllm_reply` then converts the boxes to
pixels and rejects what the grammar cannot (a box with no area). Attempt 0 is greedy; each retry
samples with its own seed, ``(seed, attempt)``, so a run is reproducible.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mcie.exitcodes import UsageError
from mcie.model.decompose import MLLMDecomposer

CONSTRAINTS = ("schema", "none")


@dataclasses.dataclass(frozen=True)
class VLMDecomposerConfig:
    """``max_subs``: most sub-instructions the grammar allows; ``max_text``: longest
    sub-instruction (characters); ``retries``: sampled attempts after the greedy one, at
    ``temperature``, seeded from ``seed``; ``constraint``: ``schema`` or ``none``."""

    max_subs: int = 5
    max_text: int = 120
    max_new_tokens: int = 1024
    retries: int = 2
    temperature: float = 1.0
    seed: int = 0
    constraint: str = "schema"

    def __post_init__(self) -> None:
        if not 1 <= self.max_subs <= 16:
            raise ValueError(f"max_subs must be in 1..16, got {self.max_subs}")
        if self.max_text < 1 or self.max_new_tokens < 1:
            raise ValueError("max_text and max_new_tokens must be >= 1")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {self.constraint!r}")


def decomposition_pattern(c: VLMDecomposerConfig) -> str:
    """The regular expression of a reply (compact JSON: no spaces outside strings)::

    {"sub_instructions":[{"instruction":"make the star red","box":[0,0,500,250]}, ...]}
    """
    text = r'"[A-Za-z][^"\\\x00-\x1f]{0,' + str(c.max_text - 1) + '}"'
    num = r"(?:1000|[1-9][0-9]{0,2}|0)"
    item = r'\{"instruction":' + text + r',"box":\[' + ",".join([num] * 4) + r"\]\}"
    items = item + r"(?:," + item + r"){0," + str(c.max_subs - 1) + "}"
    return r'\{"sub_instructions":\[' + items + r"\]\}"


class DecompositionVLM:
    """A loaded VLM as :class:`~mcie.model.decompose.MLLMDecomposer`'s callable
    ``(image, prompt, attempt) -> reply``."""

    def __init__(self, processor, model, config: VLMDecomposerConfig | None = None) -> None:
        from mcie.transforms.models.vlm import RegexConstraint

        self.processor, self.model = processor, model
        self.config = config or VLMDecomposerConfig()
        tok = getattr(processor, "tokenizer", processor)
        c = self.config
        self.constraint = RegexConstraint(decomposition_pattern(c), tok) if c.constraint == "schema" else None

    def __call__(self, image: np.ndarray, prompt: str, attempt: int = 0) -> str:
        from mcie.transforms.models.vlm import generate

        c = self.config
        gen = generate(
            self.processor,
            self.model,
            [np.ascontiguousarray(image[..., :3], dtype=np.uint8)],
            [prompt],
            max_new_tokens=c.max_new_tokens,
            constraint=self.constraint,
            row_seeds=None if attempt == 0 else [c.seed * 1_000_003 + attempt],
            temperature=c.temperature,
        )[0]
        return gen.text  # cut off at max_new_tokens: not valid JSON, so the decomposer retries


def load_mllm_decomposer(spec: str, device: str = "cpu", retries: int | None = None) -> MLLMDecomposer:
    """An :class:`MLLMDecomposer` on the VLM that ``spec`` names: a local model folder (loaded on
    ``device``, float32, default :class:`VLMDecomposerConfig`), or a models file whose
    ``decomposer`` section (model, device, dtype, options of :class:`VLMDecomposerConfig`) names
    it; a models file without that section lends its ``planner`` model (its planner options do not
    apply). ``retries`` overrides the config's. Raises :class:`UsageError` when nothing loads."""
    from mcie.transforms.models.config import load_models_config, options_for
    from mcie.transforms.models.vlm import load_vlm

    if os.path.isdir(spec):
        model_name, dtype, config = spec, "float32", VLMDecomposerConfig()
    elif os.path.isfile(spec) and spec.endswith((".yaml", ".yml")):
        models = load_models_config(spec)
        stage = models.extras.get("decomposer")
        if stage is not None:
            config = options_for(VLMDecomposerConfig, stage)
        else:
            stage, config = models.planner, VLMDecomposerConfig()
        model_name, device, dtype = stage.model, stage.device, stage.dtype
    else:
        raise UsageError(f"--vlm {spec!r}: neither a model folder nor a models file (.yaml)")
    if retries is not None:
        try:
            config = dataclasses.replace(config, retries=retries)
        except ValueError as exc:
            raise UsageError(f"--vlm-retries: {exc}") from exc
    try:
        processor, model = load_vlm(model_name, device, dtype)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--vlm: cannot load a VLM from {model_name!r}: {exc}") from exc
    return MLLMDecomposer(
        DecompositionVLM(processor, model, config), retries=config.retries, max_subs=config.max_subs
    )

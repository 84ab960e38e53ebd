"""Backends are data: each names its units of work and its ordered steps.

* :class:`SyntheticBackend` — units are ranges of sample indices; steps: generate (scene →
  plan → ground → edit, one RNG stream per sample), annotate, pixel judge, filter.
* :class:`ModelsBackend` — units are lists of input files; steps: load image, VLM plan,
  detector+SAM ground, inpaint edit, annotate from evidence, VLM judge, filter.

The one unit pipeline (:mod:`.build`) runs any backend; the stage-at-a-time commands
(:mod:`.stages`) cut the same step list at its table boundaries. A new backend is a new
subclass of :class:`Backend` here (its units, its source, its steps), nothing else.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import Any

from mcie.exitcodes import UsageError
from mcie.records import content_key
from mcie.transforms.annotate import AnnotateConfig, RegionAnnotateConfig
from mcie.transforms.judge import FilterStep, FilterThresholds
from mcie.transforms.sources.images import ImageSourceConfig
from mcie.transforms.step import SourceStep, Step
from mcie.transforms.synthetic.generator import SyntheticConfig
from mcie.transforms.synthetic.judge import PixelJudgeConfig

from .units import Unit, plan_units

#: default accelerator hint for the GPU stages on Dataflow (override with --accelerator)
DEFAULT_ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"


class Backend(abc.ABC):
    """What a backend provides to the unit pipeline. Subclasses are frozen dataclasses: their
    fields are the backend's options and travel with the pipeline to every worker."""

    #: the name in ``run.json`` / the card's ``generator``
    name: str = ""
    #: ``mcie build``'s command name in ``run.json``
    command: str = "build"
    #: samples taken through the steps together: 1 keeps a unit's decoded pixels to one sample
    #: at a time; None gives model steps the whole unit to batch
    chunk: int | None = 1
    #: whether the source knows the truth of each candidate (``truth.parquet``)
    has_truth: bool = False

    @abc.abstractmethod
    def total(self) -> int:
        """Number of candidates (unit items) in the run."""

    @abc.abstractmethod
    def items(self, unit: Unit) -> list[Any]:
        """The items of ``unit``, each turned into one candidate by the source step."""

    @abc.abstractmethod
    def source(self) -> SourceStep:
        """The first step (built on a worker)."""

    @abc.abstractmethod
    def steps(self, thresholds: FilterThresholds, policy: str) -> list[Step]:
        """The ordered steps after the source (built on a worker; ``setup`` not yet called)."""

    @abc.abstractmethod
    def meta(self) -> dict[str, Any]:
        """What the dataset card and later stages learn about how the set was made."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """The backend options that decide the output's bytes."""

    def units(self, shard_size: int) -> list[Unit]:
        """The run's units of ``shard_size`` items."""
        return plan_units(self.total(), shard_size)

    def check(self, run) -> None:  # noqa: B027 - most backends have nothing to check
        """Fail early (UsageError) on options the backend cannot run with."""

    def resource_hints(self, run) -> dict[str, str]:
        """Beam resource hints of the unit step (a GPU accelerator on Dataflow)."""
        return {}


@dataclasses.dataclass(frozen=True)
class SyntheticBackend(Backend):
    """The embedded default: procedural scenes with exact truth."""

    samples: int = 1000
    seed: int = 0
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    annotate: AnnotateConfig = dataclasses.field(default_factory=AnnotateConfig)
    judge: PixelJudgeConfig = dataclasses.field(default_factory=PixelJudgeConfig)

    name = "synthetic"
    command = "build"
    chunk = 1
    has_truth = True

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")

    def total(self) -> int:
        return self.samples

    def items(self, unit: Unit) -> list[int]:
        return list(range(unit.start, unit.stop))

    def source(self) -> SourceStep:
        from mcie.transforms.synthetic.steps import SceneSource

        return SceneSource(self.synthetic, self.seed)

    def steps(self, thresholds: FilterThresholds, policy: str) -> list[Step]:
        from mcie.transforms.synthetic.steps import AnnotateStep, PixelJudgeStep

        return [AnnotateStep(self.annotate), PixelJudgeStep(self.judge), FilterStep(thresholds)]

    def meta(self) -> dict[str, Any]:
        from mcie.transforms.synthetic.planner import CONNECTIVE_STYLES, template_count

        return {
            "generator": self.name,
            "seed": self.seed,
            "edit_types": [t for t, _ in self.synthetic.plan.edit_weights],
            "templates": template_count([t for t, _ in self.synthetic.plan.edit_weights]),
            "connectives": len(CONNECTIVE_STYLES),
        }

    def fingerprint(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModelsBackend(Backend):
    """Real models named in a models file, over input image files (``inputs``: resolved,
    sorted). The parsed models file travels with the pipeline, so workers need the model
    folders, not the YAML."""

    models: str = ""
    inputs: tuple[str, ...] = ()
    source_config: ImageSourceConfig = dataclasses.field(default_factory=ImageSourceConfig)
    annotate: RegionAnnotateConfig = dataclasses.field(default_factory=RegionAnnotateConfig)
    accelerator: str = DEFAULT_ACCELERATOR
    parsed: Any = dataclasses.field(default=None, compare=False, repr=False)

    name = "real-models"
    command = "build-real"
    chunk = None  # the whole unit: model steps batch it by each stage's batch_size

    def __post_init__(self) -> None:
        if self.parsed is None:
            from mcie.transforms.models.config import load_models_config
            from mcie.transforms.models.handlers import HANDLERS

            parsed = load_models_config(self.models)  # fail on a bad models file before Beam
            for name in HANDLERS:
                HANDLERS[name](getattr(parsed, name))  # checks each stage's options
            object.__setattr__(self, "parsed", parsed)

    def total(self) -> int:
        return len(self.inputs)

    def items(self, unit: Unit) -> list[str]:
        return list(self.inputs[unit.start : unit.stop])

    def source(self) -> SourceStep:
        from mcie.transforms.models.steps import ImageSource

        return ImageSource(self.source_config)

    def steps(self, thresholds: FilterThresholds, policy: str) -> list[Step]:
        from mcie.transforms.models.steps import model_steps

        return [*model_steps(self.parsed, self.annotate, policy), FilterStep(thresholds)]

    def meta(self) -> dict[str, Any]:
        return {
            "generator": self.name,
            "models": {s.stage: {"model": s.model, "sam": s.sam, **s.options} for s in self.parsed.stages()},
            "models_file": self.parsed.path,
            "inputs": len(self.inputs),
        }

    def fingerprint(self) -> dict[str, Any]:
        d = {
            "source": dataclasses.asdict(self.source_config),
            "annotate": dataclasses.asdict(self.annotate),
            "inputs": len(self.inputs),
            "inputs_hash": content_key(*(os.fsencode(p) for p in self.inputs)),  # names may not be UTF-8
        }
        with open(self.models, "rb") as fh:
            d["models_hash"] = content_key(fh.read())
        return d

    def check(self, run) -> None:
        check_dataflow(run)
        if not self.inputs:
            raise UsageError("no input images")

    def resource_hints(self, run) -> dict[str, str]:
        if self.parsed.uses_gpu() and run.runner == "DataflowRunner":
            return {"accelerator": self.accelerator}
        return {}


def check_dataflow(run) -> None:
    """A DataflowRunner run of real models needs a project, region, temp location and a worker
    container with the models' dependencies (and ideally the weights); fail before submitting
    when one lacks (:func:`mcie.pipeline.dataflow.check_flags`)."""
    if run.runner == "DataflowRunner":
        from .dataflow import check_flags

        check_flags(run, needs_image=True)

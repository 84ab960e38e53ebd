"""``mcie build --models models.yaml [--images DIR_OR_GLOB]``: the real-model pipeline.

load image → VLM plan → detector+SAM ground → inpaint edit → VLM judge → filter → shard.

Units are lists of input files (``shard_size`` files each). A unit runs fused inside one DoFn
whose ``setup`` loads every model once per worker (through the stage ``ModelHandler``s); inside
a unit each stage runs on batches of the stage's ``batch_size``. Only the unit (its file names)
is reshuffled; no image bytes cross a shuffle. Every input file becomes one index row: a broken
or refused file as ``failed`` with ``source_unreadable`` / ``source_refused``.

On Dataflow the same pipeline runs with ``--runner DataflowRunner``; :func:`check_dataflow`
checks the options first, and the build DoFn carries a GPU resource hint when a stage runs on
``cuda`` (see the README section "Real models on Dataflow").
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from mcie.exitcodes import UsageError
from mcie.reasons import Status
from mcie.records import EditSample, content_key
from mcie.transforms.judge import FilterThresholds, JudgeFilter
from mcie.transforms.models.config import ModelsConfig, load_models_config
from mcie.transforms.models.handlers import HANDLERS, run_isolated
from mcie.transforms.sources.images import ImageLoader, ImageSourceConfig, LoadedImage

from .options import RunOptions
from .runner import count_outcome, run_pipeline
from .sink import ShardSink
from .units import Unit, plan_units

#: Dataflow flags a real-model run needs (checked before anything is submitted)
DATAFLOW_REQUIRED = ("--project", "--region", "--temp_location", "--sdk_container_image")
#: default accelerator hint for the GPU stages on Dataflow (override with --accelerator)
DEFAULT_ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"
STAGE_ORDER = ("planner", "grounder", "editor", "judge")


@dataclasses.dataclass(frozen=True)
class RealBuildOptions:
    """Everything the real-model build needs; ``inputs`` is the resolved, sorted file list."""

    out: str
    models: str
    inputs: tuple[str, ...]
    shard_size: int = 64
    lossless: bool = False
    resume: bool = False
    source: ImageSourceConfig = dataclasses.field(default_factory=ImageSourceConfig)
    thresholds: FilterThresholds = dataclasses.field(default_factory=FilterThresholds)
    run: RunOptions = dataclasses.field(default_factory=RunOptions)
    accelerator: str = DEFAULT_ACCELERATOR

    def __post_init__(self) -> None:
        if not self.inputs:
            raise UsageError("no input images")
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be >= 1, got {self.shard_size}")

    def models_config(self) -> ModelsConfig:
        return load_models_config(self.models)

    def fingerprint(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("run", "resume", "out", "accelerator"):
            d.pop(k)
        d["inputs"] = len(self.inputs)
        d["inputs_hash"] = content_key(*self.inputs)
        with open(self.models, "rb") as fh:
            d["models_hash"] = content_key(fh.read())
        return d


def check_dataflow(run: RunOptions) -> None:
    """A DataflowRunner run needs a project, region, temp location and a worker container with
    the models' dependencies (and ideally the weights); fail before submitting when one lacks."""
    if run.runner != "DataflowRunner":
        return
    flags = [a.split("=", 1)[0] for a in run.beam_args]
    missing = [f for f in DATAFLOW_REQUIRED if f not in flags]
    if missing:
        raise UsageError(
            "--runner DataflowRunner needs " + ", ".join(f"--beam-arg={f}=..." for f in missing)
            + " (see the README section 'Real models on Dataflow')"
        )  # fmt: skip
    if run.workers != 1:
        raise UsageError("--workers is for the local runner; on Dataflow use --beam-arg=--max_num_workers=N")


def failed_source_sample(li: LoadedImage) -> EditSample:
    """The index row of an input that could not be used."""
    s = EditSample(
        key=content_key("input", li.path),
        source_id=li.path,
        source_hash=li.source_hash,
        src=None,
        tgt=None,
        instruction="",
        sub_edits=[],
        provenance={"source": "images"},
    )
    s.fail(li.reason, li.error)
    return s


def source_sample(li: LoadedImage) -> EditSample:
    """A candidate for a readable input (one candidate per input file)."""
    return EditSample(
        key=content_key("real-v1", li.source_hash),
        source_id=li.path,
        source_hash=li.source_hash,
        src=li.pixels,
        tgt=None,
        instruction="",
        sub_edits=[],
        provenance={"source": "images", "input": li.info},
    )


class RealChain:
    """The per-unit work, shared by the Beam DoFn, the tests and the benchmark: load models once
    (``setup``), then :meth:`make` a unit's samples stage by stage."""

    def __init__(self, opts: RealBuildOptions, models: ModelsConfig | None = None) -> None:
        self.opts = opts
        self.models = models or opts.models_config()
        policy = opts.run.error_policy
        self.handlers = {name: HANDLERS[name](getattr(self.models, name), policy) for name in STAGE_ORDER}
        self.loader = ImageLoader(opts.source)
        self.filter = JudgeFilter(opts.thresholds)
        self.loaded: dict[str, Any] = {}

    def setup(self) -> None:
        if not self.models.uses_gpu() and not self.loaded:
            import torch

            torch.set_num_threads(1)  # one torch thread per worker process (DESIGN.md)
        for name, h in self.handlers.items():
            if name not in self.loaded:
                # the planner and the judge often name the same VLM: load it once
                same = next(
                    (
                        self.loaded[o]
                        for o in ("planner",)
                        if name == "judge"
                        and o in self.loaded
                        and _same_weights(self.models.planner, self.models.judge)
                    ),
                    None,
                )
                if same is not None:
                    from mcie.transforms.models.vlm_judge import VLMJudge

                    self.loaded[name] = VLMJudge(same.processor, same.model, h.config)
                else:
                    self.loaded[name] = h.load_model()

    def load(self, paths: list[str]) -> list[EditSample]:
        samples = []
        for p in paths:
            li = self.loader.load(p)
            samples.append(source_sample(li) if li.ok else failed_source_sample(li))
        return samples

    def make(self, paths: list[str], timings: dict[str, float] | None = None) -> list[EditSample]:
        """Every input of ``paths`` → one scored (or failed) sample."""
        self.setup()
        t0 = time.perf_counter()
        samples = self.load(paths)
        _tick(timings, "load", t0)
        for name in ("planner", "grounder"):
            t0 = time.perf_counter()
            self.handlers[name].run_inference(samples, self.loaded[name])
            _tick(timings, name, t0)
        samples = self.edit_and_judge(samples, timings)
        policy = self.opts.run.error_policy
        from mcie.reasons import Reason

        return run_isolated(samples, lambda b: [self.filter.apply(s) for s in b], Reason.SCORE_ERROR, policy)

    def edit_and_judge(self, samples: list[EditSample], timings: dict[str, float] | None) -> list[EditSample]:
        """Edit then judge; best-of-N (``editor.candidates``) edits each sample N times with
        other seeds and keeps the candidate with the best (compliance, quality) scores."""
        editor, judge = self.handlers["editor"], self.handlers["judge"]
        n = editor.config.candidates
        best: dict[int, EditSample] = {}
        for c in range(n):
            cands = samples if n == 1 else [copy.deepcopy(s) for s in samples]
            t0 = time.perf_counter()
            editor.run_inference(cands, self.loaded["editor"], {"candidate": c})
            _tick(timings, "editor", t0)
            t0 = time.perf_counter()
            judge.run_inference(cands, self.loaded["judge"])
            _tick(timings, "judge", t0)
            for i, s in enumerate(cands):
                if i not in best or _rank(s) > _rank(best[i]):
                    best[i] = s
        out = [best[i] for i in range(len(samples))]
        if n > 1:
            for s in out:
                s.provenance = {**s.provenance, "candidates": n}
        return out


def _same_weights(a, b) -> bool:
    """Two stages can share one loaded VLM when they name the same model, device and dtype."""
    return (a.model, a.device, a.dtype) == (b.model, b.device, b.dtype)


def _rank(s: EditSample) -> tuple:
    """Best-of-N order: not failed, then compliance, then quality."""
    return (s.status != Status.FAILED, s.scores.get("compliance", -1.0), s.scores.get("quality", -1.0))


def _tick(timings: dict[str, float] | None, name: str, t0: float) -> None:
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


class RealUnitFn(beam.DoFn):
    """Builds one unit of input files end to end; yields the unit's stats (small). The parsed
    models file travels with the DoFn, so workers need the model folders, not the YAML."""

    def __init__(self, opts: RealBuildOptions, models: ModelsConfig) -> None:
        self.opts = opts
        self.models = models

    def setup(self) -> None:
        self.chain = RealChain(self.opts, self.models)
        self.chain.setup()  # heavy: every model, once per worker
        self.sink = ShardSink(self.opts.out, self.opts.lossless, self.opts.run.error_policy)
        self.elapsed = Metrics.distribution("mcie", "unit_ms")

    def process(self, element: tuple[int, list[str]]):
        unit_id, paths = element
        t0 = time.perf_counter()
        samples = self.chain.make(paths)
        stats = self.sink.write_unit(unit_id, samples, None)
        for s in samples:
            count_outcome(s)
        self.elapsed.update(int(1000 * (time.perf_counter() - t0)))
        yield stats


class ModelStages(beam.PTransform):
    """Record-level composition of the model stages over a PCollection of loaded samples:
    ``RunInference`` per stage (Beam batches, loads each model once per worker), then the
    filter. For stage-at-a-time work over record tables; the build itself fuses a unit in one
    DoFn so images never cross a shuffle. Handlers fail a sample, never a batch, so nothing is
    dropped between stages."""

    def __init__(
        self, models: ModelsConfig, thresholds: FilterThresholds | None = None, policy: str = "continue"
    ):
        super().__init__()
        self.models, self.thresholds, self.policy = models, thresholds or FilterThresholds(), policy

    def expand(self, samples):
        from apache_beam.ml.inference.base import RunInference

        flt = JudgeFilter(self.thresholds)
        return (
            samples
            | "Plan" >> RunInference(HANDLERS["planner"](self.models.planner, self.policy))
            | "Ground" >> RunInference(HANDLERS["grounder"](self.models.grounder, self.policy))
            | "Edit" >> RunInference(HANDLERS["editor"](self.models.editor, self.policy))
            | "Judge" >> RunInference(HANDLERS["judge"](self.models.judge, self.policy))
            | "Filter" >> beam.Map(lambda s: s if s.status == Status.FAILED else flt.apply(s))
        )


def real_pipeline(p: beam.Pipeline, units: list[Unit], opts: RealBuildOptions, models: ModelsConfig):
    """Attach the real-model build to ``p``."""
    elements = [(u.id, list(opts.inputs[u.start : u.stop])) for u in units]
    build = beam.ParDo(RealUnitFn(opts, models))
    if models.uses_gpu() and opts.run.runner == "DataflowRunner":
        build = build.with_resource_hints(accelerator=opts.accelerator)
    return p | "Units" >> beam.Create(elements) | "SpreadUnits" >> beam.Reshuffle() | "BuildUnits" >> build


def run_real_build(opts: RealBuildOptions) -> dict[str, Any]:
    """Run the real-model ``mcie build`` and return its summary."""
    check_dataflow(opts.run)
    models = opts.models_config()  # fail on a bad models file before starting Beam
    for name in STAGE_ORDER:
        HANDLERS[name](getattr(models, name))  # checks each stage's options
    units = plan_units(len(opts.inputs), opts.shard_size)
    return run_pipeline(
        command="build-real",
        out=opts.out,
        units=units,
        total_samples=len(opts.inputs),
        fingerprint=opts.fingerprint(),
        run=opts.run,
        resume=opts.resume,
        attach=lambda p, todo: real_pipeline(p, todo, opts, models),
        meta={
            "generator": "real-models",
            "models": {s.stage: {"model": s.model, "sam": s.sam, **s.options} for s in models.stages()},
            "inputs": len(opts.inputs),
            "lossless": opts.lossless,
            "thresholds": dataclasses.asdict(opts.thresholds),
        },
    )


def default_inputs() -> list[str]:
    """The bundled sample photographs."""
    from mcie.transforms.sources.images import sample_photo_paths

    return sample_photo_paths()


def resolve_inputs(spec: str | None) -> tuple[str, ...]:
    from mcie.transforms.sources.images import list_inputs

    return tuple(list_inputs(spec) if spec else default_inputs())


__all__ = ["RealBuildOptions", "RealChain", "run_real_build", "check_dataflow", "resolve_inputs"]

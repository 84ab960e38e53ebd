"""Options of the pipelines: typed dataclasses, validated at construction, built from the CLI.

Beam options are derived here too: the local runner is always ``FnApiRunner`` (Beam's default
DirectRunner first tries Prism, which downloads a binary), multi-process when ``workers > 1``;
``dask`` is Beam's Dask runner on a local or existing ``dask.distributed`` cluster
(:mod:`.dask_runner`).
"""

from __future__ import annotations

import dataclasses

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.layout import DEFAULT_SHARD_SIZE
from mcie.transforms.judge import FilterThresholds
from mcie.transforms.step import ERROR_POLICIES

from . import dask_runner
from .backends import Backend, SyntheticBackend

#: runners whose workers are processes of this machine, started by Beam
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a pipeline runs: workers, runner, error policy, failure budget."""

    workers: int = 1
    #: ``FnApiRunner`` (local), ``dask`` (Beam's Dask runner), ``DataflowRunner``, or another
    #: Beam runner's name
    runner: str = "FnApiRunner"
    #: ``dask``: the scheduler of an existing cluster (``tcp://host:8786``); None starts a
    #: local cluster of ``workers`` processes for the run
    dask_address: str | None = None
    #: ``continue``: a sample that raises is recorded as failed and the run goes on;
    #: ``raise``: the first exception fails the run (for debugging and tests)
    error_policy: str = "continue"
    #: the run exits 2 when failed / candidates exceeds this
    max_failed_fraction: float = 0.01
    #: extra Beam flags (e.g. Dataflow's --project, --region, --temp_location)
    beam_args: tuple[str, ...] = ()
    #: testing aid: exit the worker process hard after this many units (simulates ``kill -9``)
    exit_after_units: int | None = None
    progress: bool = True
    #: DataflowRunner: build and report the job graph, submit nothing
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.runner in dask_runner.RUNNER_NAMES:
            object.__setattr__(self, "runner", "dask")  # one name for it from here on
            dask_runner.require_dask()  # at the options, before an output folder exists
        if self.dask_address is not None and self.runner != "dask":
            raise UsageError("--dask-address is for --runner dask")
        if self.dask_address is not None and self.workers != 1:
            raise UsageError(
                "--workers sizes the local Dask cluster; with --dask-address the cluster's own workers run"
            )
        if self.error_policy not in ERROR_POLICIES:
            raise UsageError(f"--error-policy must be one of {ERROR_POLICIES}, got {self.error_policy!r}")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise UsageError(f"--max-failed-fraction must be in [0, 1], got {self.max_failed_fraction}")

    def beam_flags(self, dask_address: str | None = None) -> list[str]:
        """Pipeline flags for Beam (``dask_address``: the local Dask cluster's scheduler, once
        it is up)."""
        if self.runner == "dask":
            return dask_runner.beam_flags(dask_address or self.dask_address) + list(self.beam_args)
        flags = [f"--runner={self.runner}"]
        if self.runner in LOCAL_RUNNERS:
            mode = "multi_processing" if self.workers > 1 else "in_memory"
            flags += [f"--direct_num_workers={self.workers}", f"--direct_running_mode={mode}"]
        return flags + list(self.beam_args)


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What every build shares, whatever its backend; the output is a function of these
    (minus ``run`` and ``resume``). ``backend`` is a :class:`~mcie.pipeline.backends.Backend`
    (synthetic scenes by default; real models with ``mcie build --models``)."""

    out: str
    backend: Backend = dataclasses.field(default_factory=SyntheticBackend)
    #: items (sample indices, input files) per unit of work and per shard
    shard_size: int = DEFAULT_SHARD_SIZE
    #: write PNG instead of JPEG for source and target images
    lossless: bool = False
    resume: bool = False
    thresholds: FilterThresholds = dataclasses.field(default_factory=FilterThresholds)
    run: RunOptions = dataclasses.field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be >= 1, got {self.shard_size}")

    def fingerprint(self) -> dict:
        """The options that decide the output's bytes (``run`` and ``resume`` excluded); a
        resumed run must match them."""
        return {
            **self.backend.fingerprint(),
            "shard_size": self.shard_size,
            "lossless": self.lossless,
            "thresholds": dataclasses.asdict(self.thresholds),
        }

    def stage_fingerprint(self, stage: str) -> dict:
        """The options that decide a stage command's output (``annotate`` or ``score``)."""
        b = self.backend.fingerprint()
        if stage == "annotate":
            return {"annotate": b.get("annotate")}
        keep = {k: b[k] for k in ("judge", "models_hash") if k in b}
        return {**keep, "thresholds": dataclasses.asdict(self.thresholds)}

    def meta(self) -> dict:
        """What ``run.json`` and the dataset card say about how the set was made."""
        return {
            **self.backend.meta(),
            "lossless": self.lossless,
            "thresholds": dataclasses.asdict(self.thresholds),
        }


def check_output_dir(path: str, resume: bool) -> None:
    """Refuse a non-empty output directory (or bucket prefix) unless resuming (no silent
    overwrite or mix)."""
    storage.check_folder(path)
    if not resume and not storage.is_empty_folder(path):
        raise UsageError(
            f"output directory {path!r} is not empty; pass --resume to continue a run or pick a new one"
        )

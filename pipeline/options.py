"""Options of the pipelines: typed dataclasses, validated at construction, built from the CLI.

Beam options are derived here too: the local runner is always ``FnApiRunner`` (Beam's default
DirectRunner first tries Prism, which downloads a binary), multi-process when ``workers > 1``.
"""

from __future__ import annotations

import dataclasses

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.transforms.annotate import AnnotateConfig
from mcie.transforms.judge import FilterThresholds, PixelJudgeConfig
from mcie.transforms.synthetic.generator import SyntheticConfig

ERROR_POLICIES = ("continue", "raise")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a pipeline runs: workers, runner, error policy, failure budget."""

    workers: int = 1
    runner: str = "FnApiRunner"
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

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.error_policy not in ERROR_POLICIES:
            raise UsageError(f"--error-policy must be one of {ERROR_POLICIES}, got {self.error_policy!r}")
        if not 0.0 <= self.max_failed_fraction <= 1.0:
            raise UsageError(f"--max-failed-fraction must be in [0, 1], got {self.max_failed_fraction}")

    def beam_flags(self) -> list[str]:
        """Pipeline flags for Beam."""
        flags = [f"--runner={self.runner}"]
        if self.runner in ("FnApiRunner", "DirectRunner"):
            mode = "multi_processing" if self.workers > 1 else "in_memory"
            flags += [f"--direct_num_workers={self.workers}", f"--direct_running_mode={mode}"]
        return flags + list(self.beam_args)


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Everything ``mcie build`` needs; the output is a function of these (minus ``run``)."""

    out: str
    samples: int = 1000
    seed: int = 0
    shard_size: int = 500
    #: write PNG instead of JPEG for source and target images
    lossless: bool = False
    resume: bool = False
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    annotate: AnnotateConfig = dataclasses.field(default_factory=AnnotateConfig)
    judge: PixelJudgeConfig = dataclasses.field(default_factory=PixelJudgeConfig)
    thresholds: FilterThresholds = dataclasses.field(default_factory=FilterThresholds)
    run: RunOptions = dataclasses.field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be >= 1, got {self.shard_size}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")

    def fingerprint(self) -> dict:
        """The options that decide the output's bytes (``run`` and ``resume`` excluded); a
        resumed run must match them."""
        d = dataclasses.asdict(self)
        for k in ("run", "resume", "out"):
            d.pop(k)
        return d


def check_output_dir(path: str, resume: bool) -> None:
    """Refuse a non-empty output directory (or bucket prefix) unless resuming (no silent
    overwrite or mix)."""
    storage.check_folder(path)
    if not resume and not storage.is_empty_folder(path):
        raise UsageError(
            f"output directory {path!r} is not empty; pass --resume to continue a run or pick a new one"
        )

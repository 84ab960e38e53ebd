"""``TrainConfig``: every option of ``mcie train`` in one frozen, validated dataclass.

Each field carries its help text (and, where the flag is not ``--<field-name>``, its flag) in
its metadata: the ``train`` command's parser is generated from these fields
(:func:`mcie.model.cli.add_train_arguments`), and :func:`mcie.model.trainer.train` takes the
config, never an argparse namespace.

Presets carry their recipes. A field whose default is ``None`` and which is listed in
:data:`RECIPES` is filled at construction from the preset's recipe, then from
:data:`BASE_RECIPE`; a value given explicitly (a flag, a keyword) wins. So
``TrainConfig(shards=..., out=..., max_steps=N, preset="tiny-pixel")`` is the measured recipe:

- ``tiny-pixel`` trains a pixel-space model from scratch: gates open (1) and learning, with
  BCCA's new projections, at 10x the rate; the loss weighted 4x toward the edit regions; no
  conditioning dropout (it samples at guidance 1 / 1, so the dropped branches are never used);
  EMA; AdamW at 2e-3, constant, batch 16. Measured on the ``mini`` rung at 32 px: judge
  instruction compliance 0.920 / 0.945 after 760 steps, two seeds, against 0.000 / 0.015 for
  ``--no-saca --no-bcca`` (benchmarks/RESULTS.md; benchmarks/ablate_mcie_e1.py). A decaying
  rate and a late-timestep bias were measured and did not help, so the schedule is constant.
- ``sd15`` fine-tunes a pretrained backbone: gates at 0, so step 0 is the plain UNet.
- ``tiny`` checks the plumbing (a random VAE: its outputs are noise whatever the steps).

With ``--init-from`` (a pretrained backbone) the gates start at 0 whatever the preset, unless
``gate_init`` is given.

:func:`write_run_record` writes the whole configuration, the shards it resolved to with their
SHA-256, the seed and the mcie version as ``RUN/train_config.json``; :func:`load_run_record`
reads it back (``mcie train --config``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import typing
from typing import Any

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.model.config import PRESETS, MCIEConfig

#: the run folder's record of its configuration
RECORD_FILE = "train_config.json"
RECORD_VERSION = 1
LR_SCHEDULES = ("constant", "cosine", "linear")
MIXED_PRECISION = ("no", "bf16")
REPORT_TO = ("tensorboard", "wandb", "none")

#: values of the recipe fields shared by every preset unless its recipe says otherwise
BASE_RECIPE: dict[str, Any] = {
    "batch_size": 4,
    "lr": 1e-4,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "conditioning_dropout": 0.05,  # InstructPix2Pix's
    "gate_init": 0.0,  # the plain UNet at step 0
    "edit_loss_weight": 0.0,  # plain MSE
    "ema": False,
}

#: each preset's training recipe: the fields it sets beside :data:`BASE_RECIPE`
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {},
    # benchmarks/RESULTS.md, the mini rung at 32 px, 760 steps (the dropout-0 table)
    "tiny-pixel": {
        "batch_size": 16,
        "lr": 2e-3,
        "lr_schedule": "constant",
        "gate_init": 1.0,
        "edit_loss_weight": 4.0,
        "conditioning_dropout": 0.0,
        "ema": True,
    },
    "sd15": {"gate_init": 0.0},
}


def _field(default: Any = dataclasses.MISSING, help: str = "", **meta: Any) -> Any:
    """A field with its help text and CLI hints (``flag``, ``choices``, ``action``, ...)."""
    if not help:
        raise ValueError("every TrainConfig field needs its help text")
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One ``mcie train`` run. ``None`` on a recipe field means "the preset's recipe" and is
    filled at construction; ``resolution`` and ``train_text_encoder`` left ``None`` are the
    model preset's (:class:`mcie.model.config.MCIEConfig`)."""

    shards: str = _field(help="shard glob, e.g. 'out/demo/shards/*.tar' (quote it)", positional="SHARDS")
    out: str = _field(help="run folder: checkpoints, log.jsonl, logs/ (TensorBoard), train_config.json")
    max_steps: int = _field(help="optimiser steps to reach")
    preset: str = _field(
        "tiny",
        "model preset and its training recipe: tiny (plumbing checks on a "
        "CPU), tiny-pixel (pixel space, learns on a CPU), sd15",
        choices=PRESETS,
    )
    batch_size: int | None = _field(None, "samples per step and device")
    grad_accum: int = _field(1, "batches accumulated per step")
    lr: float | None = _field(None, "AdamW learning rate")
    lr_schedule: str | None = _field(
        None,
        "learning rate over the run: constant, or decayed to 0 at --max-steps along a cosine or a line",
        choices=LR_SCHEDULES,
    )
    warmup_steps: int | None = _field(None, "steps of linear learning-rate warm-up")
    weight_decay: float = _field(1e-2, "AdamW weight decay")
    max_grad_norm: float = _field(1.0, "gradient clipping, 0 = off")
    resolution: int | None = _field(None, "training image side (default: the model preset's)")
    seed: int = _field(0, "seed of weights, data order and noise")
    conditioning_dropout: float | None = _field(
        None, "InstructPix2Pix dropout p: text p, image p, both p (0 when sampling at guidance 1 / 1)"
    )
    checkpoint_every: int = _field(500, "steps between checkpoints")
    keep_checkpoints: int = _field(3, "checkpoints kept, oldest removed")
    resume: bool = _field(
        False, "continue from the newest checkpoint in --out", action="store_true", session=True
    )
    no_saca: bool = _field(False, "ablation: no Spatial-Aware Cross-Attention", action="store_true")
    no_bcca: bool = _field(False, "ablation: no Background-Consistent Cross-Attention", action="store_true")
    train_text_encoder: bool | None = _field(
        None,
        "train the text encoder too (default: the model preset's choice; on for tiny-pixel only)",
        action="bool",
    )
    gate_init: float | None = _field(
        None,
        "initial SACA/BCCA gate value: 0 starts as the plain UNet (fine-tuning a pretrained "
        "backbone, and always with --init-from unless given), 1 opens the branches for a model "
        "trained from scratch",
    )
    gate_lr_mult: float = _field(
        10.0, "learning-rate multiplier of the SACA/BCCA gates and BCCA's new projections"
    )
    edit_loss_weight: float | None = _field(
        None,
        "extra loss weight inside the edit regions, normalised to mean 1 (0: plain MSE; 4 helps "
        "small models, whose edit regions are a few % of the pixels)",
    )
    late_timestep_bias: float = _field(
        1.0,
        "draw training timesteps of the noisier half this many times as often as the other half "
        "(1: uniform; few-step sampling reads the model only there)",
    )
    init_from: str | None = _field(
        None, "local SD1.5 / InstructPix2Pix folder to start from (default: random weights of the preset)"
    )
    # `build --workers` counts Beam processes; a DataLoader's are --loader-workers
    workers: int = _field(
        0,
        "DataLoader worker processes (0: load in the training process)",
        flag="--loader-workers",
        deprecated=("--workers",),
    )
    shuffle_buffer: int = _field(64, "sample shuffle buffer, 0 = off")
    device: str = _field("cpu", "torch device")
    threads: int | None = _field(
        None, "torch CPU threads (default: 1 on machines with at most 4 cores, else half the cores up to 8)"
    )
    mixed_precision: str = _field(
        "no", "accelerate mixed precision: bf16 autocast, fp32 weights", choices=MIXED_PRECISION
    )
    ema: bool | None = _field(None, "keep an EMA of the trained weights; checkpoints hold it", action="bool")
    ema_decay: float = _field(0.9999, "EMA decay, warmed up as min(decay, (1+step)/(10+step))")
    validate_every: int = _field(
        0, "steps between validation images and scores in OUT/validation (and the tracker), 0 = off"
    )
    validation_shards: str | None = _field(None, "shard glob of validation samples (default: SHARDS)")
    validation_samples: int = _field(4, "samples edited at each validation")
    validation_steps: int = _field(10, "DDIM steps per validation edit")
    report_to: str = _field(
        "tensorboard",
        "where training curves go besides log.jsonl: tensorboard (event files in OUT/logs), wandb "
        "(needs the wandb package), none",
        choices=REPORT_TO,
    )
    log_every: int = _field(10, "steps between log lines")
    log_keys: bool = _field(
        False,
        "append each step's sample keys to OUT/keys-rank<r>.jsonl (audits the data split)",
        action="store_true",
    )
    progress: bool = _field(
        True, "no progress bar and no step lines", flag="--no-progress", action="store_false", session=True
    )

    def __post_init__(self) -> None:
        _choice("--preset", self.preset, PRESETS)
        filled = {**BASE_RECIPE, **RECIPES[self.preset]}
        if self.init_from:  # fine-tuning a pretrained backbone: start as the plain UNet
            filled["gate_init"] = 0.0
        model = MCIEConfig.preset_config(self.preset)
        filled["resolution"] = model.resolution
        filled["train_text_encoder"] = model.train_text_encoder
        for name, value in filled.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: filled once, here
        self._check()

    def _check(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints",
                     "log_every", "validation_samples", "validation_steps", "resolution"):  # fmt: skip
            _at_least(name, getattr(self, name), 1)
        for name in ("workers", "shuffle_buffer", "warmup_steps", "validate_every"):
            _at_least(name, getattr(self, name), 0)
        if self.threads is not None:
            _at_least("threads", self.threads, 1)
        _choice("--lr-schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("--mixed-precision", self.mixed_precision, MIXED_PRECISION)
        _choice("--report-to", self.report_to, REPORT_TO)
        if self.report_to == "wandb" and importlib.util.find_spec("wandb") is None:
            raise UsageError(
                "--report-to wandb needs the wandb package (pip install wandb); "
                "allowed without it: tensorboard, none"
            )
        if not self.shards or not self.out:
            raise UsageError("give SHARDS and --out")
        if self.lr <= 0 or self.gate_lr_mult <= 0 or self.late_timestep_bias <= 0:
            raise UsageError("--lr, --gate-lr-mult and --late-timestep-bias must be > 0")
        if self.edit_loss_weight < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise UsageError("--edit-loss-weight, --weight-decay and --max-grad-norm must be >= 0")
        if not 0 <= self.conditioning_dropout < 1 / 3:
            raise UsageError(f"--conditioning-dropout must be in [0, 1/3), got {self.conditioning_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise UsageError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")

    # -- construction ------------------------------------------------------------------------

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again; recipe fields already filled stay)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from field values (a record's ``config``); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown training options {unknown}; known: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        for name, value in values.items():  # a record is untrusted input: types checked too
            allowed = typing.get_args(hints[name]) or (hints[name],)
            if float in allowed:
                allowed = (*allowed, int)
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                kind = hints[name].__name__ if isinstance(hints[name], type) else str(hints[name])
                raise UsageError(f"training option {name}: {value!r} is not of type {kind}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> MCIEConfig:
        """The MCIE-E1 architecture this run builds (when it does not resume or load one)."""
        return MCIEConfig.preset_config(
            self.preset,
            saca=not self.no_saca,
            bcca=not self.no_bcca,
            resolution=self.resolution,
            train_text_encoder=self.train_text_encoder,
            gate_init=self.gate_init,
        )


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise UsageError(f"--{name_flag(name)[2:]} must be >= {low}, got {value}")


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{flag} {value!r} is not one of: {', '.join(allowed)}")


def name_flag(name: str) -> str:
    """The command-line flag of the field ``name`` (``--loader-workers`` for ``workers``)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def recipe_default(name: str) -> str:
    """A recipe field's default as help text: ``tiny 0.0001, tiny-pixel 0.002, sd15 0.0001``."""
    return ", ".join(f"{p} {RECIPES[p].get(name, BASE_RECIPE[name])}" for p in PRESETS)


# -- the run folder's record -------------------------------------------------------------------


def _absolute(path: str | None) -> str | None:
    """A local path or glob made absolute (comma-separated globs each); URLs as they are."""
    if path is None:
        return None
    parts = [p.strip() for p in path.split(",")]
    return ",".join(p if storage.is_remote(p) else os.path.abspath(os.path.expanduser(p)) for p in parts)


def _data(pattern: str) -> list[dict[str, Any]]:
    from mcie.model.data import expand_shards

    return [{"path": p, **storage.digest(p).to_json()} for p in expand_shards(_absolute(pattern))]


def run_record(cfg: TrainConfig, start_step: int = 0) -> dict[str, Any]:
    """The whole configuration of a run, with local paths absolute, each shard's SHA-256 and
    size, the mcie version and the step the run started from (0, or the resumed checkpoint's)."""
    import mcie

    config = cfg.to_dict()
    for name in ("shards", "out", "validation_shards", "init_from"):
        config[name] = _absolute(config[name])
    validation = None
    if cfg.validate_every and cfg.validation_shards:
        validation = _data(cfg.validation_shards)
    return {
        "version": RECORD_VERSION,
        "mcie_version": mcie.__version__,  # as a build's run manifest records it
        "seed": cfg.seed,
        "start_step": start_step,
        "config": config,
        "data": {"shards": _data(cfg.shards), "validation_shards": validation},
    }


def write_run_record(cfg: TrainConfig, start_step: int = 0) -> dict[str, Any]:
    """Write :func:`run_record` to ``OUT/train_config.json`` (atomically) and return it."""
    record = run_record(cfg, start_step)
    storage.atomic_write(
        os.path.join(cfg.out, RECORD_FILE), json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
    return record


def load_run_record(path: str) -> dict[str, Any]:
    """The field values recorded in a ``train_config.json`` (or a run folder holding one),
    without the options that say how that invocation ran (``resume``, ``progress``)."""
    if os.path.isdir(path):
        path = os.path.join(path, RECORD_FILE)
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config {path}: cannot read a training record: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise UsageError(f"--config {path}: not a training record (no 'config' object)")
    session = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("session")}
    return {k: v for k, v in record["config"].items() if k not in session}

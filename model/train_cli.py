"""``mcie train``: its parser, generated from :class:`~mcie.model.train_config.TrainConfig`'s
fields, and the one place that turns parsed arguments into a ``TrainConfig``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing

from mcie.cliargs import examples, input_argument, renamed_option
from mcie.exitcodes import ExitCode, UsageError
from mcie.model.train_config import BASE_RECIPE, TrainConfig, load_run_record, name_flag, recipe_default

#: fields without a default: given on the command line, or by --config
REQUIRED = {"shards": "SHARDS", "out": "--out", "max_steps": "--max-steps"}


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``train`` to ``mcie``'s subparsers; its options are :class:`TrainConfig`'s fields."""
    t = sub.add_parser(
        "train",
        help="train MCIE-E1 on MCIE shards",
        description="Train MCIE-E1 (an InstructPix2Pix-style UNet with Spatial-Aware and\n"
        "Background-Consistent Cross-Attention) on MCIE shards; checkpoints in diffusers layout.\n"
        "Each preset carries its training recipe (flags override single fields); the run folder\n"
        "records the whole configuration in train_config.json, which --config reruns.",
        epilog=examples(
            "mcie train 'mini/shards/*.tar' --out run/ --preset tiny-pixel --max-steps 760",
            "mcie train 'out/demo/shards/*.tar' --out ckpt/ --preset tiny --max-steps 50   # plumbing only",
            "mcie train --config run/train_config.json --out rerun/",
            "mcie train 'mini/shards/*.tar' --out run/ --preset tiny-pixel --max-steps 1500 --resume",
        ),
    )
    add_train_arguments(t)
    t.add_argument(
        "--config",
        default=None,
        metavar="FILE_OR_RUN",
        help="rerun a recorded run: its train_config.json (or the run folder holding one); "
        "flags given beside it override single fields (default: none)",
    )
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    t.set_defaults(run=run_train)
    return t


def _value_type(name: str) -> type:
    """int, float or str: the field's type without its ``| None``."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _help(f: dataclasses.Field) -> str:
    """The field's help with its default: a value, the presets' recipe, or 'required'."""
    text = f.metadata["help"].replace("%", "%%")
    if f.name in REQUIRED:
        return f"{text} (required unless --config)"
    if f.metadata.get("action") in ("store_true", "store_false") or "default" in text:
        return text
    if f.name in BASE_RECIPE:
        return f"{text} (default: the preset's recipe: {recipe_default(f.name)})"
    return f"{text} (default: {f.default})"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field (SHARDS positional). Options not given stay
    out of the namespace (``SUPPRESS``), so :func:`train_options` knows what was given."""
    for f in dataclasses.fields(TrainConfig):
        meta, flag = f.metadata, name_flag(f.name)
        if "positional" in meta:
            input_argument(p, f.name, meta["positional"], _help(f), aliases=(flag,), required=False)
            continue
        kw: dict[str, typing.Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f)}
        action = meta.get("action")
        if action == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif action:
            kw["action"] = action
        else:
            kw["type"] = _value_type(f.name)
            if "choices" in meta:
                kw["choices"] = meta["choices"]
        p.add_argument(flag, **kw)
        for old in meta.get("deprecated", ()):
            renamed_option(p, old, flag, f.name, type=_value_type(f.name), metavar=f.name.upper())


def train_options(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`TrainConfig`: the given flags, over ``--config``'s record if given."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if getattr(args, f.name, None) is not None  # SHARDS not given is None, the rest absent
    }
    if args.config:
        return TrainConfig.from_dict({**load_run_record(args.config), **given})
    missing = [flag for name, flag in REQUIRED.items() if name not in given]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (or --config FILE)")
    return TrainConfig(**given)


def run_train(args: argparse.Namespace) -> int:
    """``mcie train``: build the config, check the data, train, print one summary."""
    summary = train_with_config(train_options(args))  # usage errors before torch is imported
    from mcie.model.trainer import format_summary  # torch: only once the model extra is checked

    if summary["process_index"] == 0:  # under `accelerate launch`, one summary for the run
        print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
    return ExitCode.OK


def train_with_config(cfg: TrainConfig) -> dict:
    """Check ``cfg``'s output folder, extras and data, then train; returns the trainer's summary.
    A missing or unusable input is a :class:`UsageError`; a damaged shard a ``ShardError``."""
    from mcie import extras
    from mcie.managed import refuse_managed_output
    from mcie.model.extra import require_torch
    from mcie.threads import set_torch_threads

    refuse_managed_output(cfg.out)  # checkpoints written into a build folder's own files
    require_torch("mcie train")
    if cfg.report_to == "tensorboard":  # the default; torch.utils.tensorboard needs the package
        extras.require("model", "mcie train --report-to tensorboard", ["tensorboard"])
    set_torch_threads(cfg.threads)
    from mcie.model.data import expand_shards
    from mcie.model.trainer import train
    from mcie.shards import ShardError

    try:
        expand_shards(cfg.shards)
        if cfg.validate_every and cfg.validation_shards:
            expand_shards(cfg.validation_shards)
        return train(cfg)
    except ShardError:
        raise  # a damaged shard fails the run (exit 2); it is not a usage error
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from exc

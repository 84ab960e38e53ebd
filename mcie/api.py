"""The Python API: the common jobs of the command line as functions.

``import mcie`` loads none of this; ``mcie.build`` and the other names below are looked up here
on first use (:mod:`mcie`'s module ``__getattr__``), and each function imports Beam, pyarrow or
torch only when it is called, so importing the package stays cheap.

>>> import mcie
>>> summary = mcie.build("out/set", samples=20, image_size=64, seed=0)
>>> index = mcie.read_index("out/set")           # pyarrow.Table; .to_pandas() for pandas
>>> sample = next(mcie.iter_samples("out/set"))  # source, target and one mask per sub-edit
>>> mcie.audit_build("out/set")["ok"]
True
>>> mcie.train(mcie.TrainConfig(shards="out/set/shards/*.tar", out="run", preset="tiny", max_steps=2))

Errors are the command line's: :class:`~mcie.exitcodes.UsageError` for a bad option or a
missing extra, :class:`~mcie.exitcodes.RunFailed` when more candidates failed than allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mcie.exitcodes import UsageError
from mcie.model.train_config import TrainConfig

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "Sample",
    "TrainConfig",
    "audit_build",
    "build",
    "build_option_names",
    "iter_samples",
    "read_index",
    "train",
]
#: ``mcie build`` options that :func:`build` sets itself: ``out`` is its argument, ``progress``
#: its switch, and it returns the summary instead of printing it
_OWN = {"out", "no_progress", "json"}


# -- build ---------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    """``mcie build``'s own parser (the one the command line uses)."""
    from mcie.cli import build_parser

    root = build_parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["build"]


def _build_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """keyword name -> the ``mcie build`` option it stands for: each option's long flag with
    dashes as underscores (``--image-size`` -> ``image_size``); help, -v, hidden and renamed
    spellings aside."""
    flags = {}
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if not long or action.help == argparse.SUPPRESS or action.dest in ("help", "verbose"):
            continue
        name = long[0][2:].replace("-", "_")
        if action.dest.startswith("_") or name in _OWN:  # "_": a deprecated spelling of another
            continue
        flags[name] = action
    return flags


def build_option_names() -> list[str]:
    """The keyword options :func:`build` accepts (``mcie build --help`` explains each)."""
    return sorted(_build_flags(_build_parser()))


def build(out: str, *, progress: bool = False, **options: Any) -> dict[str, Any]:
    """Run ``mcie build --out OUT`` with ``options`` as its flags; returns the run's summary
    (``candidates``, ``by_status``, ``by_reason``, timings).

    Each keyword is a flag of ``mcie build`` with underscores for dashes and the same default:
    ``build("out/set", samples=20, image_size=64, seed=1, workers=2, lossless=True)`` is
    ``mcie build --out out/set --samples 20 --image-size 64 --seed 1 --workers 2 --lossless``.
    A switch is on with ``True``; ``None`` or ``False`` leaves a flag out; a list repeats it
    (``beam_arg=[...]``). ``progress=True`` prints progress lines on stderr as the command does.

    Raises :class:`TypeError` for a keyword that is no flag, :class:`UsageError` for a value the
    command refuses, :class:`~mcie.exitcodes.RunFailed` when more candidates failed than
    ``max_failed_fraction`` allows.
    """
    from mcie import logs

    logs.setup()  # as the command does, before Beam is imported: its log stays off the terminal
    from mcie.pipeline.build import run_build
    from mcie.pipeline.cli import build_options
    from mcie.pipeline.runner import check_failures

    parser = _build_parser()
    flags = _build_flags(parser)
    unknown = sorted(set(options) - set(flags))
    if unknown:
        raise TypeError(f"build() got unknown options {unknown}; allowed: {', '.join(sorted(flags))}")
    argv = ["--out", out] + ([] if progress else ["--no-progress"])
    for name, value in options.items():
        argv += _flag_args(flags[name], value)
    args = _parse(parser, argv)
    opts = build_options(args)
    summary = run_build(opts)
    if not summary.get("dry_run"):  # a dry run's summary is the job graph, no candidates
        check_failures(summary, opts.run)
    return summary


def _flag_args(action: argparse.Action, value: Any) -> list[str]:
    """The argv words that give ``action`` the value ``value``."""
    flag = next(s for s in action.option_strings if s.startswith("--"))
    if value is None or value is False:
        return []
    if action.nargs == 0:  # a switch
        return [flag]
    if isinstance(value, (list, tuple)):
        return [w for v in value for w in (flag, str(v))]
    return [flag, str(value)]


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with its usage error as :class:`UsageError`, not an exit."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        raise UsageError(lines[-1].split("error: ", 1)[-1] if lines else "invalid build options") from None


# -- reading a build -----------------------------------------------------------------------------


def read_index(out: str, columns: list[str] | None = None) -> pa.Table:
    """The build's ``index.parquet`` as a :class:`pyarrow.Table`, one row per candidate
    (accepted, rejected, failed, pending), sorted by key; ``columns`` picks some. For pandas:
    ``read_index(out).to_pandas()``."""
    from mcie.layout import BuildLayout
    from mcie.tables import read_table

    return read_table(BuildLayout(out).index, columns=columns)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One shard sample: ``meta`` is its JSON (instruction, ``sub_edits``, scores, status);
    ``source`` and ``target`` are (H, W, 3) uint8 arrays; ``masks`` one (H, W) bool array per
    sub-edit (the region it may change), in ``meta["sub_edits"]`` order."""

    key: str
    shard: str
    meta: dict[str, Any]
    source: np.ndarray
    target: np.ndarray
    masks: list[np.ndarray]

    @property
    def instruction(self) -> str:
        """The complex instruction."""
        return self.meta["instruction"]


def iter_samples(out: str, rejected: bool = False, limit: int | None = None) -> Iterator[Sample]:
    """The accepted samples of the build ``out`` (``rejected=True``: the rejected shards), shard
    by shard and in key order within a shard, at most ``limit``. Each sample is checked as it is
    read (members, sizes, mask count): a damaged one raises :class:`~mcie.validate.SampleError` naming the
    shard and key, a truncated tar :class:`~mcie.shards.ShardError`."""
    from mcie.layout import REJECTED_DIR, SHARDS_DIR
    from mcie.shards import decode_sample, read_tar, shard_paths
    from mcie.validate import check_sample

    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    n = 0
    for path in shard_paths(out, REJECTED_DIR if rejected else SHARDS_DIR):
        for key, members in read_tar(path):
            if limit is not None and n >= limit:
                return
            check_sample(key, members, path)
            meta, source, target, masks = decode_sample(members)
            yield Sample(key=key, shard=path, meta=meta, source=source, target=target, masks=masks)
            n += 1


def audit_build(out: str) -> dict[str, Any]:
    """``mcie audit``: check the build ``out`` (index, shards, masks) and, where the synthetic
    truth is there, measure the filter against it; a report with ``ok`` and ``problems``."""
    from mcie.audit import audit

    return audit(out)


# -- training ------------------------------------------------------------------------------------


def train(config: TrainConfig) -> dict[str, Any]:
    """``mcie train`` from a :class:`TrainConfig` (``TrainConfig(shards=..., out=...,
    preset="tiny", max_steps=50)``; its fields are the command's flags); returns the run's
    summary (steps, losses, checkpoint folder). Needs the model extra (``UsageError`` naming it
    otherwise); writes the run's configuration beside its checkpoints as the command does."""
    from mcie.model.train_cli import train_with_config

    if not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, got {type(config).__name__}")
    return train_with_config(config)

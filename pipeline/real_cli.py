"""CLI glue for the real-model backends: ``mcie build --models ... [--images ...]`` and
``mcie models tiny DIR``. :mod:`mcie.cli` registers these and dispatches here."""

from __future__ import annotations

import argparse
import json

from mcie.exitcodes import ExitCode, UsageError


def add_build_args(b: argparse.ArgumentParser) -> None:
    """The real-model options of ``mcie build``."""
    g = b.add_argument_group("real models (instead of the synthetic generator)")
    g.add_argument(
        "--models",
        metavar="YAML",
        default=None,
        help="models file naming, per stage, a hub name or local dir (see `mcie models tiny`); "
        "runs the real-model pipeline: VLM plan, detector+SAM ground, inpaint edit, VLM judge",
    )
    g.add_argument(
        "--images",
        metavar="DIR_OR_GLOB",
        default=None,
        help="input images: a folder, a glob, a .parquet/.csv list of paths or URLs, or a cloud path "
        "(default: the bundled sample photos); with --models, --image-size is the short side and "
        "--shard-size the number of input files per shard",
    )
    g.add_argument(
        "--accelerator",
        default=None,
        help="Dataflow accelerator resource hint for the GPU stages "
        "(default type:nvidia-l4;count:1;install-nvidia-driver)",
    )


def add_parsers(sub) -> None:
    """``mcie models ...``."""
    m = sub.add_parser("models", help="model utilities for the real-model pipeline")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=type(m))
    t = msub.add_parser("tiny", help="write tiny random-weight models and DIR/models.yaml (offline)")
    t.add_argument("dir", help="folder to write (created)")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")


def run(args: argparse.Namespace) -> int:
    """Run ``mcie models ...``."""
    if args.models_command == "tiny":
        from mcie.transforms.models.tiny import write_tiny_models

        path = write_tiny_models(args.dir, args.seed)
        print(f"wrote tiny models and {path}")
        return ExitCode.OK
    raise UsageError(f"unknown models command {args.models_command!r}")


def real_options(args: argparse.Namespace, run_opts):
    """:class:`RealBuildOptions` from ``mcie build`` arguments."""
    from mcie.pipeline.real_build import DEFAULT_ACCELERATOR, RealBuildOptions, resolve_inputs
    from mcie.transforms.judge import FilterThresholds
    from mcie.transforms.sources.images import ImageSourceConfig

    try:
        return RealBuildOptions(
            out=args.out,
            models=args.models,
            inputs=resolve_inputs(args.images),
            shard_size=args.shard_size if args.shard_size is not None else 64,  # input files per shard
            lossless=args.lossless,
            resume=args.resume,
            source=ImageSourceConfig(short_side=args.image_size, min_side=min(32, args.image_size)),
            thresholds=FilterThresholds(
                args.min_compliance, args.bg_ssim_min, args.bg_psnr_min, args.bg_l1_max, args.bg_changed_max
            ),
            run=run_opts,
            accelerator=args.accelerator or DEFAULT_ACCELERATOR,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_build(args: argparse.Namespace, run_opts) -> int:
    """Run the real-model build, print its summary and check the failure budget.

    Inputs that could not be used (``source_unreadable``, ``source_refused``) are outcomes of
    the data, not of the run: each has its index row, the summary counts them, but they do not
    count against ``--max-failed-fraction`` (a folder with junk in it is not a failed run)."""
    from mcie.cli import format_summary
    from mcie.pipeline.real_build import run_real_build
    from mcie.pipeline.runner import check_failures

    if args.images and not args.models:
        raise UsageError("--images needs --models (the synthetic generator makes its own images)")
    summary = run_real_build(real_options(args, run_opts))
    print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
    source = sum(v for k, v in summary["by_reason"].items() if k.startswith("failed:source_"))
    budget = dict(summary)
    budget["by_status"] = {**summary["by_status"], "failed": summary["by_status"].get("failed", 0) - source}
    budget["candidates"] = summary["candidates"] - source
    check_failures(budget, run_opts)
    return ExitCode.OK


__all__ = ["add_build_args", "add_parsers", "run", "run_build"]

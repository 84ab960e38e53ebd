"""The ``mcie`` command line. Exit codes: see :mod:`mcie.exitcodes`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from mcie import storage
from mcie.exitcodes import ExitCode, RunFailed, ServiceError, UsageError

#: named build sizes; explicit --samples / --shard-size win over them
PRESETS = {
    "demo": {"samples": 1200, "shard_size": 200},
    "mcie": {"samples": 90000, "shard_size": 1000},  # the paper's ~90k; 90 shards of 1,000
}
DEFAULT_SIZE = {"samples": 1000, "shard_size": 500}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; our contract says 1 (2 means the run failed)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running")
    g.add_argument(
        "--workers", type=int, default=1, help="worker processes for Beam's FnApiRunner (default 1)"
    )
    g.add_argument(
        "--runner",
        default="FnApiRunner",
        help="Beam runner (default FnApiRunner; DataflowRunner to scale out)",
    )
    g.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra Beam pipeline flag, repeatable (e.g. --beam-arg=--region=europe-west4)",
    )
    g.add_argument(
        "--error-policy",
        default="continue",
        choices=["continue", "raise"],
        help="continue: a sample that raises is recorded as failed; raise: the first exception fails the run",
    )
    g.add_argument(
        "--max-failed-fraction",
        type=float,
        default=0.01,
        help="exit 2 when more than this share of candidates failed (default 0.01)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out, skipping finished units",
    )
    g.add_argument("--no-progress", action="store_true", help="do not print progress lines while running")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g.add_argument("--debug-exit-after-units", type=int, default=None, help=argparse.SUPPRESS)


def _add_synthetic_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("synthetic source")
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named size: demo (1,200 candidates) or mcie (the ~90k MCIE set); flags override it",
    )
    g.add_argument("--samples", type=int, default=None, help="number of candidates (default 1000)")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed; candidate i uses the RNG of (seed, i) (default 0)",
    )
    g.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="candidates per unit of work and per shard (default 500)",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="image side in pixels, multiple of 8 (default 256)",
    )
    g.add_argument(
        "--failure-rate",
        type=float,
        default=0.3,
        help="share of candidates with an injected failure (default 0.3)",
    )
    g.add_argument("--min-edits", type=int, default=2, help="fewest sub-edits per instruction (default 2)")
    g.add_argument("--max-edits", type=int, default=5, help="most sub-edits per instruction (default 5)")
    g.add_argument(
        "--edit-types",
        default=None,
        metavar="TYPE[,TYPE...]",
        help="only these edit types, e.g. 'recolour' or 'recolour,remove' (default: all seven, "
        "weighted as the full set)",
    )


def _add_threshold_args(p: argparse.ArgumentParser) -> None:
    from mcie.transforms.judge import FilterThresholds

    d = FilterThresholds()
    g = p.add_argument_group("filter thresholds")
    g.add_argument(
        "--min-compliance",
        type=float,
        default=d.min_compliance,
        help=f"reject below this share of executed sub-instructions (default {d.min_compliance})",
    )
    g.add_argument(
        "--bg-ssim-min",
        type=float,
        default=d.bg_ssim_min,
        help=f"reject below this background SSIM (default {d.bg_ssim_min})",
    )
    g.add_argument(
        "--bg-psnr-min",
        type=float,
        default=d.bg_psnr_min,
        help=f"reject below this background PSNR in dB (default {d.bg_psnr_min})",
    )
    g.add_argument(
        "--bg-l1-max",
        type=float,
        default=d.bg_l1_max,
        help=f"reject above this background L1 (default {d.bg_l1_max})",
    )
    g.add_argument(
        "--bg-changed-max",
        type=float,
        default=d.bg_changed_max,
        help=f"reject above this share of visibly changed background pixels (default {d.bg_changed_max})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mcie`` and its subcommands."""
    p = _Parser(
        prog="mcie",
        description="Build, validate and benchmark complex-instruction image-editing data.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser("build", help="generate → annotate → score → shard in one Beam pipeline")
    b.add_argument("--out", required=True, help="output directory (must be empty unless --resume)")
    b.add_argument("--lossless", action="store_true", help="PNG instead of JPEG for source and target images")
    _add_synthetic_args(b)
    _add_threshold_args(b)
    _add_run_args(b)
    from mcie.pipeline import real_cli  # real-model backends (issue 4)

    real_cli.add_build_args(b)

    g = sub.add_parser("generate", help="stage 1 alone: candidates into a record table")
    g.add_argument("--out", required=True, help="record table directory to write")
    _add_synthetic_args(g)
    _add_run_args(g)
    real_cli.add_build_args(g)

    for name, text in (
        ("annotate", "stage 2 alone: masks for a record table"),
        ("score", "stage 3 alone: judge and filter a record table"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--in", dest="inp", required=True, help="record table to read")
        s.add_argument("--out", required=True, help="record table to write")
        s.add_argument(
            "--models",
            metavar="YAML",
            default=None,
            help="for a table of the real-model backend: the models file (default: the one "
            "that made the table, from its run.json)",
        )
        if name == "score":
            _add_threshold_args(s)
        _add_run_args(s)

    s = sub.add_parser("shard", help="stage 4 alone: a scored record table → shards, index, card")
    s.add_argument("--in", dest="inp", required=True, help="scored record table to read")
    s.add_argument("--out", required=True, help="output directory (must be empty unless --resume)")
    s.add_argument("--lossless", action="store_true", help="PNG instead of JPEG for source and target images")
    _add_run_args(s)

    a = sub.add_parser("audit", help="check an output directory; measure it against truth.parquet")
    a.add_argument("out", help="output directory of mcie build or mcie shard")
    a.add_argument("--json", action="store_true", help="print one JSON object")

    v = sub.add_parser("preview", help="contact sheet PNG: samples with each sub-edit's mask outlined")
    v.add_argument("out", help="output directory of mcie build or mcie shard")
    v.add_argument("--png", default=None, help="where to write it (default OUT/preview.png)")
    v.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    v.add_argument("--rejected", action="store_true", help="show rejected samples instead of accepted ones")

    from mcie.report.cli import add_parser as add_report_parser

    add_report_parser(sub)

    from mcie.bench.cli import add_parsers as add_bench_parsers

    add_bench_parsers(sub)

    sub.add_parser("reasons", help="list the reason codes")

    from mcie.model import cli as model_cli

    model_cli.add_parsers(sub)
    from mcie.annotation.cli import add_parsers as add_ls_parsers

    add_ls_parsers(sub)
    real_cli.add_parsers(sub)
    return p


def _edit_weights(spec: str | None) -> tuple[tuple[str, float], ...]:
    """``--edit-types`` → the planner's (type, weight) pairs: the default weights, restricted."""
    from mcie.transforms.synthetic.edits import DEFAULT_EDIT_WEIGHTS, EDIT_TYPES, EDIT_WEIGHTS

    if spec is None:
        return tuple(DEFAULT_EDIT_WEIGHTS.items())
    types = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = sorted(set(types) - set(EDIT_TYPES))
    if not types or unknown:
        allowed = ", ".join(EDIT_TYPES)
        raise ValueError(f"--edit-types: unknown or no edit types {unknown}; allowed: {allowed}")
    return tuple((t, EDIT_WEIGHTS[t]) for t in EDIT_TYPES if t in types)


def _run_options(args: argparse.Namespace):
    from mcie.pipeline.options import RunOptions

    return RunOptions(
        workers=args.workers,
        runner=args.runner,
        error_policy=args.error_policy,
        max_failed_fraction=args.max_failed_fraction,
        beam_args=tuple(args.beam_arg),
        exit_after_units=args.debug_exit_after_units,
        progress=not args.no_progress,
    )


def _backend(args: argparse.Namespace):
    """The backend of a command: ``--models`` picks the real models; a stage command over a
    table takes the backend that made the table (its run.json); else the synthetic scenes."""
    from mcie.pipeline import real_cli
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.transforms.synthetic.editor import FailureConfig
    from mcie.transforms.synthetic.generator import SyntheticConfig
    from mcie.transforms.synthetic.planner import PlanConfig

    if getattr(args, "images", None) and not args.models:
        raise UsageError("--images needs --models (the synthetic generator makes its own images)")
    if getattr(args, "models", None) and hasattr(args, "samples"):
        return real_cli.models_backend(args)
    if hasattr(args, "inp"):
        from mcie.pipeline.stages import table_meta, table_units

        table_units(args.inp)  # a missing or foreign table is a usage error
        meta = table_meta(args.inp)
        if meta.get("generator") == "real-models" and args.command != "shard":  # shard runs no step
            return real_cli.models_backend(args, models=args.models or meta.get("models_file"))
        return SyntheticBackend()
    size = {**DEFAULT_SIZE, **PRESETS.get(args.preset or "", {})}
    return SyntheticBackend(
        samples=args.samples if args.samples is not None else size["samples"],
        seed=args.seed,
        synthetic=SyntheticConfig(
            image_size=args.image_size,
            plan=PlanConfig(
                min_edits=args.min_edits,
                max_edits=args.max_edits,
                edit_weights=_edit_weights(args.edit_types),
            ),
            failures=FailureConfig(rate=args.failure_rate),
        ),
    )


def _options(args: argparse.Namespace):
    """BuildOptions from parsed arguments (validation errors become UsageError): the raw
    namespace stops here."""
    from mcie.pipeline.options import BuildOptions
    from mcie.transforms.judge import FilterThresholds

    try:
        kw: dict[str, Any] = {"out": args.out, "resume": args.resume, "run": _run_options(args)}
        kw["backend"] = _backend(args)
        if hasattr(args, "samples"):
            if args.shard_size is not None:
                kw["shard_size"] = args.shard_size
            elif getattr(args, "models", None):
                kw["shard_size"] = 64  # input files per shard
            else:
                kw["shard_size"] = {**DEFAULT_SIZE, **PRESETS.get(args.preset or "", {})}["shard_size"]
        if hasattr(args, "min_compliance"):
            kw["thresholds"] = FilterThresholds(
                args.min_compliance,
                args.bg_ssim_min,
                args.bg_psnr_min,
                args.bg_l1_max,
                args.bg_changed_max,
            )
        if hasattr(args, "lossless"):
            kw["lossless"] = args.lossless
        return BuildOptions(**kw)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-run summary, for people."""
    lines = [f"candidates: {s['candidates']}  " + "  ".join(f"{k}: {v}" for k, v in s["by_status"].items())]
    for k, v in s["by_reason"].items():
        lines.append(f"  {k}: {v}")
    if "elapsed_s" in s:
        lines.append(
            f"time: {s['elapsed_s']} s for {s['samples_this_run']} candidates"
            f" ({s['samples_per_s']} samples/s); units skipped (resumed): {s['units_skipped']}"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    if args.command == "ls":
        from mcie.annotation.cli import run as run_ls

        return run_ls(args)
    if args.command == "reasons":
        from mcie.reasons import DESCRIPTIONS

        for r, d in DESCRIPTIONS.items():
            print(f"{r.value:24s} {d}")
        return ExitCode.OK
    if args.command == "bench":
        from mcie.bench.cli import run as run_bench_cli

        return run_bench_cli(args)
    if args.command == "report":
        from mcie.report.cli import run as run_report

        return run_report(args)
    if args.command == "preview":
        from mcie.preview import write_preview

        storage.require_folder(args.out)
        try:
            path = write_preview(args.out, args.png, args.n, "rejected" if args.rejected else "shards")
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        print(f"wrote {path}")
        return ExitCode.OK
    if args.command in ("train", "edit"):
        from mcie.model import cli as model_cli

        return model_cli.run(args)
    if args.command == "audit":
        from mcie.audit import audit, format_report

        storage.require_folder(args.out)
        report = audit(args.out)
        print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
        return ExitCode.OK if report["ok"] else ExitCode.FAILED

    from mcie.pipeline import real_cli, runner, stages
    from mcie.pipeline.build import run_build

    if args.command == "models":
        return real_cli.run(args)
    opts = _options(args)
    if args.command == "build":
        summary = run_build(opts)
    elif args.command == "generate":
        summary = stages.run_generate(opts)
    elif args.command in ("annotate", "score"):
        summary = stages.run_map_stage(args.command, args.inp, opts)
    else:
        summary = stages.run_shard(args.inp, opts)
    print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
    runner.check_failures(summary, opts.run)
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mcie``; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(_run(args))
    except UsageError as exc:
        print(f"mcie: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ServiceError as exc:
        print(f"mcie: service error: {exc}", file=sys.stderr)
        return ExitCode.SERVICE
    except RunFailed as exc:
        print(f"mcie: run failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except Exception as exc:  # anything else is a failed run, never a silent 0
        if os.environ.get("MCIE_DEBUG"):
            raise
        print(
            f"mcie: run failed: {type(exc).__name__}: {exc} (set MCIE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())

"""The ``mcie`` command line. Exit codes: see :mod:`mcie.exitcodes`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

from mcie import logs, progress, storage
from mcie.cliargs import Parser, check_min, examples, input_argument, renamed_option
from mcie.exitcodes import ExitCode, RunFailed, ServiceError, UsageError

#: named build sizes; explicit --samples / --shard-size win over them
PRESETS = {
    "demo": {"samples": 1200, "shard_size": 200},
    "mcie": {"samples": 90000, "shard_size": 1000},  # the paper's ~90k; 90 shards of 1,000
}
DEFAULT_SIZE = {"samples": 1000, "shard_size": 500}


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running")
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Beam worker processes (FnApiRunner); the output does not depend on it (default 1)",
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
        help="extra Beam pipeline flag, repeatable (e.g. --beam-arg=--region=europe-west4; default: none)",
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
    g.add_argument(
        "--no-progress", action="store_true", help="do not print progress lines while running (stderr)"
    )
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g.add_argument("--debug-exit-after-units", type=int, default=None, help=argparse.SUPPRESS)


def _add_synthetic_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("synthetic source")
    g.add_argument(
        "--size",
        dest="preset",
        choices=sorted(PRESETS),
        default=None,
        help="named size: demo (1,200 candidates) or mcie (the ~90k MCIE set); --samples and "
        "--shard-size override it (default: 1000 candidates, 500 per shard)",
    )
    # `train --preset` names a model; a dataset size is `--size` (one meaning per flag name)
    renamed_option(g, "--preset", "--size", "preset", choices=sorted(PRESETS))
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
    g.add_argument(
        "--task",
        default=None,
        choices=["mini", "mini-3", "full"],
        help="task-ladder rung (objects, edit types, sub-edits per instruction, object size): mini "
        "(2 recolours), mini-3 (2-3 of add/remove/recolour), full (the demo mix; the default)",
    )
    g.add_argument(
        "--min-edits",
        type=int,
        default=None,
        help="fewest sub-edits per instruction (default: the task's)",
    )
    g.add_argument(
        "--max-edits", type=int, default=None, help="most sub-edits per instruction (default: the task's)"
    )
    g.add_argument(
        "--edit-types",
        default=None,
        metavar="TYPE[,TYPE...]",
        help="only these edit types, e.g. 'recolour' or 'recolour,remove' (default: the task's; for "
        "full all default types, weighted as the full set)",
    )
    g.add_argument(
        "--object-scale", type=float, default=None, help="multiplies object radii (default: the task's)"
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
    p = Parser(
        prog="mcie",
        description="Build, validate, train on and benchmark complex-instruction image-editing data.\n\n"
        "Inputs are a command's first argument; what it writes is --out. `mcie COMMAND --help`\n"
        "explains each command, with examples.",
        epilog=examples(
            "mcie build --out out/demo --size demo --workers 2",
            "mcie audit out/demo",
            "mcie train 'out/demo/shards/*.tar' --out run/ --preset tiny --max-steps 50",
            "mcie bench run bench/ --editor oracle --out runs/oracle",
        ),
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="generate → annotate → score → shard in one Beam pipeline",
        description="Make candidates (synthetic scenes, or real images with --models), annotate,\n"
        "score and filter them, and write WebDataset shards, the Parquet index and a dataset card.",
        epilog=examples(
            "mcie build --out out/set --samples 5000 --seed 1 --workers 2",
            "mcie build --out out/demo --size demo",
            "mcie build --out out/set --resume            # continue an interrupted run",
            "mcie build --models models.yaml --images 'photos/*.jpg' --out out/real",
        ),
    )
    b.add_argument("--out", required=True, help="output directory (must be empty unless --resume)")
    b.add_argument("--lossless", action="store_true", help="PNG instead of JPEG for source and target images")
    _add_synthetic_args(b)
    _add_threshold_args(b)
    _add_run_args(b)
    from mcie.pipeline import real_cli  # the real-model backends' build flags

    real_cli.add_build_args(b)

    g = sub.add_parser(
        "generate",
        help="stage 1 alone: candidates into a record table",
        description="Stage 1 of `mcie build` alone: candidates (source, plan, edit) into a record\n"
        "table that `mcie annotate` reads.",
        epilog=examples("mcie generate --out t/gen --samples 1000 --seed 1"),
    )
    g.add_argument("--out", required=True, help="record table directory to write")
    _add_synthetic_args(g)
    _add_run_args(g)
    real_cli.add_build_args(g)

    for name, text, example in (
        ("annotate", "stage 2 alone: masks for a record table", "mcie annotate t/gen --out t/ann"),
        (
            "score",
            "stage 3 alone: judge and filter a record table",
            "mcie score t/ann --out t/scored --bg-psnr-min 35",
        ),
    ):
        s = sub.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]} (a stage of `mcie build`, over stored tables).",
            epilog=examples(example),
        )
        input_argument(s, "inp", "TABLE", "record table to read", aliases=("--in",))
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

    s = sub.add_parser(
        "shard",
        help="stage 4 alone: a scored record table → shards, index, card",
        description="Stage 4 of `mcie build` alone: a scored record table into shards, the index\n"
        "and the dataset card (the same bytes as `mcie build`).",
        epilog=examples("mcie shard t/scored --out out/set"),
    )
    input_argument(s, "inp", "TABLE", "scored record table to read", aliases=("--in",))
    s.add_argument("--out", required=True, help="output directory (must be empty unless --resume)")
    s.add_argument("--lossless", action="store_true", help="PNG instead of JPEG for source and target images")
    _add_run_args(s)

    a = sub.add_parser(
        "audit",
        help="check an output directory; measure it against truth.parquet",
        description="Check a build folder (shards, masks, index) and, for synthetic builds, measure\n"
        "it against its truth: mask mIoU, the filter's precision and recall. Exit 2 on a problem.",
        epilog=examples("mcie audit out/demo", "mcie audit out/demo --json | jq .ok"),
    )
    a.add_argument("out", metavar="BUILD", help="output directory of mcie build or mcie shard")
    a.add_argument("--json", action="store_true", help="print one JSON object")

    v = sub.add_parser(
        "preview",
        help="contact sheet PNG: samples with each sub-edit's mask outlined",
        description="A contact sheet of a build's samples: source | target with each sub-edit's\n"
        "mask outlined in its own colour, and the instruction underneath.",
        epilog=examples("mcie preview out/demo", "mcie preview out/demo --rejected --n 8 --out rejected.png"),
    )
    v.add_argument("out", metavar="BUILD", help="output directory of mcie build or mcie shard")
    v.add_argument("--out", dest="png", default=None, help="PNG file to write (default BUILD/preview.png)")
    renamed_option(v, "--png", "--out", "png")
    v.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    v.add_argument("--rejected", action="store_true", help="show rejected samples instead of accepted ones")

    from mcie.report.cli import add_parser as add_report_parser

    add_report_parser(sub)

    from mcie.bench.cli import add_parsers as add_bench_parsers

    add_bench_parsers(sub)

    sub.add_parser(
        "reasons",
        help="list the reason codes",
        description="List the reason codes of rejected and failed samples (the index's reason column).",
        epilog=examples("mcie reasons"),
    )

    from mcie.model import cli as model_cli

    model_cli.add_parsers(sub)
    from mcie.annotation.cli import add_parsers as add_ls_parsers

    add_ls_parsers(sub)
    real_cli.add_parsers(sub)
    return p


def _version() -> str:
    """The installed package's version (its metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcie")
    except PackageNotFoundError:
        import mcie

        return mcie.__version__


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
    from mcie.transforms.synthetic.ladder import ladder_config

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
    types = (
        [t.strip() for t in args.edit_types.split(",") if t.strip()] if args.edit_types is not None else None
    )
    return SyntheticBackend(
        samples=args.samples if args.samples is not None else size["samples"],
        seed=args.seed,
        synthetic=ladder_config(
            args.task,
            args.image_size,
            edit_types=types,
            min_edits=args.min_edits,
            max_edits=args.max_edits,
            object_scale=args.object_scale,
            failure_rate=args.failure_rate,
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
        from mcie.shards import ShardError
        from mcie.validate import SampleError

        storage.require_folder(args.out)
        check_min(args, n=1)
        try:
            path = write_preview(args.out, args.png, args.n, "rejected" if args.rejected else "shards")
        except (ShardError, SampleError):
            raise  # damaged data: the run failed (exit 2), naming shard and key
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
    logs.setup()  # before anything imports Beam (its import-time warning; see mcie.logs)
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    progress.configure(not getattr(args, "no_progress", False) and getattr(args, "progress", True))
    new_out = _new_output_folder(args)
    try:
        code = int(_run(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except UsageError as exc:
        _remove_if_empty(new_out)  # a refused run leaves nothing behind
        print(f"mcie: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ServiceError as exc:
        print(f"mcie: service error: {exc}", file=sys.stderr)
        return ExitCode.SERVICE
    except RunFailed as exc:
        print(f"mcie: run failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except BrokenPipeError:
        if not logs.stdout_closed():
            return _failed(args, sys.exc_info()[1])
        # `mcie audit X | head`: the reader has gone; stop quietly, as a Unix filter does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return ExitCode.PIPE_CLOSED
    except Exception as exc:  # anything else is a failed run, never a silent 0
        if os.environ.get("MCIE_DEBUG"):
            raise
        return _failed(args, exc)


def _failed(args: argparse.Namespace, exc: BaseException) -> int:
    """One line on stderr for an unexpected exception; its traceback in a log file. A damaged
    shard or sample needs no traceback: its message names the shard and the key."""
    from mcie.shards import ShardError
    from mcie.validate import SampleError

    if isinstance(exc, (ShardError, SampleError)):
        print(f"mcie: run failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    path = logs.write_traceback(exc, _output_folder(args))
    print(f"mcie: run failed: {logs.one_line(exc)} (traceback: {path})", file=sys.stderr)
    return ExitCode.FAILED


def _output_folder(args: argparse.Namespace) -> str | None:
    """The folder a command writes, when it exists (its failure logs go there), else None."""
    if args.command in ("audit", "preview", "report", "edit"):
        return None  # their positional is an input, or --out a file
    out = getattr(args, "out", None)
    return out if isinstance(out, str) and os.path.isdir(out) else None


def _new_output_folder(args: argparse.Namespace) -> str | None:
    """The local ``--out`` folder of a command when it does not exist yet (else None)."""
    if args.command in ("audit", "preview", "report", "edit"):
        return None
    out = getattr(args, "out", None)
    if not isinstance(out, str) or storage.is_remote(out) or os.path.lexists(out):
        return None
    return out


def _remove_if_empty(folder: str | None) -> None:
    """Remove ``folder`` (and its empty sub-folders) if the command created it and left it
    without a file: a refused run must not leave an empty output folder behind."""
    if folder is None or not os.path.isdir(folder):
        return
    if not any(files for _, _, files in os.walk(folder)):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

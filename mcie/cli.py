"""The ``mcie`` command line: the root parser, dispatch, and exceptions → exit codes.

Each command module registers its commands with ``add_parsers(sub)``, each command its run
function with ``set_defaults(run=...)``; :func:`main` calls ``args.run(args)`` and maps what it
raises to an exit code (:mod:`mcie.exitcodes`). By convention a command's input is its first
positional argument (``dest="inp"``) and what it writes is ``--out`` (``dest="out"``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from mcie import logs, progress, storage
from mcie.cliargs import Parser, examples
from mcie.exitcodes import ExitCode, RunFailed, ServiceError, UsageError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mcie`` and its subcommands."""
    from mcie import calibrate, inspect_cli
    from mcie.annotation import cli as ls_cli
    from mcie.bench import cli as bench_cli
    from mcie.model import cli as model_cli
    from mcie.pipeline import cli as pipeline_cli
    from mcie.report import cli as report_cli

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
    for module in (pipeline_cli, inspect_cli, calibrate, report_cli, bench_cli, model_cli, ls_cli):
        module.add_parsers(sub)
    return p


def _version() -> str:
    """The installed package's version (its metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcie")
    except PackageNotFoundError:
        import mcie

        return mcie.__version__


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` names: the function it registered with ``set_defaults(run=...)``."""
    if callable(getattr(args, "run", None)):
        return args.run(args)
    # `train` and `edit` still dispatch inside their module (their parser registers no `run`)
    from mcie.model import cli as model_cli

    return model_cli.run(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mcie``; returns the exit code."""
    logs.setup()  # before anything imports Beam (its import-time warning; see mcie.logs)
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose)
    progress.configure(not getattr(args, "no_progress", False) and getattr(args, "progress", True))
    new_out = _new_output_folder(args)
    try:
        code = int(_dispatch(args))
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
    print(f"mcie: run failed: {logs.traceback_line(exc, _output_folder(args))}", file=sys.stderr)
    return ExitCode.FAILED


def _output_folder(args: argparse.Namespace) -> str | None:
    """The folder a command writes (``--out``), when it exists (its failure logs go there);
    else None. An ``--out`` that names a file is no folder: its logs go to a temporary one."""
    out = getattr(args, "out", None)
    return out if isinstance(out, str) and os.path.isdir(out) else None


def _new_output_folder(args: argparse.Namespace) -> str | None:
    """The local ``--out`` of a command when nothing is there yet (else None)."""
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

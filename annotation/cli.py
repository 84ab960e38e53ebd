"""``mcie ls ...``: serve, export, import, shard (registered by :mod:`mcie.cli`).

Connection options everywhere: ``--url`` (default ``$LABEL_STUDIO_URL`` or
http://127.0.0.1:8080) and ``--token-file``; without it the token is read from
``$LABEL_STUDIO_USER_TOKEN``. There is no ``--token`` flag on purpose: command lines are visible
to every user of the machine.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mcie import extras
from mcie.annotation.limits import DEFAULT_BATCH_SIZE, DEFAULT_MAX_TASKS, MAX_REQUEST_BYTES
from mcie.cliargs import examples
from mcie.exitcodes import ExitCode, UsageError
from mcie.layout import DEFAULT_SHARD_SIZE


def _conn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", default=None, help="Label Studio URL (default $LABEL_STUDIO_URL or http://127.0.0.1:8080)"
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="file holding the API token (default: the LABEL_STUDIO_USER_TOKEN environment variable)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (a bar on a terminal; into a pipe or log, plain lines with an ETA on stderr)",
    )


def add_parsers(subparsers) -> None:
    """Register ``mcie ls`` and its subcommands."""
    ls = subparsers.add_parser(
        "ls",
        help="human validation in Label Studio (serve, export, import, shard)",
        description="Human validation in Label Studio: serve a local server, export a build's samples\n"
        "as pre-annotated tasks, import the verdicts into the index, write the accepted samples.",
        epilog=examples(
            "mcie ls serve --data-dir ls-data",
            "mcie ls export out/demo --project demo",
            "mcie ls import out/demo --project demo",
            "mcie ls shard out/demo --out out/final",
        ),
    )
    sub = ls.add_subparsers(dest="ls_command", required=True, parser_class=type(ls), metavar="COMMAND")
    for add in (_add_serve, _add_export, _add_import, _add_shard):
        add(sub)


def _add_serve(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="run a local Label Studio server until Ctrl-C",
        description="Run a local Label Studio (its own venv) with the user and token of\n"
        "LABEL_STUDIO_USERNAME / LABEL_STUDIO_PASSWORD / LABEL_STUDIO_USER_TOKEN, until Ctrl-C.",
        epilog=examples("mcie ls serve --data-dir ls-data --port 8080"),
    )
    s.add_argument("--data-dir", required=True, help="Label Studio data dir (database, media, logs)")
    s.add_argument(
        "--port", type=int, default=8080, help="first port to try; the real one is printed (default 8080)"
    )
    s.add_argument("--document-root", default=None, help="local-files document root (default DATA_DIR/files)")
    s.add_argument(
        "--venv", default=None, help="venv with label-studio==1.23.2 (default .venv-ls or $MCIE_LS_VENV)"
    )
    s.set_defaults(run=run_serve)


def _add_export(sub) -> None:
    e = sub.add_parser(
        "export",
        help="send samples of a build to a project as pre-annotated tasks",
        description="Send samples of a build to a Label Studio project as tasks pre-annotated with\n"
        "the pipeline's verdicts and masks; samples already in the project are not sent twice.",
        epilog=examples(
            "mcie ls export out/demo --project demo",
            "mcie ls export out/demo --project borderline --select borderline --batch-size 50",
        ),
    )
    e.add_argument("inp", metavar="BUILD", help="output folder of mcie build")
    e.add_argument(
        "--project",
        default=None,
        help="project title (created when missing, else reused); --project or --project-id is required",
    )
    e.add_argument(
        "--project-id",
        type=int,
        default=None,
        help="an existing project by id (when a title names several); default: by title",
    )
    e.add_argument(
        "--select",
        default="all",
        help="all | accepted | rejected | borderline | random:N (seeded by --seed); default all",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of random:N (default 0)")
    e.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"most tasks per import request (default {DEFAULT_BATCH_SIZE}; at most "
        f"{MAX_REQUEST_BYTES >> 20} MB a request)",
    )
    e.add_argument(
        "--max-tasks-per-project",
        type=int,
        default=DEFAULT_MAX_TASKS,
        help=f"most tasks per project; more go to PROJECT-2, PROJECT-3, ... (default {DEFAULT_MAX_TASKS:,})",
    )
    e.add_argument(
        "--document-root",
        default=None,
        help="the server's local-files document root (default $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)",
    )
    _conn_args(e)
    e.set_defaults(run=run_export)


def _add_import(sub) -> None:
    i = sub.add_parser(
        "import",
        help="pull verdicts and corrections back into the build's index",
        description="Pull the reviewers' verdicts, corrected sub-instructions and repainted masks\n"
        "back into the build's index (and BUILD/review/).",
        epilog=examples("mcie ls import out/demo --project demo --resolution strict"),
    )
    i.add_argument("inp", metavar="BUILD", help="output folder of mcie build (exported before)")
    i.add_argument("--project", default=None, help="project title; --project or --project-id is required")
    i.add_argument(
        "--project-id",
        type=int,
        default=None,
        help="the project by id (when a title names several); default: by title",
    )
    i.add_argument(
        "--resolution",
        default="majority",
        choices=["majority", "strict"],
        help="how several reviewers of one task decide; a tie is a disagreement (default majority)",
    )
    i.add_argument(
        "--read",
        default="list",
        choices=["list", "snapshot"],
        help="list: the task list, a page at a time, writing nothing on the server; snapshot: one"
        " export snapshot of the annotated tasks, about twice as fast for a large review, kept on"
        " the project's Export page as a record of the import (default list)",
    )
    _conn_args(i)
    i.set_defaults(run=run_import)


def _add_shard(sub) -> None:
    f = sub.add_parser(
        "shard",
        help="final shards of the samples reviewers accepted",
        description="Write the samples reviewers accepted (with their corrections) as final shards,\n"
        "with their index and wids descriptor.",
        epilog=examples(
            "mcie ls shard out/demo --out out/final",
            "mcie ls shard out/demo --out out/final --include-unreviewed",
            "mcie ls shard out/demo --out train/ --include-unreviewed --exclude-bench bench-real/",
        ),
    )
    f.add_argument("inp", metavar="BUILD", help="output folder of mcie build, after mcie ls import")
    f.add_argument("--out", required=True, help="folder for the final shards (must be empty)")
    f.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"samples per shard (default {DEFAULT_SHARD_SIZE})",
    )
    f.add_argument(
        "--include-unreviewed",
        action="store_true",
        help="also write the pipeline's accepted samples that nobody reviewed",
    )
    f.add_argument(
        "--exclude-bench",
        default=None,
        metavar="BENCH",
        help="leave out the samples whose source image is in this benchmark (a held-out split from "
        "`mcie bench build BUILD --holdout`): training shards without the held-out images (default: none)",
    )
    f.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    f.set_defaults(run=run_shard)


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        for k, v in summary.items():
            print(f"{k}: {v}")


def _require_project(args: argparse.Namespace, command: str) -> None:
    if args.project is None and args.project_id is None:
        raise UsageError(f"mcie ls {command}: give --project NAME or --project-id N")


def run_serve(args: argparse.Namespace) -> int:
    """``mcie ls serve``: until Ctrl-C."""
    from mcie.annotation.server import ServerConfig, default_venv, serve_forever

    cfg = ServerConfig(
        data_dir=args.data_dir,
        port=args.port,
        document_root=args.document_root,
        venv=args.venv or default_venv(),
    )
    return serve_forever(cfg)


def run_shard(args: argparse.Namespace) -> int:
    """``mcie ls shard``."""
    from mcie.annotation.final import write_final

    exclude: frozenset[str] = frozenset()
    if args.exclude_bench:
        from mcie.bench.sets import bench_source_hashes

        exclude = frozenset(bench_source_hashes(args.exclude_bench))
    _print(write_final(args.inp, args.out, args.shard_size, args.include_unreviewed, exclude), args.json)
    return ExitCode.OK


def run_export(args: argparse.Namespace) -> int:
    """``mcie ls export``; an unreachable or refusing server raises ServiceError (exit 3)."""
    from mcie.annotation.client import Connection
    from mcie.annotation.export import export_project

    _require_project(args, "export")
    extras.require("annotation", "mcie ls export")  # before the build is read or a token asked for
    conn = Connection.from_args(args.url, args.token_file)
    summary = export_project(
        args.inp, args.project, conn, args.document_root, args.select, args.seed, args.batch_size,
        project_id=args.project_id, max_tasks_per_project=args.max_tasks_per_project,
    )  # fmt: skip
    _print(summary, args.json)
    return ExitCode.OK


def run_import(args: argparse.Namespace) -> int:
    """``mcie ls import``; an unreachable or refusing server raises ServiceError (exit 3)."""
    from mcie.annotation.client import Connection
    from mcie.annotation.importer import import_project

    _require_project(args, "import")
    extras.require("annotation", "mcie ls import")  # before the build is read or a token asked for
    conn = Connection.from_args(args.url, args.token_file)
    summary = import_project(
        args.inp, args.project, conn, args.resolution, project_id=args.project_id, read=args.read
    )
    _print(summary, args.json)
    return ExitCode.OK

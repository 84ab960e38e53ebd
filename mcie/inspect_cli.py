"""``mcie audit | preview | reasons``: look at a build folder (registered by :mod:`mcie.cli`)."""

from __future__ import annotations

import argparse
import json

from mcie import storage
from mcie.cliargs import check_min, examples, renamed_option
from mcie.exitcodes import ExitCode, UsageError
from mcie.layout import REJECTED_DIR, SHARDS_DIR


def add_parsers(sub) -> None:
    """Register ``mcie audit``, ``mcie preview`` and ``mcie reasons``."""
    a = sub.add_parser(
        "audit",
        help="check an output directory; measure it against truth.parquet",
        description="Check a build folder (shards, masks, index) and, for synthetic builds, measure\n"
        "it against its truth: mask mIoU, the filter's precision and recall. Exit 2 on a problem.",
        epilog=examples("mcie audit out/demo", "mcie audit out/demo --json | jq .ok"),
    )
    a.add_argument("inp", metavar="BUILD", help="output directory of mcie build or mcie shard")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(run=run_audit)

    v = sub.add_parser(
        "preview",
        help="contact sheet PNG: samples with each sub-edit's mask outlined",
        description="A contact sheet of a build's samples: source | target with each sub-edit's\n"
        "mask outlined in its own colour, and the instruction underneath.",
        epilog=examples("mcie preview out/demo", "mcie preview out/demo --rejected --n 8 --out rejected.png"),
    )
    v.add_argument("inp", metavar="BUILD", help="output directory of mcie build or mcie shard")
    v.add_argument("--out", default=None, help="PNG file to write (default BUILD/preview.png)")
    renamed_option(v, "--png", "--out", "out")
    v.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    v.add_argument("--rejected", action="store_true", help="show rejected samples instead of accepted ones")
    v.set_defaults(run=run_preview)

    r = sub.add_parser(
        "reasons",
        help="list the reason codes",
        description="List the reason codes of rejected and failed samples (the index's reason column).",
        epilog=examples("mcie reasons"),
    )
    r.set_defaults(run=run_reasons)


def run_audit(args: argparse.Namespace) -> int:
    """``mcie audit BUILD``: exit 2 when the audit finds a problem."""
    from mcie.audit import audit, format_report

    storage.require_folder(args.inp)
    report = audit(args.inp)
    print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
    return ExitCode.OK if report["ok"] else ExitCode.FAILED


def run_preview(args: argparse.Namespace) -> int:
    """``mcie preview BUILD``."""
    from mcie.preview import write_preview
    from mcie.shards import ShardError
    from mcie.validate import SampleError

    storage.require_folder(args.inp)
    check_min(args, n=1)
    try:
        path = write_preview(args.inp, args.out, args.n, REJECTED_DIR if args.rejected else SHARDS_DIR)
    except (ShardError, SampleError):
        raise  # damaged data: the run failed (exit 2), naming shard and key
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"wrote {path}")
    return ExitCode.OK


def run_reasons(args: argparse.Namespace) -> int:
    """``mcie reasons``: every reason code with its description."""
    from mcie.reasons import DESCRIPTIONS

    for r, d in DESCRIPTIONS.items():
        print(f"{r.value:24s} {d}")
    return ExitCode.OK

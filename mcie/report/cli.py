"""``mcie report OUT [--out FILE]``: the build's HTML report (argument definitions and run)."""

from __future__ import annotations

import argparse
import json
import sys

from mcie import storage
from mcie.cliargs import examples
from mcie.exitcodes import ExitCode, UsageError


def add_parsers(sub) -> None:
    """Register ``mcie report``."""
    r = sub.add_parser(
        "report",
        help="one static HTML page about a build: counts, score histograms, audit, sample gallery",
        description="Write one self-contained HTML page (no server, no internet: images and scripts\n"
        "inline) about a build: counts by status and reason, judge-score and background-metric\n"
        "histograms, the audit against truth.parquet when present, and a filterable, paged gallery\n"
        "of samples with their masks.",
        epilog=examples("mcie report out/demo", "mcie report out/demo --no-audit --out /tmp/demo.html"),
    )
    r.add_argument(
        "inp", metavar="BUILD", help="output directory of mcie build or mcie shard (local, gs:// or s3://)"
    )
    r.add_argument("--out", default=None, metavar="FILE", help="page to write (default BUILD/report.html)")
    r.add_argument(
        "--per-group",
        type=int,
        default=12,
        help="gallery samples per (status, reason, sub-edit count) group (default 12)",
    )
    r.add_argument("--max-items", type=int, default=480, help="gallery samples in all (default 480)")
    r.add_argument(
        "--thumb",
        type=int,
        default=256,
        help="pictures up to this size (long side, pixels) are embedded at full resolution, "
        "larger ones shrunk to it (default 256)",
    )
    r.add_argument(
        "--no-audit",
        action="store_true",
        help="leave out the audit against truth.parquet (it reads every sample: most of the time)",
    )
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mcie report``; returns the exit code."""
    from mcie.report.dataset import GalleryConfig, write_build_report

    storage.require_folder(args.inp)
    try:
        config = GalleryConfig(per_group=args.per_group, max_items=args.max_items, thumb=args.thumb)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    s = write_build_report(
        args.inp,
        args.out,
        config,
        with_audit=not args.no_audit,
        progress=lambda line: print(f"[report] {line}", file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(s, sort_keys=True))
    else:
        print(
            f"wrote {s['path']} ({s['bytes'] / 1e6:.2f} MB): {s['candidates']} candidates, "
            f"{s['gallery_items']} in the gallery, {s['seconds']} s"
        )
        for p in s["problems"][:20]:
            print(f"  problem: {p}")
    return ExitCode.OK

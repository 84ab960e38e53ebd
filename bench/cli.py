"""``mcie bench build | run | compare``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

from mcie import storage
from mcie.cliargs import check_min, examples, input_argument
from mcie.exitcodes import ExitCode, UsageError


def add_parsers(sub) -> None:
    """Register ``mcie bench`` and its subcommands."""
    b = sub.add_parser(
        "bench",
        help="CIE-Bench: build benchmark sets, run editors, compare runs",
        description="CIE-Bench: build benchmark sets, run an editor over them, compare runs.",
        epilog=examples(
            "mcie bench build --out bench/ --sets 400",
            "mcie bench run bench/ --editor oracle --out runs/oracle",
            "mcie bench compare runs/oracle runs/corrupt --out runs/compare",
        ),
    )
    bs = b.add_subparsers(dest="bench_command", required=True, parser_class=type(b), metavar="COMMAND")
    for add in (_add_build, _add_train_set, _add_run, _add_compare, _add_report):
        add(bs)


def _add_build(bs) -> None:
    g = bs.add_parser(
        "build",
        help="write benchmark sets",
        description="Write a benchmark: synthetic sets stratified by number of sub-instructions and\n"
        "edit type, or (given BUILD) held-out sets from a build's accepted samples, split by source\n"
        "image; `mcie ls shard BUILD --out TRAIN --exclude-bench OUT` then writes training shards\n"
        "without them.",
        epilog=examples(
            "mcie bench build --out bench/ --sets 400",
            "mcie bench build out/reviewed --out bench-real/ --holdout 0.1 --train-shards 'train/*.tar'",
        ),
    )
    input_argument(
        g,
        "inp",
        "BUILD",
        "held-out sets from the accepted samples of this build folder (default: synthetic sets)",
        aliases=("--from",),
        required=False,
    )
    g.add_argument("--out", required=True, help="benchmark directory to write")
    g.add_argument("--sets", type=int, default=400, help="synthetic sets (default 400, stratified)")
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic sets")
    g.add_argument(
        "--image-size", type=int, default=256, help="image side of synthetic sets (render size), 32-1024"
    )
    _generator_options(g)
    g.add_argument(
        "--overwrite", action="store_true", help="replace a benchmark already in --out (refused otherwise)"
    )
    g.add_argument("--holdout", type=float, default=0.1, help="share of source images held out from BUILD")
    g.add_argument(
        "--train-shards",
        action="append",
        default=[],
        metavar="GLOB",
        help="refuse the benchmark if its source images appear in these training shards, repeatable "
        "(default: no check)",
    )
    g.set_defaults(run=run_build)


def _add_train_set(bs) -> None:
    ts = bs.add_parser(
        "train-set",
        help="deprecated: a clean `mcie build --task ... --failure-rate 0 --lossless`",
        description="Deprecated alias: training sets are MCIE builds. This runs\n"
        "`mcie build --task T --image-size S --samples N --seed K --failure-rate 0 --lossless`\n"
        "(no injected failures; annotate, judge, filter, index and card as every build); train on\n"
        "OUT/shards/*.tar. Build seeds never meet the benchmark's seed space.",
        epilog=examples(
            "mcie build --out train/mini --task mini --image-size 32 --samples 6000 --lossless",
            "mcie bench train-set --out train/mini --task mini --samples 6000 --image-size 32",
        ),
    )
    ts.add_argument("--out", required=True, help="directory to write (shards/*.tar)")
    ts.add_argument("--samples", type=int, default=4000, help="samples (default 4000)")
    ts.add_argument("--seed", type=int, default=0, help="seed (benchmark sets use a separate seed space)")
    ts.add_argument("--image-size", type=int, default=32, help="render size (default 32)")
    ts.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    _generator_options(ts)
    ts.set_defaults(run=run_train_set)


def _add_run(bs) -> None:
    r = bs.add_parser(
        "run",
        help="run an editor over a benchmark",
        description="Run an editor over a benchmark and score it: instruction compliance,\n"
        "background consistency, MagicBrush metrics; summary.json/.md/.csv, charts, a contact sheet.",
        epilog=examples(
            "mcie bench run bench/ --editor oracle --out runs/oracle",
            "mcie bench run bench/ --editor corrupt:0.5 --out runs/corrupt --limit 40",
            "mcie bench run bench/ --editor mcie-e1:run/checkpoint-50 --out runs/e1 --steps 20",
        ),
    )
    input_argument(r, "inp", "BENCH", "benchmark directory (from mcie bench build)", aliases=("--bench",))
    r.add_argument(
        "--editor",
        required=True,
        help="identity | oracle | corrupt[:RATE] (RATE in [0, 1]) | instruct-pix2pix:DIR | mcie-e1:CKPT",
    )
    r.add_argument("--out", required=True, help="run directory to write")
    r.add_argument("--limit", type=int, default=None, help="only the first N sets (default: all)")
    r.add_argument(
        "--decomposition",
        default="none",
        choices=["none", "oracle"],
        help="give editors the sub-instructions and regions (oracle) or only the instruction",
    )
    r.add_argument("--seed", type=int, default=0, help="seed for stochastic editors")
    r.add_argument("--device", default="cpu", help="torch device for model editors")
    r.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps of diffusion editors (default: MCIE-E1 the checkpoint's, 20 otherwise)",
    )
    r.add_argument("--guidance-scale", type=float, default=None, help="text guidance (default: the editor's)")
    r.add_argument(
        "--image-guidance-scale", type=float, default=None, help="image guidance (default: the editor's)"
    )
    r.add_argument(
        "--average",
        type=int,
        default=None,
        help="MCIE-E1: draw K samples per set and score their mean (default: the checkpoint's: 1; 8 for "
        "tiny-pixel)",
    )
    r.add_argument(
        "--scheduler",
        default=None,
        choices=["euler_a", "ddim"],
        help="MCIE-E1 sampler (default: the checkpoint's: euler_a; ddim for tiny-pixel)",
    )
    r.add_argument(
        "--judge",
        default=None,
        metavar="MODELS_YAML",
        help="models file whose VLM judge checks compliance on real sets (needed there) and is recorded "
        "beside the pixel judge on synthetic ones (default: none; synthetic sets are checked by the "
        "build's pixel judge, the exact checker reported beside it as ic_exact)",
    )
    r.add_argument(
        "--colour-offset-tol",
        type=float,
        default=None,
        metavar="LEVELS",
        help="the pixel judge fails a colour whose pixels sit, by their median, more than this many "
        "levels off it (default 6, the build's rule for exactly painted renders; an editor's outputs "
        "are never exact: see benchmarks/notes/judge.md for what 12 costs and gives)",
    )
    r.add_argument(
        "--clip", default=None, help="local CLIP model directory: adds CLIP-I and CLIP-T (default: none)"
    )
    r.add_argument(
        "--dino", default=None, help="local DINO/DINOv2 model directory: adds DINO similarity (default: none)"
    )
    r.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (a bar on a terminal; into a pipe or log, plain lines with an ETA on stderr)",
    )
    r.set_defaults(run=run_run)


def _add_compare(bs) -> None:
    c = bs.add_parser(
        "compare",
        help="compare runs: tables, charts and an HTML page with confidence intervals",
        description="Compare several `mcie bench run` folders: comparison.md/.csv and an HTML page\n"
        "with charts, breakdowns and bootstrap confidence intervals.",
        epilog=examples("mcie bench compare runs/* --out runs/compare"),
    )
    c.add_argument("inp", nargs="+", metavar="RUN", help="run directories")
    c.add_argument("--out", required=True, help="where to write comparison.md/.csv/.html")
    c.set_defaults(run=run_compare)


def _add_report(bs) -> None:
    rp = bs.add_parser(
        "report",
        help="(re)write a run's static HTML page (report.html)",
        description="Write one self-contained HTML page for a bench run: figures with 95%% bootstrap\n"
        "intervals, breakdowns by number of sub-instructions and edit type, charts, and a gallery of sets.",
        epilog=examples("mcie bench report runs/oracle", "mcie bench report runs/oracle --out oracle.html"),
    )
    rp.add_argument("inp", metavar="RUN", help="run directory of mcie bench run")
    rp.add_argument("--out", default=None, metavar="FILE", help="page to write (default RUN/report.html)")
    rp.set_defaults(run=run_report)


#: the editors `--editor` names (their specs: see :func:`mcie.bench.editors.make_editor`)
EDITOR_NAMES = ("identity", "oracle", "corrupt", "instruct-pix2pix", "mcie-e1")


def check_editor_spec(text: str) -> None:
    """``--editor``: a known name, a RATE in [0, 1], a path where one is needed; checked before
    anything is loaded or written (a bad spec is a usage error, exit 1)."""
    name, _, arg = text.partition(":")
    if name not in EDITOR_NAMES:
        raise UsageError(
            f"unknown editor {text!r}; allowed: identity, oracle, corrupt[:RATE], "
            "instruct-pix2pix:DIR, mcie-e1:CKPT"
        )
    if name == "corrupt" and arg:
        try:
            rate = float(arg)
        except ValueError:
            raise UsageError(f"corrupt:RATE needs a number, got {arg!r}") from None
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"corrupt:RATE is a failure rate in [0, 1], got {rate:g}")
    if name in ("instruct-pix2pix", "mcie-e1"):
        if not arg:
            raise UsageError(f"{name} needs a folder: {name}:DIR")
        if not storage.is_remote(arg) and not os.path.exists(arg):
            raise UsageError(f"--editor {text}: no such folder {arg!r}")


def _generator_options(g) -> None:
    g.add_argument(
        "--task",
        default=None,
        choices=["mini", "mini-3", "full"],
        help="task-ladder rung of the synthetic generator (default full: the demo mix)",
    )
    g.add_argument("--edit-types", default=None, help="comma-separated edit types (default: the task's)")
    g.add_argument(
        "--min-edits", type=int, default=None, help="fewest sub-edits per sample (default: the task's)"
    )
    g.add_argument(
        "--max-edits", type=int, default=None, help="most sub-edits per sample (default: the task's)"
    )
    g.add_argument(
        "--object-scale", type=float, default=None, help="multiplies object radii (default: the task's)"
    )


def _synthetic_config(args):
    from .sets import synthetic_config

    types = [t.strip() for t in args.edit_types.split(",") if t.strip()] if args.edit_types else None
    return synthetic_config(
        args.image_size, args.task, types, args.min_edits, args.max_edits, args.object_scale
    )


BENCH_FILES = ("bench.parquet", "bench.json")


def _build(args: argparse.Namespace, sets) -> dict:
    """Build into a staging folder beside ``--out``, check it, then move it in: a folder that
    already holds a benchmark is refused (``--overwrite`` replaces it), and a benchmark refused
    by a later check leaves the old one, and no new folder, behind."""
    if any(os.path.exists(os.path.join(args.out, n)) for n in BENCH_FILES) and not args.overwrite:
        raise UsageError(f"{args.out!r} already holds a benchmark; pick a new directory or pass --overwrite")
    parent, name = os.path.split(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent)
    try:
        if args.inp:
            manifest = sets.build_from_output(stage, args.inp, args.holdout)
        else:
            manifest = sets.build_synthetic(
                stage, args.sets, args.seed, args.image_size, config=_synthetic_config(args)
            )
        if args.train_shards:
            sets.check_no_overlap(stage, args.train_shards)
        os.makedirs(args.out, exist_ok=True)
        for n in BENCH_FILES:  # the manifest last: a benchmark is whole once bench.json is there
            os.replace(os.path.join(stage, n), os.path.join(args.out, n))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def run_build(args: argparse.Namespace) -> int:
    """``mcie bench build``."""
    from . import sets

    storage.check_folder(args.out)  # a file there is a usage error (exit 1), not exit 2 later
    check_min(args, sets=1)
    print(json.dumps(_build(args, sets), sort_keys=True))
    return ExitCode.OK


def run_train_set(args: argparse.Namespace) -> int:
    """``mcie bench train-set`` (deprecated): a clean MCIE build of the rung."""
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.pipeline.build import run_build as run_mcie_build
    from mcie.pipeline.options import BuildOptions
    from mcie.transforms.synthetic.ladder import ladder_config

    storage.check_folder(args.out)
    check_min(args, samples=1, shard_size=1)
    print(
        "mcie bench train-set is deprecated: it runs `mcie build --task ... --failure-rate 0 --lossless`"
        f" into {args.out} (train on {os.path.join(args.out, 'shards', '*.tar')})",
        file=sys.stderr,
    )
    types = [t.strip() for t in args.edit_types.split(",") if t.strip()] if args.edit_types else None
    try:
        synthetic = ladder_config(
            args.task, args.image_size, edit_types=types, min_edits=args.min_edits,
            max_edits=args.max_edits, object_scale=args.object_scale, failure_rate=0.0,
        )  # fmt: skip
        backend = SyntheticBackend(samples=args.samples, seed=args.seed, synthetic=synthetic)
        opts = BuildOptions(out=args.out, backend=backend, shard_size=args.shard_size, lossless=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    s = run_mcie_build(opts)
    print(f"candidates: {s['candidates']}  " + "  ".join(f"{k}: {v}" for k, v in s["by_status"].items()))
    return ExitCode.OK


def run_run(args: argparse.Namespace) -> int:
    """``mcie bench run``."""
    from . import run as bench_run

    storage.check_folder(args.out)
    check_min(args, limit=1, steps=1, average=1)
    check_editor_spec(args.editor)
    if args.clip or args.dino or not args.editor.startswith(("identity", "oracle", "corrupt")):
        from mcie import extras

        extras.require("model", "mcie bench run with a model editor, --clip or --dino")
    if not args.editor.startswith(("identity", "oracle", "corrupt")):
        from mcie.threads import set_torch_threads

        set_torch_threads()  # model editors: not one thread per core (mcie.threads)
    sampling = {
        k: v
        for k, v in (
            ("guidance_scale", args.guidance_scale),
            ("image_guidance_scale", args.image_guidance_scale),
            ("scheduler", args.scheduler),
            ("average", args.average),
        )
        if v is not None
    }
    s = bench_run.run_bench(
        args.inp,
        args.editor,
        args.out,
        args.limit,
        args.decomposition,
        args.seed,
        args.device,
        args.clip,
        args.dino,
        args.steps,
        args.judge,
        sampling=sampling,
        colour_offset_tol=args.colour_offset_tol,
    )
    print(json.dumps({k: s[k] for k in ("editor", "sets", *bench_run.SUMMARY_KEYS)}, sort_keys=True))
    return ExitCode.OK


def run_report(args: argparse.Namespace) -> int:
    """``mcie bench report``."""
    from .report import write_run_html

    print(f"wrote {write_run_html(args.inp, args.out)}")
    return ExitCode.OK


def run_compare(args: argparse.Namespace) -> int:
    """``mcie bench compare``."""
    from .report import compare

    storage.check_folder(args.out)
    md = compare(args.inp, args.out)
    print(f"wrote {md} and {os.path.join(args.out, 'comparison.html')}")
    return ExitCode.OK

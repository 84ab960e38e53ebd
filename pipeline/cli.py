"""``mcie build``, the stage commands (``generate | annotate | score | shard``) and ``mcie models``.

Each command registers its run function (``set_defaults(run=...)``) and builds its
:class:`~mcie.pipeline.options.BuildOptions` in that one function: the raw namespace stops
there. :mod:`mcie.cli` registers these parsers and dispatches; this module never imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from mcie import storage
from mcie.cliargs import DeprecatedAlias, examples, input_argument, renamed_option
from mcie.exitcodes import ExitCode, UsageError
from mcie.layout import DEFAULT_SHARD_SIZE

#: named build sizes; explicit --samples / --shard-size win over them
PRESETS = {
    "demo": {"samples": 1200, "shard_size": 200},
    "mcie": {"samples": 90000, "shard_size": 1000},  # the paper's ~90k; 90 shards of 1,000
}
DEFAULT_SIZE = {"samples": 1000, "shard_size": DEFAULT_SHARD_SIZE}
#: with --models a unit is a list of input files: fewer per shard, a model batch each
MODELS_SHARD_SIZE = 64


# -- the parsers ---------------------------------------------------------------------------------


def add_parsers(sub) -> None:
    """Register ``build``, ``generate``, ``annotate``, ``score``, ``shard`` and ``models``."""
    _add_build(sub)
    _add_generate(sub)
    for name in ("annotate", "score"):
        _add_map_stage(sub, name)
    _add_shard(sub)
    _add_models(sub)


def _add_build(sub) -> None:
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
    _add_models_args(b)
    b.set_defaults(run=run_build_command)


def _add_generate(sub) -> None:
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
    _add_models_args(g)
    g.set_defaults(run=run_generate_command)


_MAP_STAGES = {
    "annotate": ("stage 2 alone: masks for a record table", "mcie annotate t/gen --out t/ann"),
    "score": (
        "stage 3 alone: judge and filter a record table",
        "mcie score t/ann --out t/scored --bg-psnr-min 35",
    ),
}


def _add_map_stage(sub, name: str) -> None:
    text, example = _MAP_STAGES[name]
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
    s.set_defaults(run=run_annotate_command if name == "annotate" else run_score_command)


def _add_shard(sub) -> None:
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
    s.set_defaults(run=run_shard_command)


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
        help="Beam runner: FnApiRunner (default), dask (Beam's Dask runner: a local cluster of "
        "--workers processes, or --dask-address), DataflowRunner",
    )
    g.add_argument(
        "--dask-address",
        default=None,
        metavar="URL",
        help="--runner dask: the scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 "
        "(default: a local cluster started for the run)",
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
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="--runner DataflowRunner: build the job graph and print its steps, staged files and "
        "worker image; submit nothing, contact nothing",
    )
    g.add_argument("--debug-exit-after-units", type=int, default=None, help=argparse.SUPPRESS)


def _add_synthetic_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("synthetic source")
    g.add_argument(
        "--size",
        dest="preset",
        choices=sorted(PRESETS),
        default=None,
        help="named size: demo (1,200 candidates) or mcie (the ~90k MCIE set); --samples and "
        f"--shard-size override it (default: 1000 candidates, {DEFAULT_SHARD_SIZE} per shard)",
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
        help=f"candidates per unit of work and per shard (default {DEFAULT_SHARD_SIZE})",
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
        "--failure-magnitude",
        choices=("standard", "subtle"),
        default="standard",
        help="how strong injected failures are: standard (gross: hue 20-45 deg, 30-70%% done, "
        "drift 8-16 levels) or subtle (hue 10-22 deg, 65-85%% done, drift 4-8 levels, wrong "
        "object of the same colour family) (default standard)",
    )
    g.add_argument(
        "--task",
        default=None,
        choices=["mini", "mini-3", "full"],
        help="task-ladder rung (objects, edit types, sub-edits per instruction, object size): mini "
        "(2 recolours), mini-3 (2-3 of add/remove/recolour), full (the demo mix; the default)",
    )
    g.add_argument(
        "--min-edits", type=int, default=None, help="fewest sub-edits per instruction (default: the task's)"
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


#: the help of each ``FilterThresholds`` field's flag (``--min-compliance`` for ``min_compliance``)
_THRESHOLD_HELP = {
    "min_compliance": "reject below this share of executed sub-instructions",
    "bg_ssim_min": "reject below this background SSIM",
    "bg_psnr_min": "reject below this background PSNR in dB",
    "bg_l1_max": "reject above this background L1",
    "bg_changed_max": "reject above this share of visibly changed background pixels",
    "bg_faint_max": "reject above this share of background, away from every mask, moved > 8 levels",
    "min_sub_score": "a sub-edit passes on its compliance score >= this instead of the judge's verdict",
}


def _add_threshold_args(p: argparse.ArgumentParser) -> None:
    from mcie.transforms.judge import FilterThresholds

    g = p.add_argument_group("filter thresholds")
    g.add_argument(
        "--thresholds",
        default=None,
        metavar="FILE",
        help="thresholds file (JSON, as `mcie calibrate` writes); replaces the flags below "
        "(default: none, the flags decide)",
    )
    for f in dataclasses.fields(FilterThresholds):
        flag = "--" + f.name.replace("_", "-")
        g.add_argument(
            flag, type=float, default=f.default, help=f"{_THRESHOLD_HELP[f.name]} (default {f.default})"
        )


def _add_models_args(b: argparse.ArgumentParser) -> None:
    g = b.add_argument_group("real models (instead of the synthetic generator)")
    g.add_argument(
        "--models",
        metavar="YAML",
        default=None,
        help="models file naming, per stage, a hub name or local dir (see `mcie models tiny`); "
        "runs the real-model pipeline: VLM plan, detector+SAM ground, inpaint edit, VLM judge "
        "(default: none, the synthetic generator)",
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


def _add_models(sub) -> None:
    m = sub.add_parser(
        "models",
        help="model utilities for the real-model pipeline",
        description="Model utilities for the real-model pipeline (`mcie build --models`).",
        epilog=examples("mcie models tiny --out /tmp/tiny"),
    )
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=type(m), metavar="COMMAND")
    t = msub.add_parser(
        "tiny",
        help="write tiny random-weight models and OUT/models.yaml (offline)",
        description="Write tiny random-weight models (LLaVA planner and judge, OWLv2, SAM, SD\n"
        "inpainting, InstructPix2Pix) and OUT/models.yaml, offline: for tests and trials.",
        epilog=examples(
            "mcie models tiny --out /tmp/tiny",
            "mcie build --models /tmp/tiny/models.yaml --out /tmp/real --image-size 64 --shard-size 4 "
            "--max-failed-fraction 1",
        ),
    )
    t.add_argument("--out", default=None, help="folder to write (created; no default: required)")
    # the output was once the positional DIR: still accepted, with a note
    t.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        action=DeprecatedAlias,
        instead="use --out DIR",
        default=None,
        help="deprecated spelling of --out",
    )
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    t.set_defaults(run=run_models_tiny)


# -- options: the namespace stops here ---------------------------------------------------------------


def _usage_errors(make: Callable[[], Any]) -> Any:
    """``make()``, with a ValueError (an option out of range) as a usage error (exit 1)."""
    try:
        return make()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_options(args: argparse.Namespace):
    """The ``running`` group's :class:`~mcie.pipeline.options.RunOptions`."""
    from mcie.pipeline.options import RunOptions

    return RunOptions(
        workers=args.workers,
        runner=args.runner,
        dask_address=args.dask_address,
        error_policy=args.error_policy,
        max_failed_fraction=args.max_failed_fraction,
        beam_args=tuple(args.beam_arg),
        exit_after_units=args.debug_exit_after_units,
        progress=not args.no_progress,
        dry_run=args.dry_run,
    )


def thresholds(args: argparse.Namespace):
    """The ``filter thresholds`` group's :class:`~mcie.transforms.judge.FilterThresholds`."""
    from mcie.transforms.judge import FilterThresholds

    if args.thresholds:
        return FilterThresholds.from_file(args.thresholds)
    return FilterThresholds(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FilterThresholds)})


def _edit_types(spec: str | None) -> list[str] | None:
    """``--edit-types`` as a list (None: the task's types)."""
    return None if spec is None else [t.strip() for t in spec.split(",") if t.strip()]


def _size(args: argparse.Namespace) -> dict[str, int]:
    return {**DEFAULT_SIZE, **PRESETS.get(args.preset or "", {})}


def _shard_size(args: argparse.Namespace) -> int:
    if args.shard_size is not None:
        return args.shard_size
    return MODELS_SHARD_SIZE if args.models else _size(args)["shard_size"]


def _source_backend(args: argparse.Namespace):
    """The backend of ``build`` and ``generate``: ``--models`` picks the real models, else the
    synthetic scenes."""
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.transforms.synthetic.ladder import ladder_config

    if args.images and not args.models:
        raise UsageError("--images needs --models (the synthetic generator makes its own images)")
    if args.models:
        return models_backend(args.models, resolve_inputs(args.images), args.image_size, args.accelerator)
    return SyntheticBackend(
        samples=args.samples if args.samples is not None else _size(args)["samples"],
        seed=args.seed,
        synthetic=ladder_config(
            args.task,
            args.image_size,
            edit_types=_edit_types(args.edit_types),
            min_edits=args.min_edits,
            max_edits=args.max_edits,
            object_scale=args.object_scale,
            failure_rate=args.failure_rate,
            failure_magnitude=args.failure_magnitude,
        ),
    )


def _table_backend(args: argparse.Namespace, runs_steps: bool = True):
    """The backend of a stage command over the table ``args.inp``: the one that made the table
    (its run.json); ``mcie shard`` runs no step and needs none."""
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.pipeline.stages import table_meta, table_units

    table_units(args.inp)  # a missing or foreign table is a usage error
    meta = table_meta(args.inp)
    if runs_steps and meta.get("generator") == "real-models":
        return models_backend(args.models or meta.get("models_file"))
    return SyntheticBackend()


def models_backend(
    models: str, inputs: tuple[str, ...] = (), image_size: int | None = None, accelerator=None
):
    """The :class:`~mcie.pipeline.backends.ModelsBackend` of a models file, its input files and
    (``--image-size``) the short side images are resized to."""
    from mcie import extras

    # the stages' models, models.yaml (pyyaml) and the VLM's constrained output (regex)
    extras.require("model", "--models", [*extras.EXTRAS["model"], "yaml", "regex"])
    from mcie.pipeline.backends import DEFAULT_ACCELERATOR, ModelsBackend
    from mcie.transforms.sources.images import ImageSourceConfig

    source = ImageSourceConfig(short_side=image_size, min_side=min(32, image_size)) if image_size else None
    return ModelsBackend(
        models=models,
        inputs=inputs,
        source_config=source or ImageSourceConfig(),
        accelerator=accelerator or DEFAULT_ACCELERATOR,
    )


def resolve_inputs(spec: str | None) -> tuple[str, ...]:
    """The sorted input files of ``--images`` (default: the bundled sample photographs)."""
    from mcie.transforms.sources.images import list_inputs, sample_photo_paths

    return tuple(list_inputs(spec) if spec else sample_photo_paths())


def build_options(args: argparse.Namespace):
    """``mcie build``'s :class:`~mcie.pipeline.options.BuildOptions`."""
    from mcie.pipeline.options import BuildOptions

    return _usage_errors(
        lambda: BuildOptions(
            out=args.out,
            resume=args.resume,
            run=run_options(args),
            backend=_source_backend(args),
            shard_size=_shard_size(args),
            thresholds=thresholds(args),
            lossless=args.lossless,
        )
    )


# -- running -------------------------------------------------------------------------------------


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


def _finish(args: argparse.Namespace, opts, summary: dict[str, Any]) -> int:
    """Print the summary; exit 2 when more candidates failed than the run allows."""
    from mcie.pipeline.runner import check_failures

    if summary.get("dry_run"):
        from mcie.pipeline.dataflow import format_plan

        print(json.dumps(summary, sort_keys=True) if args.json else format_plan(summary))
        return ExitCode.OK
    print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
    check_failures(summary, opts.run)
    return ExitCode.OK


def run_build_command(args: argparse.Namespace) -> int:
    """``mcie build``."""
    from mcie.pipeline.build import run_build

    opts = build_options(args)
    return _finish(args, opts, run_build(opts))


def run_generate_command(args: argparse.Namespace) -> int:
    """``mcie generate``."""
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.stages import run_generate

    opts = _usage_errors(
        lambda: BuildOptions(
            out=args.out,
            resume=args.resume,
            run=run_options(args),
            backend=_source_backend(args),
            shard_size=_shard_size(args),
        )
    )
    return _finish(args, opts, run_generate(opts))


def run_annotate_command(args: argparse.Namespace) -> int:
    """``mcie annotate``."""
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.stages import run_map_stage

    opts = _usage_errors(
        lambda: BuildOptions(
            out=args.out, resume=args.resume, run=run_options(args), backend=_table_backend(args)
        )
    )
    return _finish(args, opts, run_map_stage("annotate", args.inp, opts))


def run_score_command(args: argparse.Namespace) -> int:
    """``mcie score``."""
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.stages import run_map_stage

    opts = _usage_errors(
        lambda: BuildOptions(
            out=args.out,
            resume=args.resume,
            run=run_options(args),
            backend=_table_backend(args),
            thresholds=thresholds(args),
        )
    )
    return _finish(args, opts, run_map_stage("score", args.inp, opts))


def run_shard_command(args: argparse.Namespace) -> int:
    """``mcie shard``."""
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.stages import run_shard

    opts = _usage_errors(
        lambda: BuildOptions(
            out=args.out,
            resume=args.resume,
            run=run_options(args),
            backend=_table_backend(args, runs_steps=False),
            lossless=args.lossless,
        )
    )
    return _finish(args, opts, run_shard(args.inp, opts))


def run_models_tiny(args: argparse.Namespace) -> int:
    """``mcie models tiny``."""
    from mcie import extras

    extras.require("model", "mcie models tiny", [*extras.EXTRAS["model"], "yaml"])
    from mcie.transforms.models.tiny import write_tiny_models

    if (args.out is None) == (args.dir is None):
        raise UsageError("give the folder to write once: --out DIR")
    out = args.out or args.dir
    storage.check_folder(out)  # a file there: exit 1, not a FileExistsError later
    path = write_tiny_models(out, args.seed)
    print(f"wrote tiny models and {path}")
    return ExitCode.OK

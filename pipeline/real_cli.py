"""CLI glue for the real-model backend: the ``--models/--images`` options of ``mcie build`` and
``mcie generate``, and ``mcie models tiny DIR``. :mod:`mcie.cli` registers these and dispatches
here; this module never imports :mod:`mcie.cli` (no cycle)."""

from __future__ import annotations

import argparse

from mcie import storage
from mcie.cliargs import DeprecatedAlias, examples
from mcie.exitcodes import ExitCode, UsageError


def add_build_args(b: argparse.ArgumentParser) -> None:
    """The real-model options of ``mcie build``."""
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


def add_parsers(sub) -> None:
    """``mcie models ...``."""
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


def run(args: argparse.Namespace) -> int:
    """Run ``mcie models ...``."""
    if args.models_command == "tiny":
        from mcie.transforms.models.tiny import write_tiny_models

        if (args.out is None) == (args.dir is None):
            raise UsageError("give the folder to write once: --out DIR")
        out = args.out or args.dir
        storage.check_folder(out)  # a file there: exit 1, not a FileExistsError later
        path = write_tiny_models(out, args.seed)
        print(f"wrote tiny models and {path}")
        return ExitCode.OK
    raise UsageError(f"unknown models command {args.models_command!r}")


def models_backend(args: argparse.Namespace, models: str | None = None):
    """The :class:`~mcie.pipeline.backends.ModelsBackend` of ``mcie build|generate --models``
    arguments (``models`` overrides ``--models``: a stage command reads it from its table)."""
    from mcie.pipeline.backends import DEFAULT_ACCELERATOR, ModelsBackend
    from mcie.transforms.sources.images import ImageSourceConfig

    images = getattr(args, "images", None)
    size = getattr(args, "image_size", None)
    try:
        return ModelsBackend(
            models=models or args.models,
            inputs=resolve_inputs(images) if hasattr(args, "images") else (),
            source_config=ImageSourceConfig(short_side=size, min_side=min(32, size))
            if size
            else ImageSourceConfig(),
            accelerator=getattr(args, "accelerator", None) or DEFAULT_ACCELERATOR,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def resolve_inputs(spec: str | None) -> tuple[str, ...]:
    """The sorted input files of ``--images`` (default: the bundled sample photographs)."""
    from mcie.transforms.sources.images import list_inputs, sample_photo_paths

    return tuple(list_inputs(spec) if spec else sample_photo_paths())


__all__ = ["add_build_args", "add_parsers", "run", "models_backend", "resolve_inputs"]

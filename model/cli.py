"""``mcie train`` and ``mcie edit``: the MCIE-E1 subcommands (registered by :mod:`mcie.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mcie.cliargs import examples, input_argument, renamed_option
from mcie.exitcodes import ExitCode, UsageError
from mcie.threads import THREADS_HELP, set_torch_threads

COMMANDS = ("train", "edit")


def add_parsers(sub) -> None:
    """Add the ``train`` and ``edit`` subcommands to ``mcie``'s subparsers."""
    t = sub.add_parser(
        "train",
        help="train MCIE-E1 on MCIE shards",
        description="Train MCIE-E1 (an InstructPix2Pix-style UNet with Spatial-Aware and\n"
        "Background-Consistent Cross-Attention) on MCIE shards; checkpoints in diffusers layout.",
        epilog=examples(
            "mcie train 'out/demo/shards/*.tar' --out ckpt/ --preset tiny --max-steps 50",
            "mcie train 'out/demo/shards/*.tar' --out run/ --preset tiny-pixel --max-steps 2000 --ema \\",
            "    --batch-size 8 --lr 2e-3 --threads 1 --validate-every 500",
            "mcie train 'out/demo/shards/*.tar' --out run/ --max-steps 4000 --resume",
        ),
    )
    input_argument(
        t, "shards", "SHARDS", "shard glob, e.g. 'out/demo/shards/*.tar' (quote it)", aliases=("--shards",)
    )
    t.add_argument("--out", required=True, help="run folder: checkpoints and log.jsonl")
    t.add_argument(
        "--preset",
        default="tiny",
        choices=["tiny", "tiny-pixel", "sd15"],
        help="model preset: tiny (CPU tests), tiny-pixel (pixel space, learns on a CPU), sd15",
    )
    t.add_argument("--max-steps", type=int, required=True, help="optimiser steps to reach")
    t.add_argument("--batch-size", type=int, default=4, help="samples per step and device (default 4)")
    t.add_argument("--grad-accum", type=int, default=1, help="batches accumulated per step (default 1)")
    t.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    t.add_argument(
        "--lr-schedule",
        default="constant",
        choices=["constant", "cosine", "linear"],
        help="learning rate over the run: constant, or decayed to 0 at --max-steps along a cosine or a "
        "line (default constant)",
    )
    t.add_argument(
        "--warmup-steps", type=int, default=0, help="steps of linear learning-rate warm-up (default 0)"
    )
    t.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 0.01)")
    t.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = off (default 1)")
    t.add_argument("--resolution", type=int, default=None, help="training image side (default: the preset's)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights, data order and noise (default 0)")
    t.add_argument(
        "--conditioning-dropout",
        type=float,
        default=0.05,
        help="InstructPix2Pix dropout p: text p, image p, both p (default 0.05)",
    )
    t.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)"
    )
    t.add_argument(
        "--keep-checkpoints", type=int, default=3, help="checkpoints kept, oldest removed (default 3)"
    )
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--no-saca", action="store_true", help="ablation: no Spatial-Aware Cross-Attention")
    t.add_argument(
        "--no-bcca", action="store_true", help="ablation: no Background-Consistent Cross-Attention"
    )
    t.add_argument(
        "--train-text-encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train the text encoder too (default: the preset's choice; on for tiny-pixel only)",
    )
    t.add_argument(
        "--gate-init",
        type=float,
        default=None,
        help="initial SACA/BCCA gate value (default 0: starts as the plain UNet, for fine-tuning a "
        "pretrained backbone; 1 for models trained from scratch)",
    )
    t.add_argument(
        "--gate-lr-mult",
        type=float,
        default=10.0,
        help="learning-rate multiplier of the SACA/BCCA gates and BCCA's new projections (default 10)",
    )
    t.add_argument(
        "--edit-loss-weight",
        type=float,
        default=0.0,
        help="extra loss weight inside the edit regions, normalised to mean 1 (default 0: plain MSE; "
        "4 helps small models, whose edit regions are a few %% of the pixels)",
    )
    t.add_argument(
        "--late-timestep-bias",
        type=float,
        default=1.0,
        help="draw training timesteps of the noisier half this many times as often as the other half "
        "(default 1: uniform; few-step sampling reads the model only there)",
    )
    t.add_argument(
        "--init-from",
        default=None,
        help="local SD1.5 / InstructPix2Pix folder to start from (default: random weights of the preset)",
    )
    t.add_argument(
        "--loader-workers",
        dest="workers",
        type=int,
        default=0,
        help="DataLoader worker processes (default 0: load in the training process)",
    )
    # `build --workers` counts Beam processes; a DataLoader's are --loader-workers
    renamed_option(t, "--workers", "--loader-workers", "workers", type=int)
    t.add_argument(
        "--shuffle-buffer", type=int, default=64, help="sample shuffle buffer, 0 = off (default 64)"
    )
    t.add_argument("--device", default="cpu", help="torch device (default cpu)")
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help=THREADS_HELP,
    )
    t.add_argument(
        "--mixed-precision",
        default="no",
        choices=["no", "bf16"],
        help="accelerate mixed precision: bf16 autocast, fp32 weights (default no)",
    )
    t.add_argument(
        "--ema", action="store_true", help="keep an EMA of the trained weights; checkpoints hold it"
    )
    t.add_argument(
        "--ema-decay",
        type=float,
        default=0.9999,
        help="EMA decay, warmed up as min(decay, (1+step)/(10+step)) (default 0.9999)",
    )
    t.add_argument(
        "--validate-every",
        type=int,
        default=0,
        help="steps between validation images and scores in OUT/validation, 0 = off (default 0)",
    )
    t.add_argument(
        "--validation-shards", default=None, help="shard glob of validation samples (default: SHARDS)"
    )
    t.add_argument(
        "--validation-samples", type=int, default=4, help="samples edited at each validation (default 4)"
    )
    t.add_argument(
        "--validation-steps", type=int, default=10, help="DDIM steps per validation edit (default 10)"
    )
    t.add_argument("--log-every", type=int, default=10, help="steps between log lines (default 10)")
    t.add_argument(
        "--log-keys",
        action="store_true",
        help="append each step's sample keys to OUT/keys-rank<r>.jsonl (audits the data split)",
    )
    t.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar and no step lines"
    )
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    e = sub.add_parser(
        "edit",
        help="edit an image with an MCIE-E1 checkpoint",
        description="Edit one image with an MCIE-E1 checkpoint following a complex instruction; the\n"
        "instruction is split into sub-instructions with regions (grammar, a VLM, or a JSON file).",
        epilog=examples(
            'mcie edit --checkpoint ckpt/checkpoint-50 --image photo.png --instruction "Make the red '
            'circle blue and remove the star." --out edited.png',
            'mcie edit --checkpoint run/ --image in.png --instruction "..." --decomposition subs.json '
            "--out out.png --masks-out masks/",
        ),
    )
    e.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, or a run folder (newest checkpoint)"
    )
    e.add_argument("--image", default=None, help="source image file (default: --from-shard's source)")
    e.add_argument("--instruction", default=None, help="the complex instruction (default: --from-shard's)")
    e.add_argument(
        "--from-shard",
        default=None,
        metavar="SHARD_OR_DIR",
        help="take the sub-instructions with their masks (and, by default, the image and the "
        "instruction) from a sample of MCIE shards: a .tar, a folder of them, or a build folder "
        "(default: none)",
    )
    e.add_argument("--key", default=None, help="--from-shard: the sample's key (default: the first sample)")
    e.add_argument(
        "--resolution",
        default="model",
        help="sampling size: 'model' (default: the shorter side at the checkpoint's training "
        "resolution, then resized back), 'native' (the image's own size) or a number of pixels",
    )
    e.add_argument("--out", required=True, help="edited image file to write (PNG recommended)")
    e.add_argument(
        "--decomposition",
        default=None,
        help="JSON file of sub-instructions with boxes/masks (default: --decomposer's)",
    )
    e.add_argument(
        "--decomposer",
        default=None,
        choices=["grammar", "mllm", "none"],
        help="without --decomposition: parse the synthetic grammar (default), ask the VLM of --vlm "
        "(mllm), or use none",
    )
    e.add_argument(
        "--vlm",
        default=None,
        metavar="DIR_OR_MODELS_YAML",
        help="--decomposer mllm: a local VLM folder, or a models file whose 'decomposer' "
        "(else 'planner') section names one (default: none)",
    )
    e.add_argument(
        "--vlm-retries",
        type=int,
        default=None,
        help="--decomposer mllm: sampled attempts after the greedy one (default: the models file's, else 2)",
    )
    e.add_argument(
        "--fallback",
        default="none",
        choices=["none", "grammar"],
        help="--decomposer mllm: when no attempt gives a valid decomposition, fail with exit 2 "
        "(none, default) or use the grammar decomposer",
    )
    e.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampling steps (default: the checkpoint's: 20; 2 for tiny-pixel)",
    )
    e.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="text guidance (default: the checkpoint's: 7.5; 1 for tiny-pixel)",
    )
    e.add_argument(
        "--image-guidance-scale",
        type=float,
        default=None,
        help="image guidance (default: the checkpoint's: 1.5; 1 for tiny-pixel)",
    )
    e.add_argument(
        "--average",
        type=int,
        default=None,
        help="draw K samples and write their mean (default: the checkpoint's: 1; 8 for tiny-pixel)",
    )
    e.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    e.add_argument(
        "--scheduler",
        default=None,
        choices=["euler_a", "ddim"],
        help="sampler (default: the checkpoint's: euler_a; ddim for tiny-pixel)",
    )
    e.add_argument(
        "--masks-out", default=None, help="folder to write the region masks used (mask{k}.png; default: none)"
    )
    e.add_argument("--no-saca", action="store_true", help="turn SACA off at inference")
    e.add_argument("--no-bcca", action="store_true", help="turn BCCA off at inference")
    e.add_argument("--device", default="cpu", help="torch device (default cpu)")
    e.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _check_train(args) -> None:
    for name in (
        "max_steps",
        "batch_size",
        "grad_accum",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
    ):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.workers < 0:
        raise UsageError(f"--loader-workers must be >= 0, got {args.workers}")
    if not 0 <= args.conditioning_dropout < 1 / 3:
        raise UsageError("--conditioning-dropout must be in [0, 1/3)")
    if args.gate_lr_mult <= 0 or args.edit_loss_weight < 0:
        raise UsageError("--gate-lr-mult must be > 0 and --edit-loss-weight >= 0")
    if not 0 <= args.ema_decay < 1:
        raise UsageError("--ema-decay must be in [0, 1)")
    if args.validate_every < 0:
        raise UsageError("--validate-every must be >= 0 (0 = off)")
    from mcie.managed import refuse_managed_output

    refuse_managed_output(args.out)  # checkpoints written into a build folder's own files
    for name in ("validation_samples", "validation_steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")


def run(args: argparse.Namespace) -> int:
    """Run ``mcie train`` or ``mcie edit``."""
    try:
        import torch  # noqa: F401  (the model extra: fail early with its name)
    except ImportError as exc:  # the model extra is optional
        raise UsageError("MCIE-E1 needs the model extra: pip install 'mcie[model]'") from exc
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    set_torch_threads(args.threads)
    if args.command == "train":
        from mcie.model.data import expand_shards
        from mcie.model.trainer import format_summary, train
        from mcie.shards import ShardError

        _check_train(args)
        try:
            expand_shards(args.shards)
            if args.validate_every and args.validation_shards:
                expand_shards(args.validation_shards)
            summary = train(args)
        except ShardError:
            raise  # a damaged shard fails the run (exit 2); it is not a usage error
        except (FileNotFoundError, FileExistsError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        if summary["process_index"] == 0:  # under `accelerate launch`, one summary for the run
            print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
        return ExitCode.OK
    return _edit(args)


def _edit(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from mcie.images import encode_png
    from mcie.model.decompose import shard_sample_decomposition
    from mcie.model.editor import MCIEEditor
    from mcie.model.infer import edit_image
    from mcie.model.trainer import resolve_checkpoint

    for flag, value in (("--steps", args.steps), ("--average", args.average)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1")
    if args.decomposition and args.decomposer:
        raise UsageError("give --decomposition FILE or --decomposer, not both")
    if (args.decomposer == "mllm") != (args.vlm is not None):
        raise UsageError(
            "--decomposer mllm needs --vlm DIR_OR_MODELS_YAML, and --vlm needs --decomposer mllm"
        )
    if args.decomposer != "mllm" and (args.vlm_retries is not None or args.fallback != "none"):
        raise UsageError("--vlm-retries and --fallback apply to --decomposer mllm only")
    if args.from_shard and (args.decomposition or args.decomposer):
        raise UsageError("--from-shard gives the decomposition: not with --decomposition or --decomposer")
    if args.key and not args.from_shard:
        raise UsageError("--key needs --from-shard")
    if not args.from_shard and (args.image is None or args.instruction is None):
        raise UsageError("give --image and --instruction, or --from-shard SHARD_OR_DIR [--key KEY]")
    resolution = _resolution(args.resolution)
    _check_image_out(args.out)  # before minutes of sampling, not after
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
        shard_image = decomposition = None
        if args.from_shard:
            key, shard_image, decomposition = shard_sample_decomposition(args.from_shard, args.key)
            args.instruction = args.instruction or decomposition.instruction
            print(f"sample {key} of {args.from_shard}: {len(decomposition.subs)} sub-instructions with masks")
        if args.image is not None:
            image = Image.open(args.image)
            image.load()
        else:
            image = Image.fromarray(shard_image)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    # a shard sample's masks are resized to the image being edited; else decompose the instruction
    decomposition = _masks_to_size(decomposition, image.size) if args.from_shard else _decompose(args, image)
    model = MCIEEditor.load(ckpt, saca=False if args.no_saca else None, bcca=False if args.no_bcca else None)
    model.to(torch.device(args.device))
    if resolution == "model":
        resolution = model.cfg.resolution
    out, regions = edit_image(
        model,
        image,
        args.instruction,
        decomposition,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        image_guidance_scale=args.image_guidance_scale,
        seed=args.seed,
        scheduler=args.scheduler,
        average=args.average,
        resolution=resolution,
        progress=args.progress,
    )
    sampled = out.size
    if out.size != image.size:  # sampled at the model's resolution: back to the input's size
        out = out.resize(image.size, Image.BICUBIC)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    out.save(args.out)
    if args.masks_out:
        os.makedirs(args.masks_out, exist_ok=True)
        for k, r in enumerate(regions):
            m = Image.fromarray((np.asarray(r) > 0).astype(np.uint8) * 255)
            m = np.asarray(m.resize(image.size, Image.NEAREST))  # the input's size, as the image
            with open(os.path.join(args.masks_out, f"mask{k}.png"), "wb") as fh:
                fh.write(encode_png(m))
    print(
        f"wrote {args.out} ({out.size[0]}x{out.size[1]}, sampled at {sampled[0]}x{sampled[1]}); "
        f"{len(regions)} regions used"
    )
    if len(regions) == 0:
        print(
            "mcie: note: no regions were used, so SACA and BCCA did not act: the grammar decomposer "
            "locates only 'add ... in the <cell>' sub-instructions; give --from-shard, "
            "--decomposition FILE or --decomposer mllm for regions",
            file=sys.stderr,
        )
    return ExitCode.OK


def _check_image_out(path: str) -> None:
    """``mcie edit --out`` must name an image file PIL can write (by its extension), not a
    folder: a usage error (exit 1) before any sampling."""
    from PIL import Image

    if os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a directory; give the image file to write (.png, .jpg)")
    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise UsageError(f"--out {path!r}: unknown image extension {ext or '(none)'!r}; use .png or .jpg")


def _resolution(value: str):
    """``--resolution``: 'model', 'native' (None) or a positive number of pixels."""
    if value in ("model", "native"):
        return None if value == "native" else value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"--resolution must be 'model', 'native' or a positive integer, got {value!r}")
    return n


def _masks_to_size(decomposition, size: tuple[int, int]):
    """A shard sample's masks at the size of the image being edited (nearest neighbour), for an
    --image of another size than the sample's source."""
    import numpy as np
    from PIL import Image

    for s in decomposition.subs:
        if s.mask is not None and s.mask.shape[::-1] != tuple(size):
            img = Image.fromarray(s.mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
            s.mask = np.asarray(img) > 0
    return decomposition


def _decompose(args, image):
    """The decomposition ``mcie edit`` uses: a JSON file, the grammar parser, the MLLM (with its
    retries, then exit 2 or ``--fallback grammar``), or none."""
    import numpy as np

    from mcie.exitcodes import RunFailed
    from mcie.model.decompose import DecompositionError, GrammarDecomposer, load_decomposition

    def grammar():
        try:
            return GrammarDecomposer().decompose(args.instruction, *image.size)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    if args.decomposition:
        try:
            return load_decomposition(args.decomposition)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    if args.decomposer == "none":
        return None
    if args.decomposer != "mllm":
        return grammar()
    from mcie.model.decompose_vlm import load_mllm_decomposer

    decomposer = load_mllm_decomposer(args.vlm, args.device, args.vlm_retries)
    try:
        d = decomposer.decompose(args.instruction, np.asarray(image.convert("RGB")))
    except DecompositionError as exc:
        if args.fallback != "grammar":
            raise RunFailed(f"--decomposer mllm: {exc}") from exc
        print(f"mcie: warning: --decomposer mllm: {exc}; using the grammar decomposer", file=sys.stderr)
        return grammar()
    located = sum(s.has_region for s in d.subs)
    print(f"decomposed by the VLM in {decomposer.attempts} attempt(s): {len(d.subs)} sub-instructions, "
          f"{located} with a box")  # fmt: skip
    return d

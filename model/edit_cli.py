"""``mcie edit``: its parser, its options object (:class:`EditOptions`, checked at construction)
and the run: decompose the instruction, sample, write the image (and, on request, the masks
and a labelled side-by-side)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from mcie.cliargs import examples
from mcie.exitcodes import ExitCode, UsageError
from mcie.threads import THREADS_HELP


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``edit`` to ``mcie``'s subparsers."""
    e = sub.add_parser(
        "edit",
        help="edit an image with an MCIE-E1 checkpoint",
        description="Edit one image with an MCIE-E1 checkpoint following a complex instruction; the\n"
        "instruction is split into sub-instructions with regions (grammar, a VLM, or a JSON file).",
        epilog=examples(
            'mcie edit --checkpoint ckpt/checkpoint-50 --image photo.png --instruction "Make the red '
            'circle blue and remove the star." --out edited.png',
            "mcie edit --checkpoint run/ --from-shard mini/shards --out out.png --side-by-side sbs.png",
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
        metavar="FILE",
        help='JSON file of sub-instructions with regions: {"sub_instructions": [{"instruction": ..., '
        '"box": [x0, y0, x1, y1]} or {..., "mask": "m.png"}]}; boxes in pixels of the input '
        "image (not the 0-1000 of a VLM's reply) (default: --decomposer's)",
    )
    e.add_argument(
        "--decomposer",
        default=None,
        choices=["grammar", "mllm", "none"],
        help="without --decomposition: parse the synthetic grammar (default), ask the VLM of "
        "--vlm (mllm), or use none",
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
    e.add_argument(
        "--side-by-side",
        default=None,
        metavar="PNG",
        help="also write a labelled side-by-side: source | output | regions, with the "
        "instruction and each sub-instruction in its region's colour (default: none)",
    )
    e.add_argument("--no-saca", action="store_true", help="turn SACA off at inference")
    e.add_argument("--no-bcca", action="store_true", help="turn BCCA off at inference")
    e.add_argument("--device", default="cpu", help="torch device (default cpu)")
    e.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    e.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    e.set_defaults(run=run_edit)
    return e


@dataclasses.dataclass(frozen=True)
class EditOptions:
    """One ``mcie edit``: what to edit, how to decompose it, how to sample, what to write.
    ``None`` sampling settings are the checkpoint's. Checked at construction (usage errors)."""

    checkpoint: str
    out: str
    image: str | None = None
    instruction: str | None = None
    from_shard: str | None = None
    key: str | None = None
    resolution: int | str | None = "model"  # "model", None (native) or pixels
    decomposition: str | None = None
    decomposer: str | None = None
    vlm: str | None = None
    vlm_retries: int | None = None
    fallback: str = "none"
    steps: int | None = None
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    average: int | None = None
    seed: int = 0
    scheduler: str | None = None
    masks_out: str | None = None
    side_by_side: str | None = None
    no_saca: bool = False
    no_bcca: bool = False
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for flag, value in (
            ("--steps", self.steps),
            ("--average", self.average),
            ("--threads", self.threads),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be >= 1")
        if self.decomposition and self.decomposer:
            raise UsageError("give --decomposition FILE or --decomposer, not both")
        if (self.decomposer == "mllm") != (self.vlm is not None):
            raise UsageError(
                "--decomposer mllm needs --vlm DIR_OR_MODELS_YAML, and --vlm needs --decomposer mllm"
            )
        if self.decomposer != "mllm" and (self.vlm_retries is not None or self.fallback != "none"):
            raise UsageError("--vlm-retries and --fallback apply to --decomposer mllm only")
        if self.from_shard and (self.decomposition or self.decomposer):
            raise UsageError("--from-shard gives the decomposition: not with --decomposition or --decomposer")
        if self.key and not self.from_shard:
            raise UsageError("--key needs --from-shard")
        if not self.from_shard and (self.image is None or self.instruction is None):
            raise UsageError("give --image and --instruction, or --from-shard SHARD_OR_DIR [--key KEY]")
        for flag, path in (("--out", self.out), ("--side-by-side", self.side_by_side)):
            if path is not None:
                _check_image_out(flag, path)  # before minutes of sampling, not after

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EditOptions:
        """The options of parsed ``mcie edit`` arguments (``--resolution`` parsed here)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        values["resolution"] = _resolution(args.resolution)
        return cls(**values)


def run_edit(args: argparse.Namespace) -> int:
    """``mcie edit``."""
    from mcie.model.extra import require_torch
    from mcie.threads import set_torch_threads

    opts = EditOptions.from_args(args)
    require_torch("mcie edit")
    if opts.decomposer == "mllm":  # a models file (pyyaml), the VLM's constrained output (regex)
        from mcie import extras

        extras.require("model", "mcie edit --decomposer mllm", ["yaml", "regex"])
    set_torch_threads(opts.threads)
    return edit(opts)


def edit(opts: EditOptions) -> int:
    """Edit one image as ``opts`` says; exit code."""
    import torch
    from PIL import Image

    from mcie.model.decompose import shard_sample_decomposition
    from mcie.model.editor import MCIEEditor
    from mcie.model.infer import edit_image
    from mcie.model.trainer import resolve_checkpoint

    instruction = opts.instruction
    try:
        ckpt = resolve_checkpoint(opts.checkpoint)
        shard_image = decomposition = None
        if opts.from_shard:
            key, shard_image, decomposition = shard_sample_decomposition(opts.from_shard, opts.key)
            instruction = instruction or decomposition.instruction
            print(f"sample {key} of {opts.from_shard}: {len(decomposition.subs)} sub-instructions with masks")
        if opts.image is not None:
            image = Image.open(opts.image)
            image.load()
        else:
            image = Image.fromarray(shard_image)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    # a shard sample's masks are resized to the image being edited; else decompose the instruction
    if opts.from_shard:
        decomposition = _masks_to_size(decomposition, image.size)
    else:
        decomposition = _decompose(opts, instruction, image)
    model = MCIEEditor.load(ckpt, saca=False if opts.no_saca else None, bcca=False if opts.no_bcca else None)
    model.to(torch.device(opts.device))
    resolution = model.cfg.resolution if opts.resolution == "model" else opts.resolution
    out, regions = edit_image(
        model,
        image,
        instruction,
        decomposition,
        steps=opts.steps,
        guidance_scale=opts.guidance_scale,
        image_guidance_scale=opts.image_guidance_scale,
        seed=opts.seed,
        scheduler=opts.scheduler,
        average=opts.average,
        resolution=resolution,
        progress=opts.progress,
    )
    sampled = out.size
    if out.size != image.size:  # sampled at the model's resolution: back to the input's size
        out = out.resize(image.size, Image.BICUBIC)
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    out.save(opts.out)
    masks = _masks_at(regions, image.size)
    if opts.masks_out:
        _write_masks(masks, opts.masks_out)
    if opts.side_by_side:
        _write_side_by_side(opts.side_by_side, image, out, masks, instruction, decomposition)
    print(
        f"wrote {opts.out} ({out.size[0]}x{out.size[1]}, sampled at {sampled[0]}x{sampled[1]}); "
        + regions_used(len(regions))
    )
    if len(regions) == 0:
        print(
            "mcie: note: no regions were used, so SACA and BCCA did not act: the grammar decomposer "
            "locates only 'add ... in the <cell>' sub-instructions; give --from-shard, "
            "--decomposition FILE or --decomposer mllm for regions",
            file=sys.stderr,
        )
    return ExitCode.OK


def regions_used(n: int) -> str:
    """``0 regions used``, ``1 region used``, ``3 regions used``."""
    return f"{n} region{'' if n == 1 else 's'} used"


def _masks_at(regions, size: tuple[int, int]) -> list:
    """The regions used, as bool masks at the input's size (nearest neighbour, as the image)."""
    import numpy as np
    from PIL import Image

    out = []
    for r in regions:
        m = Image.fromarray((np.asarray(r) > 0).astype(np.uint8) * 255)
        out.append(np.asarray(m.resize(size, Image.NEAREST)) > 0)
    return out


def _write_masks(masks: list, folder: str) -> None:
    import numpy as np

    from mcie.images import encode_png

    os.makedirs(folder, exist_ok=True)
    for k, m in enumerate(masks):
        with open(os.path.join(folder, f"mask{k}.png"), "wb") as fh:
            fh.write(encode_png(m.astype(np.uint8) * 255))


def _write_side_by_side(path, image, out, masks, instruction, decomposition) -> None:
    """source | output | regions (the masks tinted over the source), the instruction, and each
    sub-instruction beside its region's colour swatch; unlocated ones are said so."""
    import numpy as np

    from mcie.report.overlay import overlay
    from mcie.report.sheet import SheetCell, contact_sheet

    src, edited = np.asarray(image.convert("RGB")), np.asarray(out.convert("RGB"))
    subs = decomposition.subs if decomposition is not None else []
    located = [s.text for s in subs if s.has_region][: len(masks)]
    rows = [(t, None, None) for t in located]
    missing = [s.text for s in subs if not s.has_region]
    note = f"instruction: {instruction}"
    if missing:
        note += " | no region: " + "; ".join(missing)
    cell = SheetCell(
        images=[src, edited, overlay(src, masks)], title=regions_used(len(masks)), subs=rows, note=note
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    contact_sheet(["source", "output", "regions"], [cell], tile=256, per_row=1).save(path)


def _check_image_out(flag: str, path: str) -> None:
    """An image file PIL can write (by its extension), not a folder: a usage error (exit 1)
    before any sampling."""
    from PIL import Image

    if os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a directory; give the image file to write (.png, .jpg)")
    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise UsageError(f"{flag} {path!r}: unknown image extension {ext or '(none)'!r}; use .png or .jpg")


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


def _decompose(opts: EditOptions, instruction: str, image):
    """The decomposition ``mcie edit`` uses: a JSON file, the grammar parser, the MLLM (with its
    retries, then exit 2 or ``--fallback grammar``), or none."""
    import numpy as np

    from mcie.exitcodes import RunFailed
    from mcie.model.decompose import DecompositionError, GrammarDecomposer, load_decomposition

    def grammar():
        try:
            return GrammarDecomposer().decompose(instruction, *image.size)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    if opts.decomposition:
        try:
            return load_decomposition(opts.decomposition)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    if opts.decomposer == "none":
        return None
    if opts.decomposer != "mllm":
        return grammar()
    from mcie.model.decompose_vlm import load_mllm_decomposer

    decomposer = load_mllm_decomposer(opts.vlm, opts.device, opts.vlm_retries)
    try:
        d = decomposer.decompose(instruction, np.asarray(image.convert("RGB")))
    except DecompositionError as exc:
        if opts.fallback != "grammar":
            raise RunFailed(f"--decomposer mllm: {exc}") from exc
        print(f"mcie: warning: --decomposer mllm: {exc}; using the grammar decomposer", file=sys.stderr)
        return grammar()
    located = sum(s.has_region for s in d.subs)
    print(
        f"decomposed by the VLM in {decomposer.attempts} attempt(s): {len(d.subs)} sub-instructions, "
        f"{located} with a box"
    )
    return d

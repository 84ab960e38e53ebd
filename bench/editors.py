"""Editors CIE-Bench can run: ``identity``, ``oracle``, ``corrupt[:RATE]``,
``instruct-pix2pix:DIR`` and ``mcie-e1:CKPT``.

An editor gets a :class:`BenchItem` (source, complex instruction; sub-instructions and regions
only under ``--decomposition oracle``) and returns the edited image (same size, RGB ``uint8``)
and a dict of what it knows about its own outcome (``corrupt`` reports its known outcomes).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

from mcie.exitcodes import UsageError
from mcie.images import decode_image, decode_mask


@dataclasses.dataclass
class BenchItem:
    """One benchmark set, decoded."""

    set_id: int
    kind: str
    src: np.ndarray
    expected: np.ndarray
    instruction: str
    sub_instructions: list[str]
    edit_types: list[str]
    regions: list[np.ndarray]
    scene_json: str | None
    plan_json: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BenchItem:
        return cls(
            set_id=row["set_id"],
            kind=row["kind"],
            src=decode_image(row["src_png"]),
            expected=decode_image(row["expected_png"]),
            instruction=row["instruction"],
            sub_instructions=list(row["sub_instructions"]),
            edit_types=list(row["edit_types"]),
            regions=[decode_mask(m) for m in row["regions_png"]],
            scene_json=row["scene_json"],
            plan_json=row["plan_json"],
        )


class Editor(abc.ABC):
    """An image editor under test."""

    name = "editor"

    @abc.abstractmethod
    def edit(self, item: BenchItem, decomposition: bool) -> tuple[np.ndarray, dict[str, Any]]:
        """The edited image and what the editor knows of its outcome."""


class IdentityEditor(Editor):
    """Returns the source: no compliance, perfect background (the floor)."""

    name = "identity"

    def edit(self, item, decomposition):
        return item.src.copy(), {}


class OracleEditor(Editor):
    """Returns the expected target (synthetic sets): full compliance, perfect background."""

    name = "oracle"

    def edit(self, item, decomposition):
        return item.expected.copy(), {}


class CorruptEditor(Editor):
    """The synthetic domain's failure injector: re-renders the plan with a failure injected at
    ``rate`` (seeded by the set), and reports which sub-instructions it really carried out."""

    name = "corrupt"

    def __init__(self, rate: float = 0.5, seed: int = 0) -> None:
        from mcie.transforms.synthetic.editor import FailureConfig, SceneEditor

        self.editor = SceneEditor(FailureConfig(rate=rate))
        self.seed = seed

    def edit(self, item, decomposition):
        from mcie.bench.sets import plan_from_json, scene_from_json

        if item.scene_json is None:
            raise UsageError("the corrupt editor needs synthetic sets (they keep the scene graph)")
        scene, plan = scene_from_json(item.scene_json), plan_from_json(item.plan_json)
        rng = np.random.default_rng([self.seed, 7919, item.set_id])
        img, truth = self.editor.edit(scene, plan, rng)
        return img, {"known_executed": truth.executed, "failures": truth.failures}


class InstructPix2PixEditor(Editor):
    """diffusers' ``StableDiffusionInstructPix2PixPipeline`` from a local directory."""

    name = "instruct-pix2pix"

    def __init__(
        self,
        path: str,
        steps: int = 20,
        guidance: float = 7.5,
        image_guidance: float = 1.5,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        import torch
        from diffusers import StableDiffusionInstructPix2PixPipeline

        from mcie import weights

        load = StableDiffusionInstructPix2PixPipeline.from_pretrained
        self.pipe = weights.from_pretrained(load, path, "instruct-pix2pix", safety_checker=None)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(device)
        self.torch, self.device = torch, device
        self.steps, self.guidance, self.image_guidance, self.seed = steps, guidance, image_guidance, seed

    def edit(self, item, decomposition):
        from PIL import Image

        g = self.torch.Generator(device="cpu").manual_seed(self.seed + item.set_id)
        h, w = item.src.shape[:2]
        out = self.pipe(
            item.instruction,
            image=Image.fromarray(item.src),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            image_guidance_scale=self.image_guidance,
            generator=g,
            output_type="np",
        ).images[0]
        img = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))
        return img, {}


def make_editor(
    spec: str,
    seed: int = 0,
    device: str = "cpu",
    steps: int | None = None,
    sampling: dict[str, Any] | None = None,
) -> Editor:
    """An editor from its spec: ``identity``, ``oracle``, ``corrupt[:RATE]``,
    ``instruct-pix2pix:DIR``, ``mcie-e1:CKPT``. ``steps`` and ``sampling`` (``guidance_scale``,
    ``image_guidance_scale``; ``scheduler`` for MCIE-E1): the diffusion editors' sampling; what
    is not given is the editor's own (InstructPix2Pix: 20 steps; MCIE-E1: its checkpoint's)."""
    name, _, arg = spec.partition(":")
    sampling = dict(sampling or {})
    for only_e1 in ("scheduler", "average"):
        if sampling.get(only_e1) and name != "mcie-e1":
            raise UsageError(f"--{only_e1} applies to mcie-e1 editors only")
    if name == "identity":
        return IdentityEditor()
    if name == "oracle":
        return OracleEditor()
    if name == "corrupt":
        try:
            rate = float(arg) if arg else 0.5
        except ValueError:
            raise UsageError(f"corrupt:RATE needs a number, got {arg!r}") from None
        return CorruptEditor(rate=rate, seed=seed)
    if name == "instruct-pix2pix":
        if not arg:
            raise UsageError("instruct-pix2pix:DIR needs a local pipeline directory")
        sampling.pop("scheduler", None)
        kw = {
            {"guidance_scale": "guidance", "image_guidance_scale": "image_guidance"}[k]: v
            for k, v in sampling.items()
        }
        return InstructPix2PixEditor(arg, steps=steps or 20, seed=seed, device=device, **kw)
    if name == "mcie-e1":
        if not arg:
            raise UsageError("mcie-e1:CKPT needs a checkpoint directory")
        return MCIEE1Editor(arg, seed=seed, device=device, steps=steps, **sampling)
    raise UsageError(
        f"unknown editor {spec!r}; allowed: identity, oracle, corrupt[:RATE], "
        "instruct-pix2pix:DIR, mcie-e1:CKPT"
    )


class MCIEE1Editor(Editor):
    """MCIE-E1 from a checkpoint directory (``mcie train`` output). Without ``--decomposition
    oracle`` it decomposes the instruction itself (the synthetic-grammar parser, which gives
    regions only for ``add``); with it, it gets every sub-instruction with its exact region."""

    name = "mcie-e1"

    def __init__(
        self,
        ckpt: str,
        seed: int = 0,
        device: str = "cpu",
        steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        scheduler: str | None = None,
        average: int | None = None,
    ) -> None:
        """Sampling settings left None are the checkpoint's (``MCIEConfig.sampling``)."""
        from mcie.model.editor import MCIEEditor

        self.model = MCIEEditor.load(ckpt).to(device)
        self.sampling = self.model.cfg.sampling_with(
            steps=steps,
            guidance_scale=guidance_scale,
            image_guidance_scale=image_guidance_scale,
            scheduler=scheduler,
            average=average,
        )
        self.seed, self.steps = seed, self.sampling.pop("steps")

    def edit(self, item, decomposition):
        from PIL import Image

        from mcie.model.decompose import Decomposition, GrammarDecomposer, SubInstruction
        from mcie.model.infer import edit_image

        h, w = item.src.shape[:2]
        if decomposition:
            subs = [
                SubInstruction(t, mask=r) for t, r in zip(item.sub_instructions, item.regions, strict=True)
            ]
            decomp = Decomposition(item.instruction, subs)
        else:
            decomp = GrammarDecomposer().decompose(item.instruction, w, h)
        out, _ = edit_image(
            self.model,
            Image.fromarray(item.src),
            item.instruction,
            decomp,
            steps=self.steps,
            seed=self.seed + item.set_id,
            **self.sampling,
        )
        if out.size != (w, h):
            out = out.resize((w, h), Image.BICUBIC)
        return np.asarray(out.convert("RGB"), dtype=np.uint8).copy(), {}


__all__ = ["BenchItem", "Editor", "make_editor"]

"""MCIE-E1 configuration: one validated dataclass and its presets.

Presets:

- ``tiny``: a latent model (tiny random VAE, factor 2) for plumbing tests on a CPU.
- ``tiny-pixel``: no VAE, the UNet denoises RGB directly. Offline a random VAE makes outputs
  meaningless, while a pixel-space model really learns on a CPU.
- ``sd15``: SD1.5-size UNet (320/640/1280/1280, cross-attention 768), SD VAE and a CLIP-L-size
  text encoder, all from config (random weights) unless a pretrained directory is given.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

PRESETS = ("tiny", "tiny-pixel", "sd15")


@dataclasses.dataclass(frozen=True)
class MCIEConfig:
    """Sizes of every part of MCIE-E1 and the switches of its two attention additions."""

    preset: str = "tiny"
    resolution: int = 32
    pixel_space: bool = False
    # UNet (diffusers UNet2DConditionModel)
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    # UNet levels (0 = full resolution) with cross-attention blocks; None: every level but the
    # lowest, as SD1.5. The middle block always attends. tiny-pixel skips level 0: at 32 px its
    # self-attention over 1,024 pixels cost most of a CPU training step
    attention_levels: tuple[int, ...] | None = None
    cross_attention_dim: int = 32
    # VAE (latent presets only)
    vae_block_out_channels: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    # text encoder (CLIPTextModel) and tokenizer
    text_hidden_size: int = 32
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 37
    # token positions of the text encoder = the longest instruction it reads whole. 128 covers
    # every complex instruction of the synthetic grammar (the full demo mix needs up to 102
    # tokens, mini 54, mini-3 61; at 32, 81% of the demo's were cut off and the later
    # sub-instructions never seen). Longer texts are truncated with a warning
    max_length: int = 128
    # token length of each sub-instruction (padded to it; at most max_length). A sub-instruction
    # of the grammar needs up to 33 tokens; encoding 5 of them at 128 made a tiny-pixel training
    # step 1.75x slower (1.83 against 1.05 CPU s at batch 16) for nothing but padding
    sub_max_length: int = 40
    # decomposition: at most this many sub-instructions are used (extra ones are dropped)
    max_sub_edits: int = 5
    # BCCA source tokens: the source latent cut into patch x patch squares, plus 2-D sin-cos
    # positions of pos_dim features so a background query can find "its" source patch
    src_patch: int = 4
    src_pos_dim: int = 16
    # what the UNet predicts: "epsilon" (SD1.5, InstructPix2Pix) or "v_prediction"; tiny-pixel
    # uses v: with epsilon, a pixel model trained from scratch learned to read the source far
    # too slowly (benchmarks/notes/2026-11-mcie-e1.md)
    prediction_type: str = "epsilon"
    # train the text encoder with the UNet. Off for SD1.5 / InstructPix2Pix, whose CLIP is
    # pretrained; on for tiny-pixel, whose text encoder is random: frozen random features tell
    # colour words apart too weakly for a model trained from scratch (benchmarks/notes/2026-11-mcie-e1.md)
    train_text_encoder: bool = False
    # initial value of every SACA / BCCA gate. 0 (the default, as IP-Adapter): the model starts
    # as the plain UNet, for fine-tuning a pretrained backbone. Models trained from scratch may
    # start at 1 (`mcie train --gate-init 1`): at 0 the sub-instruction path gets gradient only
    # through its gate, which stayed below 0.08 after 450 steps in every run we made
    gate_init: float = 0.0
    # how the checkpoint samples when the caller does not say (`mcie edit`, `mcie bench run`):
    # InstructPix2Pix's Euler-ancestral 20 steps at guidance 7.5 / 1.5 by default. tiny-pixel:
    # 2 DDIM steps from t = 999 without guidance; its edit is a deterministic function of the
    # source and the instruction, which an under-trained model gets closest to in 1-2 steps.
    # A 760-step model passed the pixel judge on 0.30 of its sub-instructions so, 0.0 with 10
    # steps at 3 / 1.5; guidance above 1 pushed shades off (benchmarks/notes/2026-12-ladder.md)
    sampler: str = "euler_a"
    sample_steps: int = 20
    guidance_scale: float = 7.5
    image_guidance_scale: float = 1.5
    # samples drawn from different noise and averaged (in one batch). tiny-pixel: 8. The mean
    # removes a single draw's grain: the same 760-step model passed the judge on 0.86 of its
    # sub-instructions with 8, 0.30 with 1 (benchmarks/notes/2026-12-ladder.md)
    sample_average: int = 1
    # switches for ablations
    saca: bool = True
    bcca: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; allowed: {', '.join(PRESETS)}")
        if self.resolution % self.size_multiple:
            raise ValueError(f"resolution {self.resolution} must be a multiple of {self.size_multiple}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"block_out_channels {self.block_out_channels} must divide by {self.norm_num_groups}"
            )
        if not 1 <= self.max_sub_edits <= 16:
            raise ValueError(f"max_sub_edits must be in 1..16, got {self.max_sub_edits}")
        if self.attention_levels is not None and not set(self.attention_levels) <= set(
            range(len(self.block_out_channels))
        ):
            raise ValueError(
                f"attention_levels {self.attention_levels} must be levels of {self.block_out_channels}"
            )
        if self.src_pos_dim % 4:
            raise ValueError(f"src_pos_dim must be a multiple of 4, got {self.src_pos_dim}")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"prediction_type must be 'epsilon' or 'v_prediction', got {self.prediction_type!r}"
            )
        if self.sampler not in ("euler_a", "ddim"):
            raise ValueError(f"sampler must be 'euler_a' or 'ddim', got {self.sampler!r}")
        if self.sample_steps < 1 or self.sample_average < 1:
            raise ValueError(
                f"sample_steps and sample_average must be >= 1: {self.sample_steps}, {self.sample_average}"
            )
        if self.text_hidden_size != self.cross_attention_dim:
            raise ValueError(
                "text_hidden_size must equal cross_attention_dim (the UNet attends to its output)"
            )

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def sub_length(self) -> int:
        """Tokens per sub-instruction: ``sub_max_length``, bounded by the encoder's positions."""
        return min(self.sub_max_length, self.max_length)

    @property
    def sampling(self) -> dict[str, Any]:
        """The checkpoint's default sampling as :func:`mcie.model.infer.edit_image` arguments."""
        return {
            "scheduler": self.sampler,
            "steps": self.sample_steps,
            "guidance_scale": self.guidance_scale,
            "image_guidance_scale": self.image_guidance_scale,
            "average": self.sample_average,
        }

    def sampling_with(self, **given: Any) -> dict[str, Any]:
        """:attr:`sampling` with the settings a caller gave (None: the checkpoint's)."""
        return {**self.sampling, **{k: v for k, v in given.items() if v is not None}}

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell (1 in pixel space)."""
        return 1 if self.pixel_space else 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor x UNet downsampling x patch)."""
        return self.vae_factor * max(2 ** (len(self.block_out_channels) - 1), self.src_patch)

    @property
    def image_channels(self) -> int:
        """Channels the UNet denoises (RGB in pixel space, VAE latents otherwise)."""
        return 3 if self.pixel_space else self.latent_channels

    @property
    def src_token_dim(self) -> int:
        """Width of one BCCA source token (patch values + positions)."""
        return self.image_channels * self.src_patch**2 + self.src_pos_dim

    def replace(self, **kw: Any) -> MCIEConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **kw)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MCIEConfig:
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MCIE config keys {sorted(unknown)}")
        for k in ("block_out_channels", "vae_block_out_channels", "attention_levels"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def preset_config(cls, name: str, **overrides: Any) -> MCIEConfig:
        """The config of a named preset, with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
        base: dict[str, Any] = {"preset": name}
        if name == "tiny-pixel":
            # 8 groups of 4 channels: GroupNorm with 32 groups of 1 channel is an instance norm,
            # which erases each channel's absolute level (in pixel space: the colour)
            base.update(
                pixel_space=True,
                prediction_type="v_prediction",
                train_text_encoder=True,
                norm_num_groups=8,
                attention_levels=(1,),
                sampler="ddim",
                sample_steps=2,
                guidance_scale=1.0,
                image_guidance_scale=1.0,
                sample_average=8,
            )
        elif name == "sd15":
            base.update(
                resolution=512,
                block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2,
                attention_head_dim=8,
                cross_attention_dim=768,
                vae_block_out_channels=(128, 256, 512, 512),
                text_hidden_size=768,
                text_layers=12,
                text_heads=12,
                text_intermediate_size=3072,
                max_length=77,
                src_patch=4,
                src_pos_dim=32,
            )
        base.update(overrides)
        return cls(**base)

"""MCIE-E1: the InstructPix2Pix-style UNet with SACA/BCCA, its VAE and text encoder.

Checkpoint layout (diffusers-style folders, safetensors everywhere)::

    CKPT/unet/         UNet2DConditionModel (stock processors; loads with from_pretrained)
    CKPT/vae/          AutoencoderKL (latent presets only)
    CKPT/text_encoder/ CLIPTextModel
    CKPT/tokenizer/    CLIPTokenizer
    CKPT/scheduler/    DDPMScheduler (training noise schedule)
    CKPT/mcie/config.json, CKPT/mcie/attn_processors.safetensors   SACA/BCCA weights
    CKPT/model_index.json  (latent presets) so that the folder also loads as a plain
                           ``StableDiffusionInstructPix2PixPipeline`` (without SACA/BCCA)

The SACA/BCCA processors are ``nn.Module`` s and so become UNet submodules; saving swaps the
stock processors in first so they stay out of the UNet's own weights.
"""

from __future__ import annotations

import dataclasses
import json
import os

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mcie import logs
from mcie.model.attention import install_processors
from mcie.model.config import MCIEConfig
from mcie.model.source import source_tokens
from mcie.model.tokenizer import build_tokenizer

ATTN_FILE = "attn_processors.safetensors"
#: the parts a pretrained SD / InstructPix2Pix folder must have (diffusers' layout)
SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer")


@dataclasses.dataclass
class Conditioning:
    """Everything the UNet is conditioned on, for a batch of B (or 3*B under guidance)."""

    text: torch.Tensor  # (B, L, D) complex instruction
    src: torch.Tensor  # (B, C, h, w) source latent / pixels (zeros where the image is dropped)
    sub_text: torch.Tensor | None = None  # (B, K, L, D) sub-instructions
    regions: torch.Tensor | None = None  # (B, K, h, w) in {0, 1}
    bg_mask: torch.Tensor | None = None  # (B, 1, h, w); 0 where the image is dropped

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        """Blocks of conditionings, concatenated along the batch (guidance: 3 blocks)."""

        def c(name):
            xs = [getattr(p, name) for p in parts]
            return None if any(x is None for x in xs) else torch.cat(xs)

        return Conditioning(c("text"), c("src"), c("sub_text"), c("regions"), c("bg_mask"))

    def blocks(self, keep: int, copies: int) -> Conditioning:
        """The first ``keep`` of its (guidance) blocks, each repeated ``copies`` times in place:
        ``[a, b, c]`` → ``[a] * copies + [b] * copies`` for keep 2 (the layout ``chunk`` splits)."""

        def f(x):
            return None if x is None else x[:keep].repeat_interleave(copies, dim=0)

        return Conditioning(f(self.text), f(self.src), f(self.sub_text), f(self.regions), f(self.bg_mask))


def expand_conv_in(unet: UNet2DConditionModel, extra: int) -> UNet2DConditionModel:
    """Widen ``conv_in`` by ``extra`` input channels whose weights are zero, so the UNet computes
    exactly what it did before the source image was concatenated (as diffusers'
    ``train_instruct_pix2pix.py``)."""
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra)
    return unet


def _load_part(path: str, part: str, cls):
    """``cls.from_pretrained(path, subfolder=part)``, safetensors only (never unpickles), with an
    error that names the part."""
    kw = {} if cls is CLIPTokenizer else {"use_safetensors": True}
    try:
        with logs.model_calls():  # the libraries' warnings and bars: only with -v
            return cls.from_pretrained(path, subfolder=part, **kw)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load {part}/ of {path!r} (safetensors weights only): {exc}") from exc


def pipeline_index() -> dict:
    """``model_index.json`` of a latent checkpoint: the folder loads with
    ``StableDiffusionInstructPix2PixPipeline.from_pretrained(CKPT)`` as plain InstructPix2Pix
    (the stock processors of ``unet/``; SACA and BCCA live in ``mcie/``, which diffusers skips).
    The scheduler is the training one (DDPM), as diffusers' ``train_instruct_pix2pix.py`` saves
    it; pass ``scheduler=`` to sample with another."""
    import diffusers

    return {
        "_class_name": "StableDiffusionInstructPix2PixPipeline",
        "_diffusers_version": diffusers.__version__,
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    }


def unet_from_config(cfg: MCIEConfig) -> UNet2DConditionModel:
    """A randomly initialised UNet of the config's size, source channels zero-initialised."""
    n = len(cfg.block_out_channels)
    levels = cfg.attention_levels if cfg.attention_levels is not None else tuple(range(n - 1))
    down = tuple("CrossAttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if i in levels else "UpBlock2D" for i in reversed(range(n)))
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution // cfg.vae_factor,
        in_channels=cfg.image_channels,
        out_channels=cfg.image_channels,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
    )
    return expand_conv_in(unet, cfg.image_channels)


def vae_from_config(cfg: MCIEConfig) -> AutoencoderKL | None:
    if cfg.pixel_space:
        return None
    n = len(cfg.vae_block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_block_out_channels,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(32, cfg.vae_block_out_channels[0]),
        layers_per_block=1 if cfg.preset != "sd15" else 2,
        sample_size=cfg.resolution,
    )


def text_encoder_from_config(cfg: MCIEConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden_size,
            intermediate_size=cfg.text_intermediate_size,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


class MCIEEditor(nn.Module):
    """MCIE-E1's parts and the operations shared by training and inference."""

    def __init__(
        self,
        cfg: MCIEConfig,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL | None = None,
        scheduler: DDPMScheduler | None = None,
    ) -> None:
        super().__init__()
        if (vae is None) != cfg.pixel_space:
            raise ValueError("a latent preset needs a VAE and a pixel preset must not have one")
        self.cfg, self.unet, self.text_encoder, self.tokenizer, self.vae = (
            cfg,
            unet,
            text_encoder,
            tokenizer,
            vae,
        )
        self.scheduler = scheduler or DDPMScheduler(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type=cfg.prediction_type,
        )
        self.processors = install_processors(
            unet, cfg.src_token_dim, saca=cfg.saca, bcca=cfg.bcca, gate_init=cfg.gate_init
        )

    # -- construction / persistence -----------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: MCIEConfig, seed: int = 0) -> MCIEEditor:
        """All parts with random weights from the config (seeded)."""
        torch.manual_seed(seed)
        tok = build_tokenizer(cfg.max_length)
        return cls(cfg, unet_from_config(cfg), text_encoder_from_config(cfg, tok), tok, vae_from_config(cfg))

    @classmethod
    def from_pretrained_sd(cls, path: str, cfg: MCIEConfig, seed: int = 0) -> MCIEEditor:
        """Start from a local SD1.5 or InstructPix2Pix folder in diffusers' layout (``unet/``,
        ``vae/``, ``text_encoder/``, ``tokenizer/``, optionally ``scheduler/``; safetensors
        weights only). A UNet with the VAE's latent channels as input (SD) is widened with
        zero-initialised source channels; one with twice as many (InstructPix2Pix) is used as is.

        The folder decides the architecture: every size in the returned config comes from its
        parts, and the prediction type and noise schedule from its ``scheduler/`` when present.
        ``cfg`` gives only what the folder cannot: the training resolution (checked against the
        pretrained parts' size multiple), the SACA/BCCA knobs and the switches. ``seed`` seeds
        the new BCCA projections (randomly initialised, as in :meth:`from_config`).
        """
        if cfg.pixel_space:
            raise ValueError(
                f"{cfg.preset!r} is a pixel-space preset; a pretrained SD folder needs a latent one"
            )
        if not os.path.isdir(path):
            raise FileNotFoundError(f"pretrained folder {path!r} does not exist")
        missing = [part + "/" for part in SD_PARTS if not os.path.isdir(os.path.join(path, part))]
        if missing:
            raise FileNotFoundError(
                f"{path!r} is not a Stable Diffusion / InstructPix2Pix folder: it lacks "
                f"{', '.join(missing)} (diffusers' layout: {', '.join(p + '/' for p in SD_PARTS)})"
            )
        unet = _load_part(path, "unet", UNet2DConditionModel)
        vae = _load_part(path, "vae", AutoencoderKL)
        te = _load_part(path, "text_encoder", CLIPTextModel)
        tok = _load_part(path, "tokenizer", CLIPTokenizer)
        latent = vae.config.latent_channels
        if unet.config.out_channels != latent:
            raise ValueError(
                f"{path!r}: the UNet predicts {unet.config.out_channels} channels, the VAE has {latent}"
            )
        if unet.config.in_channels == latent:
            unet = expand_conv_in(unet, latent)
        elif unet.config.in_channels != 2 * latent:
            raise ValueError(
                f"{path!r}: the UNet takes {unet.config.in_channels} input channels; expected {latent}"
                f" (Stable Diffusion) or {2 * latent} (InstructPix2Pix), e.g. not an inpainting UNet"
            )
        # a tokenizer saved without model_max_length reports a huge one: the encoder's positions bound it
        tok.model_max_length = min(tok.model_max_length, te.config.max_position_embeddings)
        sizes = dict(
            block_out_channels=tuple(unet.config.block_out_channels),
            norm_num_groups=unet.config.norm_num_groups,
            cross_attention_dim=unet.config.cross_attention_dim,
            vae_block_out_channels=tuple(vae.config.block_out_channels),
            latent_channels=latent,
            text_hidden_size=te.config.hidden_size,
            text_layers=te.config.num_hidden_layers,
            text_heads=te.config.num_attention_heads,
            text_intermediate_size=te.config.intermediate_size,
            max_length=tok.model_max_length,
        )
        # per-block lists (SD2's attention heads) do not fit MCIEConfig's ints; those fields are
        # only read when building a UNet from the config, never after loading
        for name in ("layers_per_block", "attention_head_dim"):
            if isinstance(unet.config[name], int):
                sizes[name] = unet.config[name]
        scheduler = None
        if os.path.isfile(os.path.join(path, "scheduler", "scheduler_config.json")):
            # SD ships a PNDM or DDIM config; its betas and prediction type define the training
            # noise, whichever sampler it was saved for
            base = DDPMScheduler.load_config(path, subfolder="scheduler")
            scheduler = DDPMScheduler.from_config(base)
            sizes["prediction_type"] = scheduler.config.prediction_type
        try:
            cfg = cfg.replace(pixel_space=False, **sizes)
        except ValueError as exc:
            raise ValueError(f"{path!r}: {exc} (pass a resolution that fits the pretrained model)") from exc
        torch.manual_seed(seed)
        return cls(cfg, unet, te, tok, vae, scheduler)

    def mcie_state_dict(self) -> dict[str, torch.Tensor]:
        """SACA/BCCA weights only, keyed ``<layer name>.<parameter>``."""
        return {
            f"{name}.{k}": v.detach().contiguous()
            for name, proc in self.processors.items()
            for k, v in proc.state_dict().items()
        }

    def load_mcie_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.mcie_state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(
                f"SACA/BCCA weights do not match the model: missing {missing[:3]}, extra {extra[:3]}"
            )
        for name, proc in self.processors.items():
            prefix = name + "."
            proc.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def save(self, path: str) -> None:
        """Write the checkpoint folders (see the module docstring)."""
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per saved part clutters training logs
        os.makedirs(os.path.join(path, "mcie"), exist_ok=True)
        procs = self.unet.attn_processors
        self.unet.set_attn_processor(AttnProcessor2_0())  # keep SACA/BCCA out of the UNet's weights
        try:
            self.unet.save_pretrained(os.path.join(path, "unet"), safe_serialization=True)
        finally:
            self.unet.set_attn_processor(procs)
        if self.vae is not None:
            self.vae.save_pretrained(os.path.join(path, "vae"), safe_serialization=True)
        self.text_encoder.save_pretrained(os.path.join(path, "text_encoder"), safe_serialization=True)
        self.tokenizer.save_pretrained(os.path.join(path, "tokenizer"))
        self.scheduler.save_pretrained(os.path.join(path, "scheduler"))
        with open(os.path.join(path, "mcie", "config.json"), "w") as fh:
            fh.write(self.cfg.to_json())
        save_file(self.mcie_state_dict(), os.path.join(path, "mcie", ATTN_FILE))
        if self.vae is not None:  # a pixel-space UNet has no diffusers pipeline to load into
            with open(os.path.join(path, "model_index.json"), "w") as fh:
                json.dump(pipeline_index(), fh, indent=2, sort_keys=True)

    @classmethod
    def load(cls, path: str, saca: bool | None = None, bcca: bool | None = None) -> MCIEEditor:
        """Load a checkpoint written by :meth:`save` (local folders only, safetensors only)."""
        cfg_file = os.path.join(path, "mcie", "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"{path!r} is not an MCIE-E1 checkpoint (no mcie/config.json)")
        with open(cfg_file) as fh:
            cfg = MCIEConfig.from_json(fh.read())
        with logs.model_calls():  # the libraries' warnings and bars: only with -v
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=True)
            vae = (
                None
                if cfg.pixel_space
                else AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True)
            )
            te = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True)
            tok = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
            sched = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        model = cls(cfg, unet, te, tok, vae, sched)
        model.load_mcie_state_dict(load_file(os.path.join(path, "mcie", ATTN_FILE)))
        if saca is not None or bcca is not None:
            model.set_switches(saca=saca, bcca=bcca)
        return model

    def set_switches(self, saca: bool | None = None, bcca: bool | None = None) -> None:
        """Turn SACA / BCCA off (or back on, when the weights exist) without reloading."""
        for p in self.processors.values():
            if saca is not None:
                p.saca = saca and hasattr(p, "saca_gate")
            if bcca is not None:
                p.bcca = bcca and hasattr(p, "bcca_gate")

    def gates(self) -> dict[str, float]:
        """Current gate values by layer (for logs and tests)."""
        out = {}
        for name, p in self.processors.items():
            for g in ("saca_gate", "bcca_gate"):
                if hasattr(p, g):
                    out[f"{name}.{g}"] = float(getattr(p, g).detach())
        return out

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``("unet.<name>", p)`` for the UNet and its SACA/BCCA weights, plus
        ``("text_encoder.<name>", p)`` when ``cfg.train_text_encoder`` (the VAE always stays
        frozen; the text encoder too by default, as in InstructPix2Pix training)."""
        out = [(f"unet.{n}", p) for n, p in self.unet.named_parameters()]
        if self.cfg.train_text_encoder:
            out += [(f"text_encoder.{n}", p) for n, p in self.text_encoder.named_parameters()]
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters of :meth:`named_trainable_parameters` that require gradients."""
        return [p for _, p in self.named_trainable_parameters() if p.requires_grad]

    # -- encoders ------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], max_length: int | None = None) -> torch.Tensor:
        """(N,) strings → (N, L) ids, padded/truncated to ``max_length`` (default: the
        tokenizer's, which is the complex instruction's)."""
        from mcie.model.tokenizer import token_ids

        return token_ids(self.tokenizer, texts, max_length)

    def tokenize_subs(self, texts: list[str]) -> torch.Tensor:
        """(K,) sub-instructions → (K, cfg.sub_length) ids."""
        return self.tokenize(texts, self.cfg.sub_length)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., L) ids → (..., L, D) text-encoder states; each row encoded on its own."""
        shape = ids.shape
        out = self.text_encoder(ids.reshape(-1, shape[-1]).to(self.device))[0]  # (N, L, D)
        return out.reshape(*shape, out.shape[-1])

    def encode_image(self, x: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → what the UNet sees: pixels, or VAE latents (target latents
        scaled by the VAE's factor; source latents unscaled, as InstructPix2Pix)."""
        if self.vae is None:
            return x
        dist = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        if sample:
            return dist.sample(generator) * self.vae.config.scaling_factor
        return dist.mode()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """UNet space → images in [-1, 1]."""
        if self.vae is None:
            return z
        return self.vae.decode(z / self.vae.config.scaling_factor, return_dict=False)[0]

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # -- the UNet call -------------------------------------------------------------------------
    def latent_regions(self, regions: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, K, H, W) image-resolution regions → (B, K, h, w) at the UNet input's grid (max-pool)."""
        if tuple(regions.shape[-2:]) == tuple(hw):
            return (regions > 0.5).float()
        return (F.adaptive_max_pool2d(regions.float(), hw) > 0.5).float()

    def unet_forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Noise prediction for ``noisy`` (B, C, h, w) at timesteps ``t`` under ``cond``."""
        h, w = noisy.shape[-2:]
        kwargs: dict = {"latent_hw": (h, w)}
        if cond.sub_text is not None and cond.regions is not None:
            kwargs.update(sub_tokens=cond.sub_text, regions=cond.regions)
        if cond.bg_mask is not None:
            kwargs.update(
                src_tokens=source_tokens(cond.src, self.cfg.src_patch, self.cfg.src_pos_dim),
                bg_mask=cond.bg_mask,
            )
        x = torch.cat([noisy, cond.src.to(noisy.dtype)], dim=1)  # (B, 2C, h, w)
        return self.unet(
            x, t, encoder_hidden_states=cond.text, cross_attention_kwargs=kwargs, return_dict=False
        )[0]


def background_from_regions(regions: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) regions → (B, 1, h, w) background (outside the union of all regions)."""
    if regions.shape[1] == 0:
        return torch.ones_like(regions[:, :1])
    return 1.0 - regions.amax(dim=1, keepdim=True)

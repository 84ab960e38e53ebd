"""The MCIE-E1 training objective: InstructPix2Pix's epsilon loss with SACA/BCCA conditioning.

Conditioning dropout (for classifier-free guidance at inference) follows diffusers'
``train_instruct_pix2pix.py``: with probability p the text is dropped (the complex instruction
and every sub-instruction together), with p the image (the concatenated source and BCCA's
source tokens together), with p both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mcie.model.editor import Conditioning, MCIEEditor, background_from_regions


def batch_conditioning(
    model: MCIEEditor,
    batch: dict,
    src_z: torch.Tensor,
    keep_text: torch.Tensor | None = None,
    keep_image: torch.Tensor | None = None,
) -> Conditioning:
    """Conditioning of a loader batch; ``keep_text`` / ``keep_image`` (B,) bool drop parts."""
    dev = src_z.device
    b = src_z.shape[0]
    keep_text = torch.ones(b, dtype=torch.bool, device=dev) if keep_text is None else keep_text.to(dev)
    keep_image = torch.ones(b, dtype=torch.bool, device=dev) if keep_image is None else keep_image.to(dev)
    empty = model.tokenize([""])[0].to(dev)  # (L,)
    empty_sub = model.tokenize([""], batch["sub_ids"].shape[-1])[0].to(dev)  # (Ls,)
    ids = torch.where(keep_text[:, None], batch["input_ids"].to(dev), empty)  # (B, L)
    sub_ids = torch.where(keep_text[:, None, None], batch["sub_ids"].to(dev), empty_sub)  # (B, K, Ls)
    # only the slots with a region somewhere in the batch are encoded: SACA reads no other
    # (model/regions.py keeps the same slots), and most samples fill 2-3 of the K slots
    used = batch["regions"].flatten(2).amax(-1).amax(0).to(dev) > 0  # (K,)
    # gradients reach the text encoder only when it is trained (cfg.train_text_encoder)
    with torch.set_grad_enabled(torch.is_grad_enabled() and model.cfg.train_text_encoder):
        text = model.encode_ids(ids)  # (B, L, D)
        sub = text.new_zeros(*sub_ids.shape, text.shape[-1])  # (B, K, Ls, D): zeros are unread
        if used.any():
            sub[:, used] = model.encode_ids(sub_ids[:, used])
    regions = model.latent_regions(batch["regions"].to(dev), tuple(src_z.shape[-2:]))  # (B, K, h, w)
    img = keep_image.to(src_z.dtype)[:, None, None, None]
    bg = background_from_regions(regions) * img
    return Conditioning(text, src_z * img, sub, regions, bg)


def encode_batch(model: MCIEEditor, batch: dict, generator: torch.Generator | None = None):
    """(target in UNet space, source in UNet space) of a batch, without gradients."""
    dev = model.device
    with torch.no_grad():
        x0 = model.encode_image(batch["tgt"].to(dev), sample=True, generator=generator)
        src_z = model.encode_image(batch["src"].to(dev))
    return x0, src_z


def diffusion_loss(
    model: MCIEEditor,
    batch: dict,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    keep_text: torch.Tensor | None = None,
    keep_image: torch.Tensor | None = None,
    encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
    edit_weight: float = 0.0,
) -> torch.Tensor:
    """Mean squared error of the UNet's prediction for given (noise, timesteps); the target is
    the noise, or the velocity when the scheduler's ``prediction_type`` is ``v_prediction``.
    ``edit_weight`` > 0 weights the error toward the edit regions (:func:`edit_weights`)."""
    x0, src_z = encoded if encoded is not None else encode_batch(model, batch)
    cond = batch_conditioning(model, batch, src_z, keep_text, keep_image)
    noisy = model.scheduler.add_noise(x0, noise, timesteps)
    pred = model.unet_forward(noisy, timesteps, cond)
    if model.scheduler.config.prediction_type == "v_prediction":
        target = model.scheduler.get_velocity(x0, noise, timesteps)
    elif model.scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        raise ValueError(f"unsupported prediction_type {model.scheduler.config.prediction_type!r}")
    if edit_weight <= 0:
        return F.mse_loss(pred.float(), target.float())
    w = edit_weights(cond.regions, edit_weight)  # (B, 1, h, w)
    return (w * (pred.float() - target.float()) ** 2).mean()


def edit_weights(regions: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-cell loss weights ``1 + weight`` inside the union of the edit regions and 1 outside,
    normalised to mean 1 per sample (so the loss scale, hence the learning rate, is unchanged).
    Edit regions are about 5% of the cells of a demo image: unweighted, 95% of the loss
    teaches "copy the source". ``regions``: (B, K, h, w) → (B, 1, h, w)."""
    union = regions.float().amax(dim=1, keepdim=True)
    w = 1.0 + weight * union
    return w / w.mean(dim=(-2, -1), keepdim=True)


def fixed_triple_loss(model: MCIEEditor, batch: dict, generator: torch.Generator) -> Callable[[], float]:
    """Draw fixed (sample, timestep, noise) triples for ``batch`` from ``generator`` and return a
    function giving the model's current loss on them, without gradients (the overfit checks)."""
    encoded = encode_batch(model, batch, generator)
    noise = torch.randn(encoded[0].shape, generator=generator)
    steps, b = model.scheduler.config.num_train_timesteps, encoded[0].shape[0]
    t = torch.randint(0, steps, (b,), generator=generator)

    def loss() -> float:
        with torch.no_grad():
            return float(diffusion_loss(model, batch, noise, t, encoded=encoded))

    return loss


def sample_timesteps(n: int, steps: int, generator: torch.Generator, late_bias: float = 1.0) -> torch.Tensor:
    """``n`` training timesteps in [0, steps): uniform, or with the later half (the noisier one)
    drawn ``late_bias`` times as often as the earlier half. Few-step samplers read the model only
    at late timesteps (2 trailing DDIM steps: t = 999 and 499), where it must form the edit
    from noise; uniform sampling spends half the steps on t < 500, where it only removes noise."""
    if late_bias == 1.0:
        return torch.randint(0, steps, (n,), generator=generator)
    if late_bias <= 0:
        raise ValueError(f"late_bias must be > 0, got {late_bias}")
    half = steps // 2
    late = torch.rand(n, generator=generator) < late_bias / (1.0 + late_bias)
    early_t = torch.randint(0, half, (n,), generator=generator)
    late_t = torch.randint(half, steps, (n,), generator=generator)
    return torch.where(late, late_t, early_t)


def training_loss(
    model: MCIEEditor,
    batch: dict,
    generator: torch.Generator,
    dropout: float = 0.05,
    edit_weight: float = 0.0,
    late_bias: float = 1.0,
) -> torch.Tensor:
    """One stochastic training loss: random timesteps (:func:`sample_timesteps`), noise and
    conditioning dropout; ``edit_weight``: see :func:`edit_weights`."""
    x0, src_z = encode_batch(model, batch, generator)
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    steps = model.scheduler.config.num_train_timesteps
    t = sample_timesteps(b, steps, generator, late_bias).to(x0.device)
    u = torch.rand(b, generator=generator)
    keep_text = ~(u < 2 * dropout)  # dropped for u in [0, 2p)
    keep_image = ~((u >= dropout) & (u < 3 * dropout))  # dropped for u in [p, 3p): both for [p, 2p)
    return diffusion_loss(
        model, batch, noise, t, keep_text, keep_image, encoded=(x0, src_z), edit_weight=edit_weight
    )

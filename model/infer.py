"""MCIE-E1 inference: InstructPix2Pix sampling with SACA/BCCA conditioning.

The loop is diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step (same
preprocessing, initial noise, guidance and postprocessing), so that with no decomposition and
gates at 0 it gives the pipeline's exact output for the same seed and weights. Guidance runs
the UNet on 3 blocks ``[text+image, image only, neither]``: per-sample tensors repeat with
``torch.cat([m] * 3)``; the text-free blocks get the empty prompt for the complex and every
sub-instruction; the "neither" block gets a zero source and a zero background mask (BCCA's
source tokens dropped).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from mcie.model.decompose import Decomposition
from mcie.model.editor import Conditioning, MCIEEditor, background_from_regions
from mcie.progress import track

SCHEDULERS = {"euler_a": EulerAncestralDiscreteScheduler, "ddim": DDIMScheduler}
#: DDIM's timesteps end at the last training step ("trailing", Lin et al. 2024, "Common Diffusion
#: Noise Schedules and Sample Steps are Flawed"): the training scheduler's "leading" spacing
#: starts 2 steps at t=500 and 1 step at t=0, on an input of pure noise. With 2 trailing steps
#: and no guidance a 760-step tiny-pixel model passed the pixel judge on 0.30 of its
#: sub-instructions, against 0.0 at 10 leading steps and guidance 3 / 1.5
#: (benchmarks/notes/2026-12-ladder.md)
SPACING = {"ddim": "trailing"}


def sampling_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """The size an image is sampled at: its own (``resolution`` None), or scaled so that its
    shorter side is ``resolution`` (the aspect kept), as training's centre square of the shorter
    side was resized to the checkpoint's resolution; objects then keep the scale it learned."""
    if resolution is None:
        return width, height
    s = resolution / min(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def fit_size(image: Image.Image, multiple: int) -> Image.Image:
    """``image`` with both sides cut down to multiples of ``multiple`` (resized, not cropped)."""
    w, h = image.size
    nw, nh = max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)
    return image if (nw, nh) == (w, h) else image.resize((nw, nh), Image.BICUBIC)


@torch.no_grad()
def edit_image(
    model: MCIEEditor,
    image: Image.Image,
    instruction: str,
    decomposition: Decomposition | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    seed: int = 0,
    scheduler: str | None = None,
    resolution: int | None = None,
    progress: bool = False,
    average: int | None = None,
) -> tuple[Image.Image, np.ndarray]:
    """Edit ``image`` following ``instruction``. Returns the edited image and the (K, H, W)
    regions used (K = 0 without a usable decomposition), both at the sampled size.

    ``resolution``: sample with the shorter side scaled to this many pixels (``mcie edit``
    passes the checkpoint's training resolution: a model trained at 32 px costs 64 times as
    much at 256 px and has never seen objects that large); None samples at the image's size.
    Callers resize the result back (``mcie edit`` does). ``progress``: a bar over the sampling
    steps on a terminal (``mcie edit``; off for callers with their own bar). ``steps``,
    ``guidance_scale``, ``image_guidance_scale``, ``scheduler``, ``average``: None takes the
    checkpoint's (:attr:`MCIEConfig.sampling`). ``average`` > 1 draws that many samples from
    different noise in one batch and returns their mean: an estimate of the posterior mean,
    which for an edit fixed by source and instruction is the edit itself, without the sampling
    grain of a single draw."""
    opts = model.cfg.sampling_with(
        steps=steps,
        guidance_scale=guidance_scale,
        image_guidance_scale=image_guidance_scale,
        scheduler=scheduler,
        average=average,
    )
    steps, scheduler, copies = opts["steps"], opts["scheduler"], opts["average"]
    guidance_scale, image_guidance_scale = opts["guidance_scale"], opts["image_guidance_scale"]
    if steps < 1 or copies < 1:
        raise ValueError(f"steps and average must be >= 1, got {steps} and {copies}")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
    model.eval()
    dev, cfg = model.device, model.cfg
    spacing = {"timestep_spacing": SPACING[scheduler]} if scheduler in SPACING else {}
    sched = SCHEDULERS[scheduler].from_config(model.scheduler.config, **spacing)
    processor = VaeImageProcessor(vae_scale_factor=cfg.vae_factor)
    image = image.convert("RGB")
    orig_w, orig_h = image.size  # decomposition boxes and masks are in the caller's pixels
    size = sampling_size(orig_w, orig_h, resolution)
    if size != (orig_w, orig_h):
        image = image.resize(size, Image.BICUBIC)
    image = fit_size(image, cfg.size_multiple)
    width, height = image.size

    # text: complex instruction + empty prompt (the pipeline's negative prompt)
    text = model.encode_ids(model.tokenize([instruction]))  # (1, L, D)
    empty = model.encode_ids(model.tokenize([""]))  # (1, L, D)
    # source image in UNet space (InstructPix2Pix: the VAE mode, unscaled)
    pixels = processor.preprocess(image).to(dev)  # (1, 3, H, W) in [-1, 1]
    src = model.encode_image(pixels)  # (1, C, h, w)
    h, w = src.shape[-2:]

    cond = Conditioning(torch.cat([text, empty, empty]), torch.cat([src, src, torch.zeros_like(src)]))
    regions_px = np.zeros((0, height, width), np.float32)
    subs = [s for s in (decomposition.subs if decomposition else []) if s.has_region][: cfg.max_sub_edits]
    if subs:
        regions_px = np.stack([s.region(orig_h, orig_w) for s in subs])  # (K, H0, W0)
        if (orig_h, orig_w) != (height, width):  # follow fit_size's resize (any covered pixel counts)
            r = torch.from_numpy(regions_px)[None]
            regions_px = (F.interpolate(r, size=(height, width), mode="area") > 0)[0].float().numpy()
        regions = model.latent_regions(torch.from_numpy(regions_px)[None].to(dev), (h, w))  # (1, K, h, w)
        sub_text = model.encode_ids(model.tokenize_subs([s.text for s in subs]))[None]  # (1, K, Ls, D)
        empty_sub = model.encode_ids(model.tokenize_subs([""]))[:, None].expand_as(sub_text)
        cond.sub_text = torch.cat([sub_text, empty_sub, empty_sub])
        cond.regions = torch.cat([regions] * 3)  # blocks, never repeat_interleave
        if decomposition.all_located and len(subs) == len(decomposition.subs):
            bg = background_from_regions(regions)
            cond.bg_mask = torch.cat([bg, bg, torch.zeros_like(bg)])  # "neither" drops the source

    # guidance 1 / 1 is the text-and-image prediction alone (u + (t - i) + (i - u) = t): one block
    guided = not (guidance_scale == 1.0 and image_guidance_scale == 1.0)
    cond = cond.blocks(3 if guided else 1, copies)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sched.set_timesteps(steps, device=dev)
    shape = (copies, cfg.image_channels, h, w)  # the first draw is the one a single sample gets
    latents = randn_tensor(shape, generator=generator, device=dev, dtype=text.dtype)
    latents = latents * sched.init_noise_sigma
    step_kwargs = {}
    params = set(inspect.signature(sched.step).parameters)
    if "generator" in params:
        step_kwargs["generator"] = generator
    if "eta" in params:
        step_kwargs["eta"] = 0.0
    for t in track(sched.timesteps, "edit", "steps") if progress else sched.timesteps:
        if guided:
            x = sched.scale_model_input(torch.cat([latents] * 3), t)
            noise_text, noise_image, noise_uncond = model.unet_forward(x, t, cond).chunk(3)
            noise = (
                noise_uncond
                + guidance_scale * (noise_text - noise_image)
                + image_guidance_scale * (noise_image - noise_uncond)
            )
        else:
            noise = model.unet_forward(sched.scale_model_input(latents, t), t, cond)
        latents = sched.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
    out = model.decode(latents).mean(dim=0, keepdim=True)  # the average of the draws
    return processor.postprocess(out, output_type="pil")[0], regions_px

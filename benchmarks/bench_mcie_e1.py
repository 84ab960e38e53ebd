"""Training-step cost of MCIE-E1 against the same UNet with diffusers' default processors.

Both variants share the same random weights built from the preset's config (no download, no
network): "plain" is InstructPix2Pix (complex instruction + concatenated source, stock
``AttnProcessor2_0``); "mcie-e1" adds the sub-instruction encodings, SACA and BCCA. A step is
forward + backward + AdamW on a synthetic batch (random images, K random box regions), text
and VAE encoders included, as in ``mcie train``.

    python benchmarks/bench_mcie_e1.py                       # tiny preset, CPU
    python benchmarks/bench_mcie_e1.py --device cuda --preset sd15 --resolution 512 --dtype bf16

On a CPU the variants alternate step by step; it prints each one's median wall and thread-CPU
step time, both ratios, and the load average before and after (CPU time is less swayed by
other processes on a shared machine). ``--channels-last`` and ``--compile`` apply to both
UNets. On CUDA it prints samples/s and peak memory per variant. ``--dtype bf16`` runs the step under
``torch.autocast(bfloat16)`` with fp32 weights (mixed precision, as ``mcie train
--mixed-precision bf16``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0

from mcie.model.config import MCIEConfig
from mcie.model.editor import MCIEEditor
from mcie.model.training import training_loss


def synthetic_batch(model: MCIEEditor, b: int, res: int, k: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    regions = torch.zeros(b, model.cfg.max_sub_edits, res, res)
    for i in range(b):
        for j in range(k):
            x0, y0 = torch.randint(0, res // 2, (2,), generator=g).tolist()
            s = res // 4
            regions[i, j, y0 : y0 + s, x0 : x0 + s] = 1
    subs = ["make the red circle blue", "remove the small star", "add a large green square at the top",
            "move the hexagon to the left", "shrink the yellow diamond"]  # fmt: skip
    texts = (subs[:k] + [""] * model.cfg.max_sub_edits)[: model.cfg.max_sub_edits]
    return {
        "src": torch.rand(b, 3, res, res, generator=g) * 2 - 1,
        "tgt": torch.rand(b, 3, res, res, generator=g) * 2 - 1,
        "regions": regions,
        "input_ids": model.tokenize([", ".join(subs[:k])] * b),
        # sub-instructions at cfg.sub_length tokens, as `mcie train`'s loader gives them
        "sub_ids": torch.stack([model.tokenize(texts, model.cfg.sub_length)] * b),
    }


def plain_loss(model: MCIEEditor, batch: dict, g: torch.Generator) -> torch.Tensor:
    """InstructPix2Pix's loss with the stock UNet call (no sub-instructions, no extra inputs)."""
    dev = model.device
    with torch.no_grad():
        x0 = model.encode_image(batch["tgt"].to(dev), sample=True, generator=g)
        src = model.encode_image(batch["src"].to(dev))
        text = model.encode_ids(batch["input_ids"].to(dev))
    noise = torch.randn(x0.shape, generator=g).to(x0)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g).to(dev)
    noisy = model.scheduler.add_noise(x0, noise, t)
    pred = model.unet(torch.cat([noisy, src], 1), t, encoder_hidden_states=text, return_dict=False)[0]
    return F.mse_loss(pred.float(), noise.float())


class StepTimer:
    """One variant's model, optimiser and loss; ``step()`` runs and times one training step."""

    def __init__(self, model, loss_fn, batch, args, device) -> None:
        self.model, self.loss_fn, self.batch, self.device = model, loss_fn, batch, device
        self.opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5)
        self.bf16 = args.dtype == "bf16"
        self.g = torch.Generator().manual_seed(0)
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # this thread's CPU time: less swayed by other processes

    def step(self, record: bool) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.thread_time()
        self.opt.zero_grad(set_to_none=True)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            loss = self.loss_fn(self.model, self.batch, self.g)
        loss.backward()
        self.opt.step()
        if cuda:
            torch.cuda.synchronize()
        if record:
            self.times.append(time.perf_counter() - t0)
            self.cpu_times.append(time.thread_time() - c0)

    def summary(self, batch_size: int) -> dict:
        med = sorted(self.times)[len(self.times) // 2]
        cpu = sorted(self.cpu_times)[len(self.cpu_times) // 2]
        return {
            "step_s_median": round(med, 4),
            "step_cpu_s_median": round(cpu, 4),
            "samples_per_s": round(batch_size / med, 2),
        }


def prepare(model: MCIEEditor, device, channels_last: bool = False, compile_unet: bool = False) -> MCIEEditor:
    model.to(device)
    for part in (model.text_encoder, model.vae):
        if part is not None:
            part.requires_grad_(False)
    if channels_last:  # NHWC weights: oneDNN convolutions without layout reorders
        model.unet.to(memory_format=torch.channels_last)
    if compile_unet:  # in place, so the processors and parameters stay where the model has them
        model.unet.compile()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "tiny-pixel", "sd15"], help="model size")
    p.add_argument("--resolution", type=int, default=None, help="image side (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per step (default 4)")
    p.add_argument("--sub-edits", type=int, default=3, help="sub-instructions with regions per sample")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="fp32, or bf16 autocast")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--sub-length",
        type=int,
        default=None,
        help="tokens per sub-instruction (default: the preset's sub_max_length, as mcie train)",
    )
    p.add_argument("--channels-last", action="store_true", help="both UNets in channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile both UNets (warm-up steps compile)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kw = {"resolution": args.resolution} if args.resolution else {}
    # the UNet's cost is compared: both variants keep the text encoder frozen (tiny-pixel trains it)
    if args.sub_length:
        kw["sub_max_length"] = args.sub_length
    cfg = MCIEConfig.preset_config(args.preset, train_text_encoder=False, **kw)
    mcie = MCIEEditor.from_config(cfg, seed=0)
    plain = copy.deepcopy(mcie)
    plain.unet.set_attn_processor(AttnProcessor2_0())  # same weights, diffusers' default processors
    plain.processors = {}
    batch = synthetic_batch(mcie, args.batch_size, cfg.resolution, args.sub_edits)
    variants = {
        "plain": (plain, plain_loss),
        "mcie-e1": (mcie, lambda m, b, g: training_loss(m, b, g, dropout=0.0)),
    }
    results: dict = {}
    load_before = os.getloadavg()[0]
    if device.type == "cpu":
        # CPU: interleave the variants step by step, so load from other processes hits both alike
        timers = {
            n: StepTimer(prepare(m, device, args.channels_last, args.compile), fn, batch, args, device)
            for n, (m, fn) in variants.items()
        }
        for i in range(args.warmup + args.steps):
            for timer in timers.values():
                timer.step(record=i >= args.warmup)
        for n, timer in timers.items():
            results[n] = timer.summary(args.batch_size)
    else:
        # GPU: one variant at a time, so each one's peak memory is its own
        for n, (m, fn) in variants.items():
            timer = StepTimer(prepare(m, device, args.channels_last, args.compile), fn, batch, args, device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            for i in range(args.warmup + args.steps):
                timer.step(record=i >= args.warmup)
            results[n] = timer.summary(args.batch_size)
            results[n]["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            del timer
            m.to("cpu")
    for n, (m, _) in variants.items():
        results[n]["unet_params_m"] = round(sum(p.numel() for p in m.trainable_parameters()) / 1e6, 3)
    results["ratio_step_time"] = round(
        results["mcie-e1"]["step_s_median"] / results["plain"]["step_s_median"], 3
    )
    results["ratio_step_cpu_time"] = round(
        results["mcie-e1"]["step_cpu_s_median"] / results["plain"]["step_cpu_s_median"], 3
    )
    results["setup"] = {
        "preset": args.preset,
        "resolution": cfg.resolution,
        "batch_size": args.batch_size,
        "sub_edits": args.sub_edits,
        "sub_length": cfg.sub_length,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "channels_last": args.channels_last,
        "compile": args.compile,
        "torch": torch.__version__,
        # 1-minute load average before and after the timed steps (other processes' share)
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return
    print(f"setup: {results['setup']}")
    for name in ("plain", "mcie-e1"):
        print(f"{name:8s} {results[name]}")
    print(
        f"MCIE-E1 / plain step time: {results['ratio_step_time']} wall, "
        f"{results['ratio_step_cpu_time']} CPU (load average {results['setup']['load_average']})"
    )


if __name__ == "__main__":
    main()

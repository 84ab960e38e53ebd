"""``mcie train``: a plain training loop for MCIE-E1 over MCIE shards.

Our choices where the issue leaves room: a plain PyTorch loop rather than accelerate (one
process, one device; ``--mixed-precision bf16`` uses ``torch.autocast``; ``--grad-accum``
accumulates); EMA and validation images are not implemented yet. A run folder holds
``checkpoint-<step>/`` folders (model checkpoint + ``trainer_state.json`` +
``optimizer.safetensors``), at most ``--keep-checkpoints`` of them, and ``log.jsonl`` with
one line per logged step. ``--resume`` continues from the newest checkpoint; the data stream is
reseeded with (seed, step), so a resumed run sees a different, not the same, sample order.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from contextlib import nullcontext

import torch
from safetensors.torch import load_file, save_file

from mcie.model.config import MCIEConfig
from mcie.model.data import shard_loader
from mcie.model.editor import MCIEEditor
from mcie.model.training import training_loss

log = logging.getLogger(__name__)
_CKPT = re.compile(r"^checkpoint-(\d+)$")


# -- checkpoints ---------------------------------------------------------------------------------


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the run's checkpoints, oldest first."""
    if not os.path.isdir(run_dir):
        return []
    found = [
        (int(m.group(1)), os.path.join(run_dir, n)) for n in os.listdir(run_dir) if (m := _CKPT.match(n))
    ]
    return sorted(found)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint folder, or a run folder (→ its newest checkpoint)."""
    if os.path.isfile(os.path.join(path, "mcie", "config.json")):
        return path
    ckpts = list_checkpoints(path)
    if not ckpts:
        raise FileNotFoundError(
            f"{path!r} is neither an MCIE-E1 checkpoint nor a run folder with checkpoints"
        )
    return ckpts[-1][1]


def save_optimizer(opt: torch.optim.Optimizer, path: str) -> None:
    """Optimizer state as safetensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{i}.{k}"] = v.detach().contiguous()
            else:
                scalars[f"{i}.{k}"] = v
    save_file(tensors, path + ".safetensors")
    with open(path + ".json", "w") as fh:
        json.dump({"param_groups": sd["param_groups"], "scalars": scalars}, fh)


def load_optimizer(opt: torch.optim.Optimizer, path: str) -> None:
    tensors = load_file(path + ".safetensors")
    with open(path + ".json") as fh:
        meta = json.load(fh)
    state: dict[int, dict] = {}
    for name, v in list(tensors.items()) + list(meta["scalars"].items()):
        i, k = name.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(model: MCIEEditor, opt, step: int, run_dir: str, keep: int, extra: dict) -> str:
    """Write checkpoint-<step> atomically (temp folder, then rename); drop the oldest beyond ``keep``."""
    final = os.path.join(run_dir, f"checkpoint-{step}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    save_optimizer(opt, os.path.join(tmp, "optimizer"))
    with open(os.path.join(tmp, "trainer_state.json"), "w") as fh:
        json.dump({"step": step, **extra}, fh, indent=2, sort_keys=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


# -- the loop ------------------------------------------------------------------------------------


def _forever(loader):
    """Batches from ``loader`` epoch after epoch (a new pass per epoch: shard order reshuffled)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the shards hold no samples")


def build_model(args) -> MCIEEditor:
    overrides = {"saca": not args.no_saca, "bcca": not args.no_bcca}
    if args.resolution:
        overrides["resolution"] = args.resolution
    cfg = MCIEConfig.preset_config(args.preset, **overrides)
    if args.init_from:
        return MCIEEditor.from_pretrained_sd(args.init_from, cfg)
    return MCIEEditor.from_config(cfg, seed=args.seed)


def train(args) -> dict:
    """Run the training loop described by parsed ``mcie train`` arguments; returns a summary."""
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    step = 0
    ckpts = list_checkpoints(args.out)
    if ckpts and not args.resume:
        raise FileExistsError(f"{args.out!r} already holds checkpoints; pass --resume or use another --out")
    if args.resume and ckpts:
        path = ckpts[-1][1]
        model = MCIEEditor.load(path)
        with open(os.path.join(path, "trainer_state.json")) as fh:
            step = json.load(fh)["step"]
    else:
        model = build_model(args)
    model.to(device)
    if model.vae is not None:
        model.vae.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    model.unet.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if args.resume and ckpts:
        load_optimizer(opt, os.path.join(ckpts[-1][1], "optimizer"))
    cfg = model.cfg
    loader = shard_loader(
        args.shards,
        model.tokenizer,
        cfg.resolution,
        cfg.max_sub_edits,
        args.batch_size,
        workers=args.workers,
        shuffle_buffer=args.shuffle_buffer,
        seed=args.seed * 1_000_003 + step,
        repeat=False,
    )
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.mixed_precision == "bf16" else nullcontext()
    )
    log_path = os.path.join(args.out, "log.jsonl")
    t0, losses, last_ckpt = time.time(), [], None
    batches = _forever(loader)
    start = step
    while step < args.max_steps:
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(args.grad_accum):
            batch = next(batches)
            with autocast:
                loss = training_loss(model, batch, gen, dropout=args.conditioning_dropout) / args.grad_accum
            loss.backward()
            total += float(loss.detach())
        if args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), args.max_grad_norm)
        opt.step()
        step += 1
        losses.append(total)
        if step % args.log_every == 0 or step == args.max_steps:
            rec = {"step": step, "loss": sum(losses[-args.log_every :]) / len(losses[-args.log_every :])}
            rec["elapsed_s"] = round(time.time() - t0, 2)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            if args.progress:
                print(
                    f"step {step}/{args.max_steps} loss {rec['loss']:.4f} ({rec['elapsed_s']} s)", flush=True
                )
        if step % args.checkpoint_every == 0 or step == args.max_steps:
            last_ckpt = save_checkpoint(
                model, opt, step, args.out, args.keep_checkpoints, {"preset": cfg.preset, "loss": total}
            )
    return {
        "steps_run": step - start,
        "step": step,
        "final_loss": losses[-1] if losses else None,
        "checkpoint": last_ckpt,
        "elapsed_s": round(time.time() - t0, 2),
    }

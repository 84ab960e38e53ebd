"""``mcie train``: the MCIE-E1 training loop over MCIE shards, on ``accelerate``.

One loop for one CPU process, one GPU or several: an ``Accelerator`` built from explicit
arguments (no ``accelerate config`` needed; ``--device cpu`` → ``cpu=True``) wraps the loss
(DDP across processes: gradients averaged; autocast for ``--mixed-precision bf16``) and the
optimizer (``--grad-accum`` through ``accelerator.accumulate``). Under
``accelerate launch --multi_gpu --num_processes N -m mcie.cli train ...`` every process reads
its own shards (webdataset's ``split_by_node``, from the ``RANK`` / ``WORLD_SIZE`` the launcher
sets), with the same data seed and its own noise seed; only the main process writes
checkpoints, ``log.jsonl``, validation images and progress lines (the logged loss is the mean
over processes).

A run folder holds ``checkpoint-<step>/`` folders, at most ``--keep-checkpoints`` of them, each
the model checkpoint (``MCIEEditor.save``) + ``trainer_state.json`` + ``optimizer.safetensors``
/ ``.json``: safetensors and JSON only, never pickle (so not ``accelerator.save_state``).
With ``--ema`` (:mod:`mcie.model.ema`) the model folders hold the averaged weights, which
``mcie edit`` and ``MCIEEditor.load`` use, and ``raw_weights.safetensors`` beside them the
trained ones; ``--resume`` puts the raw weights back in the model and the folders' weights in
the EMA. ``--resume`` continues from the newest checkpoint; the data stream is reseeded with
(seed, step), so a resumed run sees a different, not the same, sample order (the optimizer's
state, learning rate included, comes from the checkpoint).

``--validate-every N`` edits ``--validation-samples`` fixed samples with the current weights
(the EMA when kept; :mod:`mcie.model.validation`), writes ``validation/step-<N>.png`` and logs
``val_region_l1`` / ``val_background_l1``. ``log.jsonl`` has one line per logged step and one
per validation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from contextlib import nullcontext

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mcie.model.config import MCIEConfig
from mcie.model.data import expand_shards, shard_loader
from mcie.model.editor import MCIEEditor
from mcie.model.ema import EMAWeights
from mcie.model.training import training_loss
from mcie.model.validation import ValidationSet
from mcie.progress import Progress

log = logging.getLogger(__name__)
_CKPT = re.compile(r"^checkpoint-(\d+)$")
RAW_FILE = "raw_weights.safetensors"  # trained (not averaged) weights, beside EMA model folders


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


def save_raw_weights(model: MCIEEditor, path: str) -> None:
    """The trained weights (UNet with SACA/BCCA; the text encoder when trained) by name."""
    save_file({n: p.detach().contiguous() for n, p in model.named_trainable_parameters()}, path)


def load_raw_weights(model: MCIEEditor, path: str) -> None:
    state, params = load_file(path), dict(model.named_trainable_parameters())
    if set(state) != set(params):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"{path}: weights do not match the model: missing {missing[:3]}, extra {extra[:3]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n])


def save_checkpoint(
    model: MCIEEditor, opt, step: int, run_dir: str, keep: int, extra: dict, ema: EMAWeights | None = None
) -> str:
    """Write checkpoint-<step> atomically (temp folder, then rename); drop the oldest beyond ``keep``.

    With ``ema`` the model folders hold the averaged weights (what ``mcie edit`` loads) and
    ``raw_weights.safetensors`` beside them the trained ones (what ``--resume`` continues)."""
    final = os.path.join(run_dir, f"checkpoint-{step}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with ema.applied() if ema is not None else nullcontext():
        model.save(tmp)
    if ema is not None:
        save_raw_weights(model, os.path.join(tmp, RAW_FILE))
    save_optimizer(opt, os.path.join(tmp, "optimizer"))
    state = {"step": step, "weights": "ema" if ema is not None else "raw", **extra}
    if ema is not None:
        state["ema_decay"] = ema.decay
    with open(os.path.join(tmp, "trainer_state.json"), "w") as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return final


# -- the loop ------------------------------------------------------------------------------------


class TrainingObjective(nn.Module):
    """The editor with :func:`training_loss` as its ``forward``, so that accelerate can wrap it
    (DDP across processes, autocast for mixed precision) while the editor stays as it is."""

    def __init__(self, model: MCIEEditor) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        batch: dict,
        generator: torch.Generator,
        dropout: float,
        edit_weight: float = 0.0,
        late_bias: float = 1.0,
    ) -> torch.Tensor:
        return training_loss(
            self.model, batch, generator, dropout=dropout, edit_weight=edit_weight, late_bias=late_bias
        )


#: parameters new to MCIE-E1 (SACA/BCCA gates, BCCA's source projections): they may learn faster
NEW_PARAMS = ("saca_gate", "bcca_gate", "to_k_src", "to_v_src")


def param_groups(model: MCIEEditor, lr: float, weight_decay: float, gate_lr_mult: float = 1.0) -> list[dict]:
    """AdamW groups: the backbone at ``lr``; MCIE-E1's new parameters at ``lr * gate_lr_mult``,
    and the gates without weight decay (decay would pull a gate back to 0, shutting its branch)."""
    base, new, gates = [], [], []
    for n, p in model.named_trainable_parameters():
        if not p.requires_grad:
            continue
        leaf = n.rsplit(".", 1)[-1]
        if leaf in ("saca_gate", "bcca_gate"):
            gates.append(p)
        elif any(f".{k}." in n for k in NEW_PARAMS):
            new.append(p)
        else:
            base.append(p)
    groups = [{"params": base, "lr": lr, "weight_decay": weight_decay}]
    if new:
        groups.append({"params": new, "lr": lr * gate_lr_mult, "weight_decay": weight_decay})
    if gates:
        groups.append({"params": gates, "lr": lr * gate_lr_mult, "weight_decay": 0.0})
    return groups


def lr_schedule(opt: torch.optim.Optimizer, args):
    """The learning-rate schedule of ``--lr-schedule`` / ``--warmup-steps`` over ``--max-steps``
    (diffusers' ``get_scheduler``: constant, cosine or linear decay to 0 after a linear warm-up).
    A decay lets a short run end on settled weights: with a constant rate, a tiny model's shades
    still scattered by ~12 levels after 800 steps (benchmarks/notes/2026-12-ladder.md)."""
    from diffusers.optimization import get_scheduler

    name = getattr(args, "lr_schedule", "constant")
    warmup = getattr(args, "warmup_steps", 0)
    if name == "constant":
        name = "constant_with_warmup" if warmup else "constant"
    return get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=args.max_steps)


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
    if getattr(args, "train_text_encoder", None) is not None:  # else the preset decides
        overrides["train_text_encoder"] = args.train_text_encoder
    if getattr(args, "gate_init", None) is not None:  # else the preset decides
        overrides["gate_init"] = args.gate_init
    cfg = MCIEConfig.preset_config(args.preset, **overrides)
    if args.init_from:
        return MCIEEditor.from_pretrained_sd(args.init_from, cfg, seed=args.seed)
    return MCIEEditor.from_config(cfg, seed=args.seed)


def make_accelerator(args):
    """An ``Accelerator`` from explicit arguments (no ``accelerate config`` needed): CPU for
    ``--device cpu``, else the GPU accelerate assigns to this process."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps its state in process-wide singletons that refuse a second, different
    # mixed_precision; train() may run several times in one process (tests, notebooks). A
    # launched run keeps its process group (PartialState).
    launched = torch.distributed.is_available() and torch.distributed.is_initialized()
    AcceleratorState._reset_state(reset_partial_state=not launched)
    GradientState._reset_state()
    acc = Accelerator(
        cpu=args.device == "cpu",
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
    )
    if acc.device.type != torch.device(args.device).type:
        raise ValueError(f"--device {args.device}: accelerate found none and would use {acc.device}")
    return acc


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def progress_line(step: int, max_steps: int, loss: float, steps_done: int, elapsed: float) -> str:
    """``step 20/200 | loss 0.1234 | 3.10 step/s | 6.4s elapsed | ETA 58.0s``."""
    rate = steps_done / elapsed if elapsed > 0 else float("nan")
    eta = (max_steps - step) / rate if rate > 0 else float("nan")
    return (
        f"step {step}/{max_steps} | loss {loss:.4f} | {rate:.2f} step/s | {_duration(elapsed)} elapsed"
        f" | ETA {_duration(eta) if eta == eta else '?'}"
    )


def format_summary(summary: dict) -> str:
    """The end-of-run summary in one human-readable line."""
    loss = summary["final_loss"]
    text = (
        f"trained {summary['steps_run']} steps (now at step {summary['step']}) in "
        f"{_duration(summary['elapsed_s'])}, {summary['steps_per_s']} step/s on "
        f"{summary['processes']} process(es); final loss {'-' if loss is None else f'{loss:.4f}'}; "
        f"checkpoint {summary['checkpoint']}"
    )
    if summary.get("skipped_samples"):
        text += f"; {summary['skipped_samples']} bad samples skipped (see the warnings)"
    if summary.get("validation"):
        v = summary["validation"]
        text += f"; validation region L1 {v['val_region_l1']}, background L1 {v['val_background_l1']}"
    return text


class _RunLog:
    """log.jsonl, validation images and progress lines: written by the main process only."""

    def __init__(self, args, enabled: bool) -> None:
        self.out, self.enabled, self.progress = args.out, enabled, args.progress and enabled
        self.keys_path = os.path.join(args.out, "keys-rank{}.jsonl") if args.log_keys else None

    def record(self, rec: dict) -> None:
        if self.enabled:
            with open(os.path.join(self.out, "log.jsonl"), "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)

    def keys(self, rank: int, step: int, keys: list[str]) -> None:
        if self.keys_path:  # every process writes its own file: which samples each rank saw
            with open(self.keys_path.format(rank), "a") as fh:
                fh.write(json.dumps({"step": step, "keys": keys}) + "\n")


def _setup_model(args, accelerator) -> tuple[MCIEEditor, int, EMAWeights | None, str | None]:
    """The model at the start step (fresh, or the newest checkpoint's raw weights), its EMA
    (main process only) and the checkpoint resumed from."""
    ckpts = list_checkpoints(args.out)
    if ckpts and not args.resume:
        raise FileExistsError(f"{args.out!r} already holds checkpoints; pass --resume or use another --out")
    path = ckpts[-1][1] if args.resume and ckpts else None
    step = 0
    if path:
        model = MCIEEditor.load(path)  # the averaged weights when that run kept an EMA
        with open(os.path.join(path, "trainer_state.json")) as fh:
            step = json.load(fh)["step"]
    else:
        model = build_model(args)
    model.to(accelerator.device)
    if model.vae is not None:
        model.vae.requires_grad_(False)
    model.text_encoder.requires_grad_(model.cfg.train_text_encoder)
    model.eval()
    model.unet.train()
    ema = None
    if args.ema and accelerator.is_main_process:  # ranks hold equal weights: one average suffices
        trainable = ((n, p) for n, p in model.named_trainable_parameters() if p.requires_grad)
        ema = EMAWeights(trainable, args.ema_decay)
    if path and os.path.isfile(os.path.join(path, RAW_FILE)):
        load_raw_weights(model, os.path.join(path, RAW_FILE))
    return model, step, ema, path


def _validate(model, ema, validation, step: int, run_log: _RunLog) -> dict:
    t0 = time.time()
    with ema.applied() if ema is not None else nullcontext():
        grid, metrics = validation.run(model)
    model.unet.train()  # edit_image switched the model to eval mode
    os.makedirs(os.path.join(run_log.out, "validation"), exist_ok=True)
    grid.save(os.path.join(run_log.out, "validation", f"step-{step}.png"))
    run_log.record({"step": step, **metrics, "val_s": round(time.time() - t0, 2)})
    run_log.say(
        f"validation step {step}: region L1 {metrics['val_region_l1']}, "
        f"background L1 {metrics['val_background_l1']} ({time.time() - t0:.1f}s)"
    )
    return metrics


def train(args) -> dict:
    """Run the training loop described by parsed ``mcie train`` arguments; returns a summary."""
    accelerator = make_accelerator(args)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    n_shards = len(expand_shards(args.shards))
    if n_shards < world * max(1, args.workers):  # split_by_node / split_by_worker split whole shards
        raise ValueError(
            f"{n_shards} shard(s) cannot feed {world} process(es) x {max(1, args.workers)} loader worker(s):"
            " every one needs a shard of its own"
        )
    if main:
        os.makedirs(args.out, exist_ok=True)
    accelerator.wait_for_everyone()
    model, step, ema, resumed = _setup_model(args, accelerator)
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(
        param_groups(model, args.lr, args.weight_decay, getattr(args, "gate_lr_mult", 1.0)),
        lr=args.lr,
        weight_decay=args.weight_decay,
    )
    # before the optimizer's state is loaded: the schedule's base rates are --lr's, not the
    # decayed rates a checkpoint holds; it is then stepped to the start step
    schedule = lr_schedule(opt, args)
    if resumed:
        load_optimizer(opt, os.path.join(resumed, "optimizer"))
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": on purpose here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                schedule.step()
    objective, opt = accelerator.prepare(TrainingObjective(model), opt)
    cfg = model.cfg
    validation = None
    if args.validate_every and main:
        pattern = args.validation_shards or args.shards
        validation = ValidationSet.from_shards(
            pattern, cfg.resolution, args.validation_samples, args.validation_steps
        )
    loader = shard_loader(
        args.shards,
        model.tokenizer,
        cfg.resolution,
        cfg.max_sub_edits,
        args.batch_size,
        workers=args.workers,
        shuffle_buffer=args.shuffle_buffer,
        seed=args.seed * 1_000_003 + step,  # equal on every rank; split_by_node gives each its shards
        repeat=False,
        sub_length=cfg.sub_length,
    )
    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step + rank * 1_000_000_007)  # noise per rank
    run_log = _RunLog(args, main)
    t0, losses, last_ckpt, last_val, skipped = time.time(), [], None, None, 0
    batches = _forever(loader)
    start = step
    # a bar on a terminal (main process); the step lines of --log-every otherwise
    bar = Progress(args.max_steps - start, "train", "steps") if main and args.progress else None
    while step < args.max_steps:
        total, keys = 0.0, []
        for _ in range(args.grad_accum):
            batch = next(batches)
            keys += list(batch["key"])
            skipped += int(batch["skipped"].sum())  # bad samples the loader left out (logged)
            with accelerator.accumulate(objective):
                loss = objective(
                    batch,
                    gen,
                    args.conditioning_dropout,
                    getattr(args, "edit_loss_weight", 0.0),
                    getattr(args, "late_timestep_bias", 1.0),
                )
                accelerator.backward(loss)  # divides by grad_accum; DDP averages over processes
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                opt.step()  # a no-op until the last accumulated batch
                opt.zero_grad(set_to_none=True)
            total += float(loss.detach()) / args.grad_accum
        schedule.step()
        step += 1
        losses.append(total)
        if ema is not None:
            ema.update(step)
        run_log.keys(rank, step, keys)
        if bar is not None:
            bar.update(1, loss=f"{total:.4f}")
        if step % args.log_every == 0 or step == args.max_steps:
            window = losses[-args.log_every :]
            local = torch.tensor(sum(window) / len(window), device=accelerator.device)
            mean = accelerator.reduce(local, "mean")  # over processes
            rec = {"step": step, "loss": float(mean), "elapsed_s": round(time.time() - t0, 2)}
            run_log.record(rec)
            if bar is None or bar.bar is None:
                run_log.say(progress_line(step, args.max_steps, rec["loss"], step - start, time.time() - t0))
        if validation is not None and (step % args.validate_every == 0 or step == args.max_steps):
            last_val = _validate(model, ema, validation, step, run_log)
        if step % args.checkpoint_every == 0 or step == args.max_steps:
            if main:
                extra = {"preset": cfg.preset, "loss": total, "processes": world}
                last_ckpt = save_checkpoint(model, opt, step, args.out, args.keep_checkpoints, extra, ema)
            accelerator.wait_for_everyone()
    elapsed = time.time() - t0
    if bar is not None:
        bar.close()
    accelerator.end_training()
    return {
        "steps_run": step - start,
        "step": step,
        "final_loss": losses[-1] if losses else None,
        "checkpoint": last_ckpt,
        "validation": last_val,
        "elapsed_s": round(elapsed, 2),
        "steps_per_s": round((step - start) / elapsed, 3) if elapsed > 0 else None,
        "processes": world,
        "process_index": rank,
        "skipped_samples": skipped,
    }

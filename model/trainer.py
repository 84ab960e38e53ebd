"""``mcie train``: the MCIE-E1 training loop over MCIE shards, on ``accelerate``.

:func:`train` takes one :class:`~mcie.model.train_config.TrainConfig` (the presets' recipes
and the ``--config`` rerun live there); every run writes it, with its data's SHA-256, as
``train_config.json`` in the run folder.

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
per validation; its ``elapsed_s`` counts training time across ``--resume`` (a checkpoint
records the time spent up to it). The same curves, the gates' mean |value| and the validation
images with their instructions go to ``--report-to`` (:mod:`mcie.model.tracking`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
import warnings
from contextlib import nullcontext
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mcie.model.config import MCIEConfig
from mcie.model.data import expand_shards, shard_loader
from mcie.model.editor import MCIEEditor
from mcie.model.ema import EMAWeights
from mcie.model.tracking import gate_means, open_tracker
from mcie.model.train_config import TrainConfig, write_run_record
from mcie.model.training import training_loss
from mcie.model.validation import ValidationSet
from mcie.progress import Progress, duration

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


def lr_schedule(opt: torch.optim.Optimizer, name: str, warmup: int, max_steps: int):
    """The learning-rate schedule ``name`` with ``warmup`` steps over ``max_steps`` (diffusers'
    ``get_scheduler``: constant, cosine or linear decay to 0 after a linear warm-up). On the
    ``mini`` rung a cosine decay did worse than a constant rate (benchmarks/notes/2026-12-ladder.md): the
    model is still learning fast when a short budget ends."""
    from diffusers.optimization import get_scheduler

    if name == "constant":
        name = "constant_with_warmup" if warmup else "constant"
    return get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=max_steps)


def _forever(loader):
    """Batches from ``loader`` epoch after epoch (a new pass per epoch: shard order reshuffled)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the shards hold no samples")


def build_model(cfg: TrainConfig) -> MCIEEditor:
    """A fresh model of the run: the preset's architecture, random or from ``init_from``."""
    model_cfg: MCIEConfig = cfg.model_config()
    if cfg.init_from:
        return MCIEEditor.from_pretrained_sd(cfg.init_from, model_cfg, seed=cfg.seed)
    return MCIEEditor.from_config(model_cfg, seed=cfg.seed)


def make_accelerator(cfg: TrainConfig):
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
        cpu=cfg.device == "cpu",
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
    )
    if acc.device.type != torch.device(cfg.device).type:
        raise ValueError(f"--device {cfg.device}: accelerate found none and would use {acc.device}")
    return acc


def progress_line(step: int, max_steps: int, loss: float, steps_done: int, elapsed: float) -> str:
    """``step 20/200 | loss 0.1234 | 3.10 step/s | 6.4s elapsed | ETA 58.0s``."""
    rate = steps_done / elapsed if elapsed > 0 else float("nan")
    eta = (max_steps - step) / rate if rate > 0 else float("nan")
    return (
        f"step {step}/{max_steps} | loss {loss:.4f} | {rate:.2f} step/s | {duration(elapsed)} elapsed"
        f" | ETA {duration(eta)}"
    )


def format_summary(summary: dict) -> str:
    """The end-of-run summary in one human-readable line."""
    loss = summary["final_loss"]
    text = (
        f"trained {summary['steps_run']} steps (now at step {summary['step']}) in "
        f"{duration(summary['elapsed_s'])}, {summary['steps_per_s']} step/s on "
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
    """log.jsonl, the tracker, validation images and progress lines: the main process only."""

    def __init__(self, cfg: TrainConfig, enabled: bool, tracker) -> None:
        self.out, self.enabled, self.progress = cfg.out, enabled, cfg.progress and enabled
        self.keys_path = os.path.join(cfg.out, "keys-rank{}.jsonl") if cfg.log_keys else None
        self.tracker = tracker

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


def _setup_model(cfg: TrainConfig, accelerator) -> tuple[MCIEEditor, dict, EMAWeights | None, str | None]:
    """The model at the start step (fresh, or the newest checkpoint's raw weights), the state
    it starts from (``step``, ``elapsed_s``: 0 for a fresh run), its EMA (main process only)
    and the checkpoint resumed from."""
    ckpts = list_checkpoints(cfg.out)
    if ckpts and not cfg.resume:
        raise FileExistsError(f"{cfg.out!r} already holds checkpoints; pass --resume or use another --out")
    path = ckpts[-1][1] if cfg.resume and ckpts else None
    start = {"step": 0, "elapsed_s": 0.0}
    if path:
        model = MCIEEditor.load(path)  # the averaged weights when that run kept an EMA
        with open(os.path.join(path, "trainer_state.json")) as fh:
            state = json.load(fh)
        # a checkpoint of an older mcie has no elapsed time: the clock restarts at 0 then
        start = {"step": state["step"], "elapsed_s": float(state.get("elapsed_s", 0.0))}
    else:
        model = build_model(cfg)
    model.to(accelerator.device)
    if model.vae is not None:
        model.vae.requires_grad_(False)
    model.text_encoder.requires_grad_(model.cfg.train_text_encoder)
    model.eval()
    model.unet.train()
    ema = None
    if cfg.ema and accelerator.is_main_process:  # ranks hold equal weights: one average suffices
        trainable = ((n, p) for n, p in model.named_trainable_parameters() if p.requires_grad)
        ema = EMAWeights(trainable, cfg.ema_decay)
    if path and os.path.isfile(os.path.join(path, RAW_FILE)):
        load_raw_weights(model, os.path.join(path, RAW_FILE))
    return model, start, ema, path


def _validate(model, ema, validation, step: int, run_log: _RunLog) -> dict:
    t0 = time.time()
    with ema.applied() if ema is not None else nullcontext():
        grid, metrics = validation.run(model)
    model.unet.train()  # edit_image switched the model to eval mode
    os.makedirs(os.path.join(run_log.out, "validation"), exist_ok=True)
    grid.save(os.path.join(run_log.out, "validation", f"step-{step}.png"))
    run_log.record({"step": step, **metrics, "val_s": round(time.time() - t0, 2)})
    run_log.tracker.scalars({f"val/{k[4:]}": v for k, v in metrics.items() if v is not None}, step)
    rows = "  \n".join(f"row {i}: {s.instruction}" for i, s in enumerate(validation.samples))
    run_log.tracker.image("val/edits", grid, f"source | edited | target  \n{rows}", step)
    run_log.say(
        f"validation step {step}: region L1 {metrics['val_region_l1']}, "
        f"background L1 {metrics['val_background_l1']} ({time.time() - t0:.1f}s)"
    )
    return metrics


def _check_feed(cfg: TrainConfig, world: int) -> None:
    n_shards = len(expand_shards(cfg.shards))
    if n_shards < world * max(1, cfg.workers):  # split_by_node / split_by_worker split whole shards
        raise ValueError(
            f"{n_shards} shard(s) cannot feed {world} process(es) x {max(1, cfg.workers)} loader worker(s):"
            " every one needs a shard of its own"
        )


def _optimizer(cfg: TrainConfig, model: MCIEEditor, step: int, resumed: str | None):
    """AdamW and its schedule at ``step`` (the checkpoint's state when resumed)."""
    opt = torch.optim.AdamW(
        param_groups(model, cfg.lr, cfg.weight_decay, cfg.gate_lr_mult),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    # before the optimizer's state is loaded: the schedule's base rates are --lr's, not the
    # decayed rates a checkpoint holds; it is then stepped to the start step
    schedule = lr_schedule(opt, cfg.lr_schedule, cfg.warmup_steps, cfg.max_steps)
    if resumed:
        load_optimizer(opt, os.path.join(resumed, "optimizer"))
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": on purpose here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                schedule.step()
    return opt, schedule


def train(cfg: TrainConfig) -> dict:
    """Run the training loop ``cfg`` describes; returns a summary."""
    accelerator = make_accelerator(cfg)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    _check_feed(cfg, world)
    if main:
        os.makedirs(cfg.out, exist_ok=True)
    accelerator.wait_for_everyone()
    model, start, ema, resumed = _setup_model(cfg, accelerator)
    step = start["step"]
    opt, schedule = _optimizer(cfg, model, step, resumed)
    objective, opt = accelerator.prepare(TrainingObjective(model), opt)
    model_cfg = model.cfg
    validation, tracker = None, None
    if main:
        record = write_run_record(cfg, step)  # before the first step: a failed run is described too
        tracker = open_tracker(cfg.report_to, cfg.out, record, step)
        if cfg.validate_every:
            validation = ValidationSet.from_shards(
                cfg.validation_shards or cfg.shards,
                model_cfg.resolution,
                cfg.validation_samples,
                cfg.validation_steps,
            )
    loader = shard_loader(
        cfg.shards,
        model.tokenizer,
        model_cfg.resolution,
        model_cfg.max_sub_edits,
        cfg.batch_size,
        workers=cfg.workers,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed * 1_000_003 + step,  # equal on every rank; split_by_node gives each its shards
        repeat=False,
        sub_length=model_cfg.sub_length,
    )
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step + rank * 1_000_000_007)  # noise per rank
    run = _Run(
        cfg,
        accelerator,
        model,
        objective,
        opt,
        schedule,
        ema,
        loader,
        gen,
        _RunLog(cfg, main, tracker),
        validation,
    )
    try:
        summary = _loop(run, start)
    finally:
        if tracker is not None:
            tracker.close()
    accelerator.end_training()
    return {**summary, "processes": world, "process_index": rank}


@dataclasses.dataclass
class _Run:
    """What the loop works with, built by :func:`train`."""

    cfg: TrainConfig
    accelerator: Any
    model: MCIEEditor
    objective: nn.Module  # TrainingObjective, wrapped by accelerate
    opt: Any
    schedule: Any
    ema: EMAWeights | None
    loader: Any
    gen: torch.Generator
    log: _RunLog
    validation: ValidationSet | None


def _loop(run: _Run, start: dict) -> dict:
    """Steps from ``start["step"]`` to ``cfg.max_steps``: log, validate, checkpoint."""
    cfg, accelerator, model, objective, opt, ema = (
        run.cfg,
        run.accelerator,
        run.model,
        run.objective,
        run.opt,
        run.ema,
    )
    world, rank, run_log, params = (
        accelerator.num_processes,
        accelerator.process_index,
        run.log,
        model.trainable_parameters(),
    )
    step, t0, losses, last_ckpt, last_val, skipped = start["step"], time.time(), [], None, None, 0
    offset = start["elapsed_s"]  # training time before a --resume: log.jsonl's clock goes on
    batches = _forever(run.loader)
    # a bar on a terminal (main process); the step lines of --log-every otherwise
    main = accelerator.is_main_process
    bar = Progress(cfg.max_steps - start["step"], "train", "steps") if main and cfg.progress else None
    while step < cfg.max_steps:
        total, keys = 0.0, []
        for _ in range(cfg.grad_accum):
            batch = next(batches)
            keys += list(batch["key"])
            skipped += int(batch["skipped"].sum())  # bad samples the loader left out (logged)
            with accelerator.accumulate(objective):
                loss = objective(
                    batch, run.gen, cfg.conditioning_dropout, cfg.edit_loss_weight, cfg.late_timestep_bias
                )
                accelerator.backward(loss)  # divides by grad_accum; DDP averages over processes
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()  # a no-op until the last accumulated batch
                opt.zero_grad(set_to_none=True)
            total += float(loss.detach()) / cfg.grad_accum
        lr = run.schedule.get_last_lr()[0]  # the rate this step used
        run.schedule.step()
        step += 1
        losses.append(total)
        if ema is not None:
            ema.update(step)
        run_log.keys(rank, step, keys)
        if bar is not None:
            bar.update(1, loss=f"{total:.4f}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            window = losses[-cfg.log_every :]
            local = torch.tensor(sum(window) / len(window), device=accelerator.device)
            mean = accelerator.reduce(local, "mean")  # over processes
            rec = {
                "step": step,
                "loss": float(mean),
                "lr": lr,
                "elapsed_s": round(offset + time.time() - t0, 2),
            }
            run_log.record(rec)
            if run_log.enabled:
                run_log.tracker.scalars(
                    {"train/loss": rec["loss"], "train/lr": lr, **gate_means(model.gates())}, step
                )
            if bar is None or bar.bar is None:
                run_log.say(
                    progress_line(step, cfg.max_steps, rec["loss"], step - start["step"], time.time() - t0)
                )
        if run.validation is not None and (step % cfg.validate_every == 0 or step == cfg.max_steps):
            last_val = _validate(model, ema, run.validation, step, run_log)
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            if main:
                extra = {"preset": model.cfg.preset, "loss": total, "processes": world,
                         "elapsed_s": round(offset + time.time() - t0, 2)}  # fmt: skip
                last_ckpt = save_checkpoint(model, opt, step, cfg.out, cfg.keep_checkpoints, extra, ema)
            accelerator.wait_for_everyone()
    elapsed = time.time() - t0
    if bar is not None:
        bar.close()
    return {
        "steps_run": step - start["step"],
        "step": step,
        "final_loss": losses[-1] if losses else None,
        "checkpoint": last_ckpt,
        "validation": last_val,
        "elapsed_s": round(elapsed, 2),
        "steps_per_s": round((step - start["step"]) / elapsed, 3) if elapsed > 0 else None,
        "skipped_samples": skipped,
    }

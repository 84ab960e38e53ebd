"""MCIE-E1 against its ablations on a task-ladder rung, scored on a held-out CIE-Bench set.

For one task (``--task mini``) and one step budget, this trains MCIE-E1, ``--no-saca``,
``--no-bcca`` and ``--no-saca --no-bcca`` with the same seed, data order and steps through
``mcie train`` (one run per variant and seed), evaluates every ``--eval-every`` steps'
checkpoint on a held-out benchmark through ``mcie bench run`` (the true decomposition:
sub-instructions with their regions), and writes into ``--out``:

- ``ablation.json`` / ``ablation.md``: one row per (variant, seed, step) with the pixel judge's
  instruction compliance (``ic``), the exact checker (``ic_exact``), the all-executed rate and
  background SSIM / L1; per run the training CPU time, wall time and mean load average;
- ``ablation.png``: those four figures against steps, one line per variant (seeds averaged);
- ``contact.png``: held-out sets at the last step: source | expected | one column per variant.

Data: a clean ``mcie build --task T --failure-rate 0 --lossless`` (fresh scenes, ``--train-seed``;
every candidate is trained on: its targets are exact) and ``mcie bench build``
(``--bench-seed``; benchmark sets use a seed space of their own, so the two never share a scene).
Runs go ``--parallel`` at a time as ``nice``d subprocesses (one torch thread each), or in this
process with ``--parallel 0`` (the smoke test). Wall time on a shared machine is contaminated:
read the step budget, the CPU time and the load beside it.

The recipe of ``benchmarks/RESULTS.md`` (760 steps = 20 CPU-minutes on one core; the runs behind
it: ``benchmarks/notes/2026-12-ladder.md``):

    python benchmarks/ablate_mcie_e1.py --out /tmp/ablate-mini --task mini --bench-sets 100 \\
        --steps 760 --eval-every 380 --seeds 0,1 --train-arg=--ema --train-arg=--conditioning-dropout=0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mcie.cli import main as mcie_main

#: variant name → extra ``mcie train`` flags
VARIANTS = {
    "mcie-e1": [],
    "no-saca": ["--no-saca"],
    "no-bcca": ["--no-bcca"],
    "no-saca-no-bcca": ["--no-saca", "--no-bcca"],
}
COLOURS = {
    "mcie-e1": (200, 40, 40),
    "no-saca": (40, 120, 200),
    "no-bcca": (40, 160, 60),
    "no-saca-no-bcca": (120, 120, 120),
}
#: (line style, marker, marker size, hollow): variants that score alike (both ablations without
#: SACA sit at 0 compliance) still show, the larger hollow marker around the smaller filled one
STYLES = {
    "mcie-e1": ("-", "o", 5, False),
    "no-saca": ("--", "s", 5, False),
    "no-bcca": ("-.", "^", 6, False),
    "no-saca-no-bcca": (":", "D", 10, True),
}
#: (row key, panel title, y range)
PANELS = (
    ("ic", "instruction compliance (pixel judge)", (0.0, 1.0)),
    ("ic_exact", "IC exact (exact-target checker)", (0.0, 1.0)),
    ("background_ssim", "background SSIM", None),
    ("background_l1", "background L1 (0..1)", None),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="experiment folder (reused: finished parts are kept)")
    p.add_argument("--task", default="mini", choices=["mini", "mini-3", "full"], help="ladder rung")
    p.add_argument("--image-size", type=int, default=32, help="render = training resolution (default 32)")
    p.add_argument("--train-samples", type=int, default=6000, help="training samples (default 6000)")
    p.add_argument("--train-seed", type=int, default=0, help="seed of the training scenes")
    p.add_argument("--bench-sets", type=int, default=60, help="held-out benchmark sets (default 60)")
    p.add_argument("--bench-seed", type=int, default=0, help="seed of the benchmark sets")
    p.add_argument("--steps", type=int, required=True, help="training steps per run (the budget)")
    p.add_argument("--eval-every", type=int, required=True, help="steps between evaluated checkpoints")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    p.add_argument("--preset", default="tiny-pixel", help="mcie train preset (default tiny-pixel)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--gate-init", type=float, default=1.0)
    p.add_argument("--gate-lr-mult", type=float, default=10.0)
    p.add_argument("--edit-loss-weight", type=float, default=4.0)
    p.add_argument("--train-arg", action="append", default=[], help="one more mcie train flag (repeatable)")
    p.add_argument(
        "--sample-steps",
        type=int,
        default=None,
        help="denoising steps at evaluation (default: the checkpoint's)",
    )
    p.add_argument(
        "--eval-sets", type=int, default=None, help="evaluate on the first N benchmark sets (default all)"
    )
    # sampling at evaluation; default: each checkpoint's own (tiny-pixel: DDIM 2 steps, no guidance)
    p.add_argument("--scheduler", default=None, choices=["ddim", "euler_a"])
    p.add_argument("--guidance-scale", type=float, default=None)
    p.add_argument("--image-guidance-scale", type=float, default=None)
    p.add_argument(
        "--average", type=int, default=None, help="samples averaged per set (mcie bench run --average)"
    )
    p.add_argument("--parallel", type=int, default=2, help="runs at a time; 0: in this process")
    p.add_argument("--nice", type=int, default=5, help="niceness of the run subprocesses")
    p.add_argument("--contact-sets", type=int, default=8, help="benchmark sets on the contact sheet")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: evaluate the checkpoints written so far and report on them",
    )
    args = p.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variant_list if v not in VARIANTS]
    if bad or not args.variant_list or not args.seed_list:
        p.error(f"unknown variants {bad}; allowed: {', '.join(VARIANTS)}; and at least one seed")
    if args.eval_every <= 0 or args.steps % args.eval_every:
        p.error("--eval-every must divide --steps")
    return args


# -- running mcie commands -------------------------------------------------------------------------


def run_mcie(argv: list[str], args, log_path: str) -> dict:
    """``mcie ARGV`` in this process (``--parallel 0``) or as a niced subprocess; returns wall
    time and the process's CPU time (user + system, from ``wait4``)."""
    t0 = time.time()
    if args.parallel == 0:
        c0 = time.process_time()
        code = mcie_main(argv)
        cpu = time.process_time() - c0
    else:
        cmd = ["nice", "-n", str(args.nice), sys.executable, "-m", "mcie.cli", *argv]
        with open(log_path, "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
    if code != 0:
        raise RuntimeError(f"mcie {' '.join(argv[:2])} exited {code} (log: {log_path})")
    return {"wall_s": round(time.time() - t0, 1), "cpu_s": round(cpu, 1)}


class LoadSampler:
    """The 1-minute load average, sampled every ``every`` seconds while the runs go."""

    def __init__(self, every: float = 15.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)

    def _loop(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"load_mean": round(float(np.mean(s)), 2), "load_max": round(float(max(s)), 2)}


def prepare_data(args) -> tuple[str, str]:
    """Training shards (a clean MCIE build of the rung: every candidate, no injected failure)
    and the held-out benchmark, each built once; reruns reuse them."""
    gen = ["--task", args.task, "--image-size", str(args.image_size)]
    train_dir, bench_dir = os.path.join(args.out, "train"), os.path.join(args.out, "bench")
    if not os.path.isfile(os.path.join(train_dir, "index.parquet")):  # written last
        shutil.rmtree(train_dir, ignore_errors=True)
        argv = ["build", "--out", train_dir, "--samples", str(args.train_samples), "--failure-rate", "0"]
        argv += ["--lossless", "--shard-size", "1000", "--no-progress"]
        run_mcie([*argv, "--seed", str(args.train_seed), *gen], args, os.path.join(args.out, "data.log"))
    if not os.path.isfile(os.path.join(bench_dir, "bench.json")):
        argv = ["bench", "build", "--out", bench_dir, "--sets", str(args.bench_sets)]
        run_mcie([*argv, "--seed", str(args.bench_seed), *gen], args, os.path.join(args.out, "data.log"))
    every = ",".join(os.path.join(train_dir, d, "*.tar") for d in ("shards", "rejected"))
    return every, bench_dir


def train_argv(args, shards: str, run_dir: str, variant: str, seed: int) -> list[str]:
    n_ckpt = args.steps // args.eval_every
    return [
        "train", shards, "--out", run_dir, "--preset", args.preset,
        "--resolution", str(args.image_size), "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(seed),
        "--gate-init", str(args.gate_init), "--gate-lr-mult", str(args.gate_lr_mult),
        "--edit-loss-weight", str(args.edit_loss_weight), "--threads", "1",
        "--checkpoint-every", str(args.eval_every), "--keep-checkpoints", str(n_ckpt),
        "--log-every", str(min(50, args.eval_every)), "--no-progress",
        *VARIANTS[variant], *args.train_arg,
    ]  # fmt: skip


def eval_argv(args, bench_dir: str, ckpt: str, out: str, seed: int) -> list[str]:
    return [
        "bench", "run", bench_dir, "--editor", f"mcie-e1:{ckpt}", "--out", out,
        "--decomposition", "oracle", "--seed", str(seed),
        *(["--limit", str(args.eval_sets)] if args.eval_sets else []),
        *[
            a
            for flag, v in (
                ("--steps", args.sample_steps), ("--scheduler", args.scheduler),
                ("--guidance-scale", args.guidance_scale),
                ("--image-guidance-scale", args.image_guidance_scale),
                ("--average", args.average),
            )
            if v is not None
            for a in (flag, str(v))
        ],
    ]  # fmt: skip


def one_run(args, shards: str, bench_dir: str, variant: str, seed: int) -> dict:
    """Train one (variant, seed), then evaluate each of its checkpoints; returns its rows."""
    run_dir = os.path.join(args.out, "runs", f"{variant}-s{seed}")
    log = run_dir + ".log"
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    done = os.path.join(run_dir, "train_cost.json")
    if os.path.isfile(done):
        with open(done) as fh:
            cost = json.load(fh)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished run starts again
        with LoadSampler() as load:
            cost = run_mcie(train_argv(args, shards, run_dir, variant, seed), args, log)
        cost.update(load.summary())
        with open(done, "w") as fh:
            json.dump(cost, fh)
    print(f"[ablate] trained {variant} seed {seed}: {cost}", file=sys.stderr, flush=True)
    steps = list(range(args.eval_every, args.steps + 1, args.eval_every))
    return {
        "variant": variant,
        "seed": seed,
        "train": cost,
        "rows": evaluate(args, bench_dir, variant, seed, steps),
    }


def partial_run(args, bench_dir: str, variant: str, seed: int) -> dict:
    """``--report-only``: the checkpoints a run has written so far, evaluated (those not yet),
    and its cost so far from ``log.jsonl`` (CPU time unknown while it trains)."""
    run_dir = os.path.join(args.out, "runs", f"{variant}-s{seed}")
    done = os.path.join(run_dir, "train_cost.json")
    if os.path.isfile(done):
        with open(done) as fh:
            cost = json.load(fh)
    else:
        last = {}
        if os.path.isfile(os.path.join(run_dir, "log.jsonl")):
            with open(os.path.join(run_dir, "log.jsonl")) as fh:
                last = [json.loads(line) for line in fh][-1]
        cost = {"wall_s": last.get("elapsed_s"), "cpu_s": None, "partial_at_step": last.get("step")}
    steps = [
        s
        for s in range(args.eval_every, args.steps + 1, args.eval_every)
        # a scored step counts though its checkpoint was rotated away by a longer run since
        if os.path.isdir(os.path.join(run_dir, f"checkpoint-{s}"))
        or os.path.isfile(os.path.join(args.out, "eval", f"{variant}-s{seed}-{s}", "summary.json"))
    ]
    return {
        "variant": variant,
        "seed": seed,
        "train": cost,
        "rows": evaluate(args, bench_dir, variant, seed, steps),
    }


def evaluate(args, bench_dir: str, variant: str, seed: int, steps: list[int]) -> list[dict]:
    """One row per step: that checkpoint scored by ``mcie bench run`` (kept; rerun only when
    its summary is missing)."""
    run_dir = os.path.join(args.out, "runs", f"{variant}-s{seed}")
    rows = []
    for step in steps:
        ckpt = os.path.join(run_dir, f"checkpoint-{step}")
        ev = os.path.join(args.out, "eval", f"{variant}-s{seed}-{step}")
        if not os.path.isfile(os.path.join(ev, "summary.json")):
            shutil.rmtree(ev, ignore_errors=True)
            run_mcie(eval_argv(args, bench_dir, ckpt, ev, seed), args, run_dir + ".log")
        with open(os.path.join(ev, "summary.json")) as fh:
            s = json.load(fh)
        rows.append({
            "variant": variant, "seed": seed, "step": step, "sets": s["sets"],
            "ic": s["instruction_compliance"], "ic_exact": s["ic_exact"],
            "all_executed": s["all_executed_rate"], "background_ssim": s["background_ssim"],
            "background_l1": s["background_l1"], "checker": s["checker"],
            "sampling": {"steps": s.get("steps"), **s.get("sampling", {})},
        })  # fmt: skip
        print(f"[ablate] {variant} seed {seed} step {step}: IC {s['instruction_compliance']}, "
              f"IC exact {s['ic_exact']}, bg SSIM {s['background_ssim']}, bg L1 {s['background_l1']}",
              file=sys.stderr, flush=True)  # fmt: skip
    return rows


# -- reports ----------------------------------------------------------------------------------------


def mean_by_step(rows: list[dict], variant: str, key: str) -> list[tuple[int, float]]:
    """(step, mean over seeds) of ``key`` for one variant."""
    steps = sorted({r["step"] for r in rows if r["variant"] == variant})
    return [
        (s, float(np.mean([r[key] for r in rows if r["variant"] == variant and r["step"] == s])))
        for s in steps
    ]


def sampling_text(rows: list[dict]) -> str:
    """How the checkpoints were sampled, e.g. ``ddim 2 steps, guidance 1.0 / image 1.0, mean of 8
    draws``."""
    kinds = {json.dumps(r.get("sampling", {}), sort_keys=True) for r in rows}
    if len(kinds) != 1:
        return "sampling varies by row (see ablation.json)" if rows else "no rows"
    s = json.loads(kinds.pop())
    return (
        f"{s.get('scheduler')} {s.get('steps')} steps, guidance {s.get('guidance_scale')} / image "
        f"{s.get('image_guidance_scale')}, mean of {s.get('average', 1)} draws"
    )


def write_tables(out: str, result: dict) -> str:
    rows = result["rows"]
    with open(os.path.join(out, "ablation.json"), "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
    cfg = result["config"]
    lines = [
        f"# MCIE-E1 ablation: task {cfg['task']} at {cfg['image_size']} px, {cfg['steps']} steps",
        "",
        f"Held-out benchmark: {rows[0]['sets'] if rows else 0} sets (seed {cfg['bench_seed']}), "
        f"true decomposition, {sampling_text(rows)}. IC: the pixel judge; "
        "IC exact: the exact-target checker.",
        "",
        "| variant | seed | step | IC | IC exact | all executed | bg SSIM | bg L1 (0..1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['step']} | {r['ic']:.3f} | {r['ic_exact']:.3f} | "
            f"{r['all_executed']:.3f} | {r['background_ssim']:.4f} | {r['background_l1']:.4f} |"
        )
    lines += [
        "",
        "| variant | seed | steps trained | train wall s | train CPU s | load mean / max |",
        "|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        t = run["train"]
        steps = t.get("partial_at_step") or cfg["steps"]  # a run still training: its steps so far
        lines.append(
            f"| {run['variant']} | {run['seed']} | {steps} | {t['wall_s']} | {t['cpu_s']} | "
            f"{t.get('load_mean')} / {t.get('load_max')} |"
        )
    path = os.path.join(out, "ablation.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def plot(path: str, rows: list[dict], variants: list[str], title: str) -> None:
    """Four panels (matplotlib): each figure against training steps, one line per variant (the
    mean over seeds) with the seeds' range shaded when there are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (key, name, yr) in zip(axes.flat, PANELS, strict=True):
        for v in reversed(variants):  # the first variant (MCIE-E1) drawn last, on top
            colour = tuple(c / 255 for c in COLOURS[v])
            pts = mean_by_step(rows, v, key)
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ls, marker, size, hollow = STYLES[v]
            face = {"mfc": "none", "mew": 1.5} if hollow else {}
            ax.plot(xs, ys, ls=ls, marker=marker, ms=size, color=colour, label=v, lw=2, **face)
            spread = [[r[key] for r in rows if r["variant"] == v and r["step"] == x] for x in xs]
            if any(len(s) > 1 for s in spread):
                ax.fill_between(
                    xs, [min(s) for s in spread], [max(s) for s in spread], color=colour, alpha=0.15
                )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("training steps")
        if yr:
            ax.set_ylim(yr[0] - 0.02, yr[1] + 0.02)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: variants.index(labels[i]))  # MCIE-E1 first
    axes.flat[0].legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(path: str, args, bench_dir: str, variants: list[str], seed: int, step: int) -> None:
    """Source | expected | each variant's edit at ``step``, for the first benchmark sets,
    4x nearest-neighbour (edited here through the bench's own MCIE-E1 editor, same sampling)."""
    from mcie.bench.editors import BenchItem, MCIEE1Editor
    from mcie.bench.sets import load_bench

    items = [BenchItem.from_row(r) for r in load_bench(bench_dir)[: args.contact_sets]]
    cols = [[it.src for it in items], [it.expected for it in items]]
    for v in variants:
        ckpt = os.path.join(args.out, "runs", f"{v}-s{seed}", f"checkpoint-{step}")
        editor = MCIEE1Editor(
            ckpt, seed=seed, steps=args.sample_steps, guidance_scale=args.guidance_scale,
            image_guidance_scale=args.image_guidance_scale, scheduler=args.scheduler, average=args.average,
        )  # fmt: skip
        cols.append([editor.edit(it, True)[0] for it in items])
    names = ["source", "expected", *(f"{v} @{step}" for v in variants)]
    s, z, gap = items[0].src.shape[0], 4, 6
    cell = s * z
    font = ImageFont.load_default(size=12)
    width = len(cols) * (cell + gap)
    chars = max(20, width // 7)  # the default font's 12 px glyphs are ~6.5 px wide
    img = Image.new("RGB", (width, 20 + len(items) * (cell + 34)), "white")
    d = ImageDraw.Draw(img)
    for j, name in enumerate(names):
        d.text((j * (cell + gap), 3), name, fill="black", font=font)
    for i, it in enumerate(items):
        y = 20 + i * (cell + 34)
        for j, col in enumerate(cols):
            img.paste(Image.fromarray(col[i]).resize((cell, cell), Image.NEAREST), (j * (cell + gap), y))
        for k, line in enumerate(textwrap.wrap(it.instruction, width=chars)[:2]):  # whole, in 2 lines
            d.text((2, y + cell + 2 + 13 * k), line, fill="black", font=font)
    img.save(path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    shards, bench_dir = prepare_data(args)
    jobs = [(v, s) for s in args.seed_list for v in args.variant_list]
    print(f"[ablate] {len(jobs)} runs of {args.steps} steps, {max(args.parallel, 1)} at a time; "
          f"load {os.getloadavg()}", file=sys.stderr, flush=True)  # fmt: skip
    if args.report_only:
        runs = [partial_run(args, bench_dir, v, s) for v, s in jobs]
        runs = [r for r in runs if r["rows"] or r["train"].get("wall_s") is not None]  # never started: none
    elif args.parallel == 0:
        runs = [one_run(args, shards, bench_dir, v, s) for v, s in jobs]
    else:
        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            futures = [pool.submit(one_run, args, shards, bench_dir, v, s) for v, s in jobs]
            runs = [f.result() for f in futures]
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("seed_list", "variant_list")},
        "runs": [{k: r[k] for k in ("variant", "seed", "train")} for r in runs],
        "rows": [row for r in runs for row in r["rows"]],
        "wall_s": round(time.time() - t0, 1),
    }
    md = write_tables(args.out, result)
    seeds = f"seeds {args.seeds} (mean)" if len(args.seed_list) > 1 else f"seed {args.seeds}"
    title = f"MCIE-E1 ablation, {args.task} at {args.image_size} px, {seeds}"
    plot(os.path.join(args.out, "ablation.png"), result["rows"], args.variant_list, title)
    seed0 = args.seed_list[0]
    common = [  # the last step every variant of the first seed reached
        s
        for s in range(args.steps, 0, -args.eval_every)
        if all(any(r["step"] == s and r["seed"] == seed0 and r["variant"] == v for r in result["rows"])
               for v in args.variant_list)
    ]  # fmt: skip
    if common:
        contact_sheet(
            os.path.join(args.out, "contact.png"), args, bench_dir, args.variant_list, seed0, common[0]
        )
    with open(md) as fh:
        print(fh.read())
    print(f"[ablate] done in {result['wall_s']} s: {md}, ablation.png, contact.png", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

"""What the filter is worth: MCIE-E1 trained on a build's accepted shards, on every candidate of
that build, and on a clean build, scored on one held-out CIE-Bench set.

Three training sets, each an ``mcie build`` of the same task-ladder rung, seed and size:

- ``accepted``: the accepted shards of a build with failure injection (``--failure-rate``,
  default 0.3, the build's default): what the pipeline ships;
- ``unfiltered``: every candidate of that same build, accepted and rejected (no filter: the
  injected failures go into training);
- ``clean``: every candidate of a build with failure rate 0 (the same scenes and plans: the
  failure draw does not move the RNG stream, so this is ``unfiltered`` with its failures fixed).

Each is trained with the same recipe, steps and seeds through ``mcie train`` and scored at the
last step by ``mcie bench run`` (true decomposition) on ``--bench-sets`` held-out sets. Writes
into ``--out``: ``filter_worth.json`` / ``.md`` (per arm and seed: judge IC, exact IC, background
SSIM / L1, each with a 95% bootstrap interval over sets; paired differences between arms with
their 95% paired-bootstrap interval, per-set values averaged over seeds), ``filter_worth.png``
and ``contact.png``. Runs go ``--parallel`` at a time as niced subprocesses (one torch thread
each); finished parts are kept, so a rerun resumes.

    python benchmarks/filter_worth.py --out /tmp/filter-mini --task mini --image-size 32 \\
        --samples 6000 --bench-sets 100 --steps 760 --seeds 0,1
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import time

import numpy as np
from ablate_mcie_e1 import LoadSampler, contact_sheet, eval_argv, run_mcie, train_argv

from mcie.bench.report import bootstrap_ci, paired_diff_ci

#: arm → (build, which shards)
ARMS = {
    "accepted": ("injected", ["shards"]),
    "unfiltered": ("injected", ["shards", "rejected"]),
    "clean": ("clean", ["shards", "rejected"]),
}
#: per-set field of samples.jsonl → (column, higher is better)
FIELDS = {
    "compliance": ("judge IC", True),
    "compliance_exact": ("exact IC", True),
    "background_ssim": ("bg SSIM", True),
    "background_l1": ("bg L1", False),
}
PAIRS = (("unfiltered", "accepted"), ("accepted", "clean"), ("unfiltered", "clean"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="experiment folder (reused: finished parts are kept)")
    p.add_argument("--task", default="mini", choices=["mini", "mini-3", "full"], help="ladder rung")
    p.add_argument("--image-size", type=int, default=32, help="render = training resolution (default 32)")
    p.add_argument("--samples", type=int, default=6000, help="candidates per build (default 6000)")
    p.add_argument("--build-seed", type=int, default=0, help="seed of both builds (default 0)")
    p.add_argument("--failure-rate", type=float, default=0.3, help="injected failures (default 0.3)")
    p.add_argument("--bench-sets", type=int, default=100, help="held-out benchmark sets (default 100)")
    p.add_argument("--bench-seed", type=int, default=0, help="seed of the benchmark sets")
    p.add_argument("--steps", type=int, required=True, help="training steps per run (the budget)")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--preset", default="tiny-pixel", help="mcie train preset (default tiny-pixel)")
    # the measured recipe of the ladder (benchmarks/ablate_mcie_e1.py), passed explicitly
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--gate-init", type=float, default=1.0)
    p.add_argument("--gate-lr-mult", type=float, default=10.0)
    p.add_argument("--edit-loss-weight", type=float, default=4.0)
    p.add_argument(
        "--train-arg",
        action="append",
        default=None,
        help="one more mcie train flag, repeatable (default: --ema --conditioning-dropout=0)",
    )
    p.add_argument("--average", type=int, default=8, help="draws averaged per set at evaluation (default 8)")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time; 0: in this process")
    p.add_argument("--nice", type=int, default=0, help="niceness of the run subprocesses")
    p.add_argument("--contact-sets", type=int, default=8, help="benchmark sets on the contact sheet")
    args = p.parse_args(argv)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.arm_list = [a.strip() for a in args.arms.split(",") if a.strip()]
    if [a for a in args.arm_list if a not in ARMS] or not args.arm_list or not args.seed_list:
        p.error(f"--arms of {', '.join(ARMS)}; at least one seed")
    if args.train_arg is None:
        args.train_arg = ["--ema", "--conditioning-dropout=0"]
    # what ablate_mcie_e1's helpers read: one evaluated checkpoint, at the last step
    args.eval_every, args.eval_sets, args.sample_steps = args.steps, None, None
    args.scheduler = args.guidance_scale = args.image_guidance_scale = None
    return args


def prepare_data(args) -> tuple[dict[str, str], str, dict]:
    """The two builds and the benchmark (each made once); returns each arm's shard globs, the
    benchmark folder and each build's summary line."""
    builds = {}
    for name, rate in (("injected", args.failure_rate), ("clean", 0.0)):
        out = os.path.join(args.out, f"build-{name}")
        if not os.path.isfile(os.path.join(out, "index.parquet")):  # written at the very end
            shutil.rmtree(out, ignore_errors=True)
            argv = [
                "build", "--out", out, "--task", args.task, "--image-size", str(args.image_size),
                "--samples", str(args.samples), "--seed", str(args.build_seed), "--failure-rate", str(rate),
                "--lossless", "--shard-size", "1000", "--workers", "1", "--no-progress",
            ]  # fmt: skip
            run_mcie(argv, args, os.path.join(args.out, "data.log"))
        builds[name] = out
    bench = os.path.join(args.out, "bench")
    if not os.path.isfile(os.path.join(bench, "bench.json")):
        argv = [
            "bench",
            "build",
            "--out",
            bench,
            "--sets",
            str(args.bench_sets),
            "--seed",
            str(args.bench_seed),
        ]
        run_mcie([*argv, "--task", args.task, "--image-size", str(args.image_size)], args, "/dev/null")
    globs = {
        arm: ",".join(os.path.join(builds[b], d, "*.tar") for d in dirs) for arm, (b, dirs) in ARMS.items()
    }
    return globs, bench, {name: _counts(out) for name, out in builds.items()}


def _counts(build: str) -> dict:
    import pyarrow.parquet as pq

    status = pq.read_table(os.path.join(build, "index.parquet"), columns=["status"]).column(0).to_pylist()
    return {s: status.count(s) for s in sorted(set(status))}


def one_run(args, shards: str, bench: str, arm: str, seed: int) -> dict:
    """Train one (arm, seed), then score its last checkpoint; returns cost and per-set rows."""
    run_dir = os.path.join(args.out, "runs", f"{arm}-s{seed}")
    log = run_dir + ".log"
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    done = os.path.join(run_dir, "train_cost.json")
    if os.path.isfile(done):
        with open(done) as fh:
            cost = json.load(fh)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished run starts again
        with LoadSampler() as load:
            cost = run_mcie(train_argv(args, shards, run_dir, "mcie-e1", seed), args, log)
        cost.update(load.summary())
        with open(done, "w") as fh:
            json.dump(cost, fh)
    print(f"[filter] trained {arm} seed {seed}: {cost}", file=sys.stderr, flush=True)
    ev = os.path.join(args.out, "eval", f"{arm}-s{seed}")
    if not os.path.isfile(os.path.join(ev, "summary.json")):
        shutil.rmtree(ev, ignore_errors=True)
        ckpt = os.path.join(run_dir, f"checkpoint-{args.steps}")
        run_mcie(eval_argv(args, bench, ckpt, ev, seed), args, log)
    with open(os.path.join(ev, "samples.jsonl")) as fh:
        sets = [json.loads(line) for line in fh]
    return {"arm": arm, "seed": seed, "train": cost, "sets": [{k: s[k] for k in FIELDS} for s in sets]}


def summarise(runs: list[dict], arms: list[str]) -> dict:
    """Per (arm, seed) and per arm (per-set values averaged over seeds): mean and 95% bootstrap
    interval of each field; paired differences between arms over the same sets."""

    def stat(values) -> dict:
        ci = bootstrap_ci(values)
        return {"mean": round(float(np.mean(values)), 4), "ci": [round(c, 4) for c in ci] if ci else None}

    per_run = [
        {"arm": r["arm"], "seed": r["seed"], **{f: stat([s[f] for s in r["sets"]]) for f in FIELDS}}
        for r in runs
    ]
    pooled = {}
    for arm in arms:
        mine = [r["sets"] for r in runs if r["arm"] == arm]
        if mine:
            pooled[arm] = {f: [float(np.mean([sets[i][f] for sets in mine])) for i in range(len(mine[0]))]
                           for f in FIELDS}  # fmt: skip
    per_arm = {arm: {f: stat(v) for f, v in vals.items()} for arm, vals in pooled.items()}
    diffs = []
    for a, b in PAIRS:
        if a in pooled and b in pooled:
            for f in FIELDS:
                mean, lo, hi = paired_diff_ci(pooled[a][f], pooled[b][f])
                diffs.append(
                    {
                        "from": a,
                        "to": b,
                        "field": f,
                        "diff": round(mean, 4),
                        "ci": [round(lo, 4), round(hi, 4)],
                    }
                )
    return {"per_run": per_run, "per_arm": per_arm, "paired": diffs}


def write_tables(out: str, result: dict) -> str:
    with open(os.path.join(out, "filter_worth.json"), "w") as fh:
        json.dump(result, fh, indent=1, sort_keys=True)
    cfg, s = result["config"], result["summary"]
    fmt = lambda d: f"{d['mean']:.3f} [{d['ci'][0]:.3f}, {d['ci'][1]:.3f}]"  # noqa: E731
    head = "| " + " | ".join(name for name, _ in FIELDS.values()) + " |"
    lines = [
        f"# What the filter is worth: {cfg['task']} at {cfg['image_size']} px, {cfg['steps']} steps",
        "",
        f"Builds: {cfg['samples']} candidates, seed {cfg['build_seed']}, failure rate "
        f"{cfg['failure_rate']} (injected) and 0 (clean); status counts {result['builds']}. Held-out: "
        f"{cfg['bench_sets']} CIE-Bench sets, seed {cfg['bench_seed']}, true decomposition, mean of "
        f"{cfg['average']} draws. Values: mean [95% bootstrap interval over sets].",
        "",
        "## Per arm (per-set values averaged over seeds " + cfg["seeds"] + ")",
        "",
        "| arm | training samples " + head,
        "|---|---" + "|---" * len(FIELDS) + "|",
    ]
    for arm, d in s["per_arm"].items():
        lines.append(
            f"| {arm} | {result['train_samples'][arm]} | " + " | ".join(fmt(d[f]) for f in FIELDS) + " |"
        )
    lines += [
        "",
        "## Paired differences (to − from, same sets)",
        "",
        "| from → to | field | diff [95% CI] |",
        "|---|---|---|",
    ]
    for d in s["paired"]:
        lines.append(
            f"| {d['from']} → {d['to']} | {FIELDS[d['field']][0]} | {d['diff']:+.3f} "
            f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |"
        )
    lines += ["", "## Per run", "", "| arm | seed " + head + " train CPU s | wall s | load mean / max |",
              "|---|---" + "|---" * len(FIELDS) + "|---|---|---|"]  # fmt: skip
    costs = {(r["arm"], r["seed"]): r["train"] for r in result["runs"]}
    for r in s["per_run"]:
        t = costs[(r["arm"], r["seed"])]
        lines.append(
            f"| {r['arm']} | {r['seed']} | " + " | ".join(fmt(r[f]) for f in FIELDS)
            + f" | {t['cpu_s']} | {t['wall_s']} | {t.get('load_mean')} / {t.get('load_max')} |"
        )  # fmt: skip
    path = os.path.join(out, "filter_worth.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def plot(path: str, result: dict) -> None:
    """One panel per field: each arm's mean with its interval, seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["summary"]["per_arm"])
    colours = {"accepted": "#c83232", "unfiltered": "#7a7a7a", "clean": "#2878c8"}
    fig, axes = plt.subplots(1, len(FIELDS), figsize=(13, 3.6), constrained_layout=True)
    for ax, (f, (name, higher)) in zip(axes, FIELDS.items(), strict=True):
        for i, arm in enumerate(arms):
            d = result["summary"]["per_arm"][arm][f]
            lo, hi = d["ci"]
            ax.bar(i, d["mean"], color=colours.get(arm, "black"), alpha=0.8)
            ax.errorbar(i, d["mean"], yerr=[[d["mean"] - lo], [hi - d["mean"]]], color="black", capsize=4)
            seeds = [r[f]["mean"] for r in result["summary"]["per_run"] if r["arm"] == arm]
            ax.plot([i] * len(seeds), seeds, "o", color="white", mec="black", ms=5)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(f"{name} ({'higher' if higher else 'lower'} is better)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    cfg = result["config"]
    fig.suptitle(
        f"MCIE-E1 trained on accepted / every candidate / clean builds — {cfg['task']} "
        f"{cfg['image_size']} px, "
        f"{cfg['steps']} steps, seeds {cfg['seeds']} (bars: mean, 95% CI; dots: seeds)",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    globs, bench, builds = prepare_data(args)
    train_samples = {
        arm: sum(v for k, v in builds[ARMS[arm][0]].items() if k == "accepted" or len(ARMS[arm][1]) > 1)
        for arm in ARMS
    }
    jobs = [(a, s) for s in args.seed_list for a in args.arm_list]
    print(f"[filter] builds {builds}; {len(jobs)} runs of {args.steps} steps, load {os.getloadavg()}",
          file=sys.stderr, flush=True)  # fmt: skip
    if args.parallel == 0:
        runs = [one_run(args, globs[a], bench, a, s) for a, s in jobs]
    else:
        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            runs = [f.result() for f in [pool.submit(one_run, args, globs[a], bench, a, s) for a, s in jobs]]
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("seed_list", "arm_list")},
        "builds": builds,
        "train_samples": train_samples,
        "runs": [{k: r[k] for k in ("arm", "seed", "train")} for r in runs],
        "summary": summarise(runs, args.arm_list),
        "wall_s": round(time.time() - t0, 1),
    }
    md = write_tables(args.out, result)
    plot(os.path.join(args.out, "filter_worth.png"), result)
    contact_sheet(
        os.path.join(args.out, "contact.png"), args, bench, args.arm_list, args.seed_list[0], args.steps
    )
    with open(md) as fh:
        print(fh.read())
    return result


if __name__ == "__main__":
    main()

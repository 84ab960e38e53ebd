"""End-to-end throughput of ``mcie build`` at 1 and 2 workers next to a plain Python loop
doing the same per-sample work (generate → annotate → score → encode → write shards), which is
the limit Beam adds its overhead to.

    .venv/bin/python benchmarks/bench_build.py --samples 2000 --shard-size 250

Prints one line per measurement and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def plain_loop(out: str, samples: int, shard_size: int, seed: int) -> float:
    """Seconds for the per-sample work of a build in one process, no Beam."""
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.pipeline.build import read_source, run_steps
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.sink import ShardSink

    opts = BuildOptions(out=out, backend=SyntheticBackend(samples=samples, seed=seed), shard_size=shard_size)
    t0 = time.perf_counter()
    backend, sink = opts.backend, ShardSink(out)
    source, steps = backend.source(), backend.steps(opts.thresholds, "continue")
    for unit in backend.units(shard_size):
        writer = sink.open_unit(unit.id)
        for sample, truth in read_source(opts, unit, source):
            writer.add(run_steps(steps, [sample], "continue")[0], truth)
        writer.close()
    return time.perf_counter() - t0


def cli_build(out: str, samples: int, shard_size: int, seed: int, workers: int) -> tuple[float, dict]:
    """Wall seconds of the ``mcie build`` command (process start included) and its summary."""
    cmd = [
        sys.executable,
        "-m",
        "mcie.cli",
        "build",
        "--out",
        out,
        "--samples",
        str(samples),
        "--shard-size",
        str(shard_size),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--no-progress",
        "--json",
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="candidates per run")
    ap.add_argument("--shard-size", type=int, default=250, help="candidates per unit")
    ap.add_argument("--seed", type=int, default=4242, help="seed of every run")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mcie-bench-")
    n = args.samples
    try:
        loop_s = plain_loop(os.path.join(tmp, "loop"), n, args.shard_size, args.seed)
        print(f"plain loop         : {n / loop_s:7.1f} samples/s  ({loop_s:.1f} s)")
        results = {
            "samples": n,
            "shard_size": args.shard_size,
            "plain_loop_samples_per_s": round(n / loop_s, 1),
        }
        for w in args.workers:
            wall, summary = cli_build(os.path.join(tmp, f"w{w}"), n, args.shard_size, args.seed, w)
            pipe_s = summary["elapsed_s"]
            print(
                f"mcie build -w {w}    : {n / wall:7.1f} samples/s wall ({wall:.1f} s incl. start-up), "
                f"{n / pipe_s:7.1f} samples/s in the pipeline ({pipe_s:.1f} s)"
            )
            results[f"build_w{w}_wall_samples_per_s"] = round(n / wall, 1)
            results[f"build_w{w}_pipeline_samples_per_s"] = round(n / pipe_s, 1)
        if 1 in args.workers:
            over = results["plain_loop_samples_per_s"] / results["build_w1_wall_samples_per_s"]
            print(f"Beam overhead (loop / build -w 1, wall): {over:.2f}x")
            results["beam_overhead_w1"] = round(over, 2)
            if 2 in args.workers:
                sp = results["build_w2_wall_samples_per_s"] / results["build_w1_wall_samples_per_s"]
                print(f"speed-up 2 workers / 1 worker (wall): {sp:.2f}x")
                results["speedup_w2_over_w1"] = round(sp, 2)
        print(json.dumps(results, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

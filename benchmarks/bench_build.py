"""End-to-end throughput of ``mcie build`` at 1 and 2 workers next to a plain Python loop
doing the same per-sample work (generate → annotate → score → encode → write shards), which is
the limit Beam adds its overhead to.

    .venv/bin/python benchmarks/bench_build.py --samples 2000 --shard-size 250
    .venv/bin/python benchmarks/bench_build.py --samples 600 --before main   # before/after
    .venv/bin/python benchmarks/bench_build.py --samples 2000 --runners FnApiRunner dask

``--runners`` measures each build on each named runner (``dask``: Beam's Dask runner on a local
cluster of ``--workers`` processes, started by the command and counted in its wall time and CPU
seconds); the JSON then has ``dask_over_fnapi_*`` ratios (the Dask runner's overhead) and each
runner's 2-over-1-worker speed-ups.

``--before REV`` measures the code of git revision REV too, in the same run, each measurement
taken for both codes back to back (machines here differ ~3x and are shared: compare the ratios
of one run, not figures across runs). Prints one line per measurement, the machine's load
average, and a JSON summary at the end. Next to wall-clock rates it reports CPU seconds per
sample (this process's, or a build's with all its worker processes): on a machine shared with
other jobs the CPU time moves far less with the load than the wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: repository folders that install as sub-packages of ``mcie`` (pyproject's package-dir)
SUBPACKAGES = ("pipeline", "transforms", "model", "annotation", "bench")


def plain_loop(
    out: str, samples: int, shard_size: int, seed: int, cpu: bool = False, image_size: int | None = None
):
    """Seconds for the per-sample work of a build in one process, no Beam (and the CPU seconds
    it took, with ``cpu``); ``image_size`` None: the generator's default."""
    from mcie.pipeline.backends import SyntheticBackend
    from mcie.pipeline.build import read_source, run_steps
    from mcie.pipeline.options import BuildOptions
    from mcie.pipeline.sink import ShardSink
    from mcie.transforms.synthetic.generator import SyntheticConfig

    synthetic = SyntheticConfig() if image_size is None else SyntheticConfig(image_size=image_size)
    backend = SyntheticBackend(samples=samples, seed=seed, synthetic=synthetic)
    opts = BuildOptions(out=out, backend=backend, shard_size=shard_size)
    t0, c0 = time.perf_counter(), time.process_time()
    sink = ShardSink(out)
    source, steps = backend.source(), backend.steps(opts.thresholds, "continue")
    for unit in backend.units(shard_size):
        writer = sink.open_unit(unit.id)
        for sample, truth in read_source(opts, unit, source):
            writer.add(run_steps(steps, [sample], "continue")[0], truth)
        writer.close()
    wall = time.perf_counter() - t0
    return (wall, time.process_time() - c0) if cpu else wall


def code_tree(rev: str, where: str) -> str:
    """A folder holding an importable ``mcie`` package of git revision ``rev`` (the repository's
    layout mapped as pyproject maps it); put it first on PYTHONPATH to run that code."""
    src = os.path.join(where, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    pkg = os.path.join(where, "pkg")
    shutil.copytree(os.path.join(src, "mcie"), os.path.join(pkg, "mcie"))
    for name in SUBPACKAGES:
        os.symlink(os.path.join(src, name), os.path.join(pkg, "mcie", name))
    return pkg


def _env(code: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    return env


def loop_in_process(
    out: str, samples: int, shard_size: int, seed: int, code: str | None
) -> tuple[float, float]:
    """:func:`plain_loop` in a fresh process running ``code`` (None: this checkout): wall and
    CPU seconds."""
    cmd = [sys.executable, __file__, "--plain-loop", out, str(samples), str(shard_size), str(seed)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env(code))
    wall, cpu = res.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_build(
    out: str,
    samples: int,
    shard_size: int,
    seed: int,
    workers: int,
    code: str | None = None,
    runner: str = "FnApiRunner",
) -> tuple[float, dict]:
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
        "--runner",
        runner,
        "--no-progress",
        "--json",
    ]
    t0, c0 = time.perf_counter(), _children_cpu()
    # run outside the checkout: `python -m` puts the working folder first on sys.path, which
    # would import the checkout's mcie over the revision on PYTHONPATH
    cwd = os.path.dirname(os.path.abspath(out))
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_env(code), cwd=cwd)
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    summary["cpu_s"] = _children_cpu() - c0  # the command and every worker process it waited for
    return time.perf_counter() - t0, summary


def measure(tmp: str, codes: dict[str, str | None], args) -> dict[str, dict]:
    """Each code's figures: the plain loop and ``mcie build`` at each worker count, every
    measurement taken for all codes back to back (so a change in the machine's load hits
    them alike)."""
    n = args.samples
    res: dict[str, dict] = {label: {} for label in codes}
    for label, code in codes.items():
        loop_s, cpu_s = loop_in_process(
            os.path.join(tmp, f"{label}-loop"), n, args.shard_size, args.seed, code
        )
        print(
            f"[{label}] plain loop      : {n / loop_s:7.1f} samples/s  ({loop_s:.1f} s), "
            f"{1000 * cpu_s / n:.1f} CPU ms/sample",
            flush=True,
        )
        res[label]["plain_loop_samples_per_s"] = round(n / loop_s, 1)
        res[label]["ms_per_sample"] = round(1000 * loop_s / n, 1)
        res[label]["cpu_ms_per_sample"] = round(1000 * cpu_s / n, 1)
    for runner in args.runners:
        pre = "" if runner == "FnApiRunner" else f"{runner}_"  # FnApiRunner keeps the old keys
        for w in args.workers:
            for label, code in codes.items():
                out = os.path.join(tmp, f"{label}-{runner}-w{w}")
                wall, summary = cli_build(out, n, args.shard_size, args.seed, w, code, runner)
                pipe_s = summary["elapsed_s"]
                print(
                    f"[{label}] mcie build --runner {runner} -w {w} : {n / wall:7.1f} samples/s wall "
                    f"({wall:.1f} s incl. start-up), {n / pipe_s:7.1f} samples/s in the pipeline "
                    f"({pipe_s:.1f} s), {1000 * summary['cpu_s'] / n:.1f} CPU ms/sample, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                res[label][f"{pre}build_w{w}_wall_samples_per_s"] = round(n / wall, 1)
                res[label][f"{pre}build_w{w}_pipeline_samples_per_s"] = round(n / pipe_s, 1)
                res[label][f"{pre}build_w{w}_cpu_ms_per_sample"] = round(1000 * summary["cpu_s"] / n, 1)
                shutil.rmtree(out, ignore_errors=True)
    for r in res.values():
        for runner in args.runners:
            pre = "" if runner == "FnApiRunner" else f"{runner}_"
            if runner == "FnApiRunner" and 1 in args.workers:
                r["beam_overhead_w1"] = round(
                    r["plain_loop_samples_per_s"] / r["build_w1_wall_samples_per_s"], 2
                )
            if 1 in args.workers and 2 in args.workers:
                for kind in ("wall", "pipeline"):
                    one, two = (
                        r[f"{pre}build_w1_{kind}_samples_per_s"],
                        r[f"{pre}build_w2_{kind}_samples_per_s"],
                    )
                    r[f"{pre}speedup_w2_over_w1_{kind}"] = round(two / one, 2)
            if pre and "FnApiRunner" in args.runners:  # the other runner's cost, FnApiRunner = 1
                for w in args.workers:
                    for kind in ("wall", "pipeline"):
                        base = r[f"build_w{w}_{kind}_samples_per_s"]
                        r[f"{pre}over_fnapi_w{w}_{kind}_time"] = round(
                            base / r[f"{pre}build_w{w}_{kind}_samples_per_s"], 2
                        )
                    base = r[f"build_w{w}_cpu_ms_per_sample"]
                    r[f"{pre}over_fnapi_w{w}_cpu"] = round(r[f"{pre}build_w{w}_cpu_ms_per_sample"] / base, 2)
    return res


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--plain-loop":  # the child of loop_in_process
        out, n, shard, seed = sys.argv[2], *map(int, sys.argv[3:])
        print(*plain_loop(out, n, shard, seed, cpu=True))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="candidates per run")
    ap.add_argument("--shard-size", type=int, default=250, help="candidates per unit")
    ap.add_argument("--seed", type=int, default=4242, help="seed of every run")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    ap.add_argument(
        "--runners", nargs="+", default=["FnApiRunner"], help="runners to measure (FnApiRunner, dask)"
    )
    ap.add_argument("--before", metavar="REV", default=None, help="also measure git revision REV (e.g. main)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mcie-bench-")
    try:
        codes = {"after": None}
        if args.before:
            codes = {"before": code_tree(args.before, os.path.join(tmp, "before")), "after": None}
        load0 = os.getloadavg()
        results = {"samples": args.samples, "shard_size": args.shard_size, "cores": os.cpu_count()}
        results.update(measure(tmp, codes, args))
        load1 = os.getloadavg()
        results["load_average_1min"] = [round(load0[0], 2), round(load1[0], 2)]
        print(
            f"load average (1 min) at start / end: {load0[0]:.2f} / {load1[0]:.2f} on {os.cpu_count()} cores"
        )
        if args.before:
            b, a = results["before"], results["after"]
            ratios = {k: round(a[k] / b[k], 2) for k in a if k.endswith("samples_per_s")}
            for k in (
                "ms_per_sample",
                "cpu_ms_per_sample",
                *(f"build_w{w}_cpu_ms_per_sample" for w in args.workers),
            ):
                ratios[f"{k}_after_over_before"] = round(a[k] / b[k], 2)
            results["after_over_before"] = ratios
            for k, v in ratios.items():
                print(f"after / before {k}: {v:.2f}x")
        print(json.dumps(results, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Scale of ``mcie build``: wall time, throughput and peak resident memory of the whole process
tree (driver + Beam worker processes), read from /proc every 0.25 s.

    .venv/bin/python benchmarks/bench_scale.py --samples 10000 --workers 2
    .venv/bin/python benchmarks/bench_scale.py --preset mcie --workers 2

Prints one line and a JSON object.
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


def tree_rss_kib(pid: int) -> int:
    """Summed VmRSS (KiB) of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields["PPid"].strip()), []).append(p)
        rss[p] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=None, help="candidates (or use --preset)")
    ap.add_argument("--preset", default=None, help="mcie build --preset")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--seed", type=int, default=777, help="seed")
    ap.add_argument("--keep", default=None, help="build into this directory and keep it")
    args = ap.parse_args()
    out = args.keep or os.path.join(tempfile.mkdtemp(prefix="mcie-scale-"), "out")
    cmd = [
        sys.executable,
        "-m",
        "mcie.cli",
        "build",
        "--out",
        out,
        "--workers",
        str(args.workers),
        "--seed",
        str(args.seed),
        "--json",
        "--no-progress",
    ]
    cmd += ["--samples", str(args.samples)] if args.samples else []
    cmd += ["--preset", args.preset] if args.preset else []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    summary = json.loads(proc.stdout.read().strip().splitlines()[-1])
    n = summary["candidates"]
    res = {
        "samples": n,
        "workers": args.workers,
        "wall_s": round(wall, 1),
        "samples_per_s_wall": round(n / wall, 1),
        "pipeline_s": summary["elapsed_s"],
        "peak_rss_mib": round(peak / 1024, 1),
        "exit_code": proc.returncode,
        "by_status": summary["by_status"],
    }
    print(
        f"{n} samples, {args.workers} workers: {wall:.1f} s wall, {n / wall:.1f} samples/s, "
        f"peak RSS of the process tree {peak / 1024:.0f} MiB"
    )
    print(json.dumps(res, sort_keys=True))
    if not args.keep:
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)


if __name__ == "__main__":
    main()

"""Peak memory and time of ``mcie audit`` and ``mcie report`` on builds of different sizes: the
streamed audit's memory should not grow with the build (RSS of the largest over the smallest).

    .venv/bin/python benchmarks/bench_audit.py /tmp/mem/b10k /tmp/mem/b90k
    .venv/bin/python benchmarks/bench_audit.py /tmp/mem/b10k --before main   # the old code too

Each command runs in a fresh process; its peak resident set comes from the kernel's account
of that child (``wait4``), its CPU seconds likewise. Prints one line per measurement with the
machine's load average, and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_build import _env, code_tree  # noqa: E402


def run_measured(cmd: list[str], env: dict[str, str], cwd: str) -> dict[str, float]:
    """Wall and CPU seconds and peak RSS (MB) of one command run as a child process in ``cwd``
    (not the checkout: ``python -m`` puts the working folder first on ``sys.path``, which
    would import this checkout's code over the revision on ``PYTHONPATH``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 2):  # 2: the audit found problems, still a measurement
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}")
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "stdout": out.decode(errors="replace"),
    }


def candidates(build: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(os.path.join(build, "index.parquet")).metadata.num_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="build folders, smallest first")
    ap.add_argument("--commands", nargs="+", default=["audit", "report"], choices=["audit", "report"])
    ap.add_argument("--before", metavar="REV", default=None, help="also measure git revision REV")
    args = ap.parse_args()
    args.builds = [os.path.abspath(b) for b in args.builds]
    tmp = tempfile.mkdtemp(prefix="mcie-bench-audit-")
    codes: dict[str, str | None] = {"after": None}
    if args.before:
        codes = {"before": code_tree(args.before, os.path.join(tmp, "before")), "after": None}
    results: dict = {"cores": os.cpu_count(), "runs": []}
    for label, code in codes.items():  # say which code each label runs
        probe = [sys.executable, "-c", "import mcie.audit; print(mcie.audit.__file__)"]
        where = subprocess.run(probe, env=_env(code), cwd=tmp, capture_output=True, text=True).stdout.strip()
        print(f"[{label}] runs {where}", flush=True)
    for build in args.builds:
        n = candidates(build)
        for command in args.commands:
            for label, code in codes.items():
                cmd = [sys.executable, "-m", "mcie.cli", command, build, "--json"]
                if command == "report":
                    cmd += ["--out", os.path.join(tmp, f"{label}-{n}.html")]
                load = os.getloadavg()[0]
                m = run_measured(cmd, _env(code), tmp)
                figures = json.loads(m.pop("stdout").strip().splitlines()[-1])
                row = {"build": build, "candidates": n, "command": command, "code": label, **m,
                       "load_1min": round(load, 2)}  # fmt: skip
                if command == "audit":
                    keys = ("ok", "mask_miou", "mask_count", "filter_precision", "filter_recall")
                    row["figures"] = {k: figures.get(k) for k in keys}
                results["runs"].append(row)
                print(
                    f"[{label}] mcie {command} {n} candidates: peak RSS {m['peak_rss_mb']:.0f} MB, "
                    f"{m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU "
                    f"({1000 * m['cpu_s'] / max(1, n):.2f} CPU ms/candidate), load {load:.2f}",
                    flush=True,
                )
    if len(args.builds) > 1:
        ratios = {}
        for command in args.commands:
            for label in codes:
                rows = [r for r in results["runs"] if r["command"] == command and r["code"] == label]
                small, large = rows[0], rows[-1]
                ratios[f"{label}_{command}_rss_{large['candidates']}_over_{small['candidates']}"] = round(
                    large["peak_rss_mb"] / small["peak_rss_mb"], 3
                )
        results["ratios"] = ratios
        for k, v in ratios.items():
            print(f"{k}: {v:.3f}x")
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()

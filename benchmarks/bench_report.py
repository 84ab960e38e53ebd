"""What ``mcie report`` costs next to the build it reports on, and how its page grows.

1. Builds the demo set as ``make demo`` does (1,200 candidates, 2 workers, shards of 200),
   timing the ``mcie build`` command; then times ``mcie report`` on it (both as commands,
   process start included) and prints the page's size, split into its parts (charts, gallery
   thumbnails, the rest).
2. Scaling without building 90k samples: the demo index tiled to ``--scale-rows`` rows (fresh
   keys, the same statuses, reasons, sub-edit counts and edit types) goes through the report's
   own counting and gallery selection; the page's data then holds the same number of gallery
   items (the caps) and a filter-combination table whose size is printed — the two parts that
   could grow with the build. The thumbnails' bytes per item are measured on the demo.

    .venv/bin/python benchmarks/bench_report.py            # --samples 1200 --scale-rows 90000

Prints one line per measurement and a JSON summary at the end; writes under a temp folder
(``--keep DIR`` keeps the build and the page there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds of a command (process start included) and its stdout."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.perf_counter() - t0, r.stdout


def page_parts(html: str) -> dict[str, int]:
    """Bytes of the page's charts, gallery thumbnails, and everything else."""
    charts = sum(len(m) for m in re.findall(r'src="data:image/png;base64,[^"]*"', html))
    m = re.search(r'id="gallery-data">(.*?)</script>', html, re.S)
    data = json.loads(m.group(1))
    thumbs = sum(len(u) for it in data["items"] for _, u in it["img"])
    return {
        "total": len(html.encode()),
        "charts": charts,
        "thumbnails": thumbs,
        "gallery_items": len(data["items"]),
        "combos": len(data["combos"]),
        "combos_bytes": len(json.dumps(data["combos"], separators=(",", ":"))),
        "rest": len(html.encode()) - charts - thumbs,
    }


def scaled_index(index: list[dict], rows: int) -> list[dict]:
    """The demo index tiled to ``rows`` rows with fresh 20-hex keys."""
    out = []
    for i in range(rows):
        r = dict(index[i % len(index)])
        r["key"] = hashlib.blake2b(f"{i}".encode(), digest_size=10).hexdigest()
        out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1200, help="demo size (default 1200, as make demo)")
    ap.add_argument("--scale-rows", type=int, default=90000, help="rows of the tiled index (default 90000)")
    ap.add_argument("--keep", default=None, help="build and write the page here instead of a temp folder")
    args = ap.parse_args()
    root = args.keep or tempfile.mkdtemp(prefix="bench-report-")
    out = os.path.join(root, "demo")
    shutil.rmtree(out, ignore_errors=True)
    mcie = [sys.executable, "-m", "mcie.cli"]
    build_s, _ = timed([*mcie, "build", "--out", out, "--samples", str(args.samples), "--seed", "0",
                        "--workers", "2", "--shard-size", "200", "--no-progress"])  # fmt: skip
    print(f"mcie build ({args.samples} candidates, 2 workers): {build_s:.1f} s", flush=True)
    report_s, stdout = timed([*mcie, "report", out, "--json"])
    summary = json.loads(stdout.strip().splitlines()[-1])
    print(f"mcie report: {report_s:.1f} s ({report_s / build_s:.2f} of the build's time)", flush=True)
    no_audit_s, _ = timed([*mcie, "report", out, "--no-audit", "--out", os.path.join(root, "no-audit.html")])
    print(
        f"mcie report --no-audit: {no_audit_s:.1f} s ({no_audit_s / build_s:.2f} of the build's time)",
        flush=True,
    )
    with open(summary["path"], encoding="utf-8") as fh:
        parts = page_parts(fh.read())
    print(
        f"page: {parts['total'] / 1e6:.2f} MB — thumbnails {parts['thumbnails'] / 1e6:.2f} MB for "
        f"{parts['gallery_items']} samples, charts {parts['charts'] / 1e3:.0f} kB, "
        f"rest {parts['rest'] / 1e3:.0f} kB ({parts['combos']} filter combinations, "
        f"{parts['combos_bytes'] / 1e3:.1f} kB)",
        flush=True,
    )

    from mcie.report.dataset import GalleryConfig, counts, read_index, select_gallery

    index = read_index(out)
    big = scaled_index(index, args.scale_rows)
    t0 = time.perf_counter()
    c = counts(big)
    chosen = select_gallery(big, GalleryConfig())
    scale_s = time.perf_counter() - t0
    combos_bytes = len(json.dumps(c["combos"], separators=(",", ":")))
    per_item = parts["thumbnails"] / max(1, summary["gallery_thumbnails"])
    estimate = (
        parts["total"] - parts["thumbnails"] - parts["combos_bytes"] + combos_bytes + per_item * len(chosen)
    )
    print(
        f"tiled index of {len(big)} rows: {len(c['combos'])} filter combinations "
        f"({combos_bytes / 1e3:.1f} kB), "
        f"{len(chosen)} gallery items (cap), counted and selected in {scale_s:.2f} s; "
        f"page estimate {estimate / 1e6:.2f} MB at {per_item / 1e3:.1f} kB of thumbnails per item",
        flush=True,
    )
    result = {
        "samples": args.samples,
        "build_s": round(build_s, 2),
        "report_s": round(report_s, 2),
        "report_over_build": round(report_s / build_s, 3),
        "report_no_audit_s": round(no_audit_s, 2),
        "report_no_audit_over_build": round(no_audit_s / build_s, 3),
        "page": parts,
        "gallery_thumbnails": summary["gallery_thumbnails"],
        "scaled_rows": len(big),
        "scaled_combos": len(c["combos"]),
        "scaled_combos_bytes": combos_bytes,
        "scaled_gallery_items": len(chosen),
        "scaled_page_estimate_bytes": int(estimate),
    }
    print(json.dumps(result, sort_keys=True))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""How much of a CIE-Bench judge IC is the pixel judge's colour-offset rule?

``PixelJudge.purity`` fails a colour whose pixels sit, by their median, more than
``EXACT_TOL`` (6) levels off it: the renderer paints an inside exactly, so in rendered data a
hue turned by 10 degrees shows as such an offset. An editor's output is never painted exactly.
This rescores the outputs a ``mcie bench run`` kept in its ``gallery.jsonl`` (every set, as
lossless PNG) with the same judge at other values of that one rule, and checks first that the
run's own rule reproduces its verdicts.

    python benchmarks/experiments/judge_offset_tolerance.py BENCH EVAL [EVAL ...] --tol 6,8,12

The build's filter keeps ``EXACT_TOL`` = 6; a bench run takes another rule with ``mcie bench run
--colour-offset-tol`` (recorded in its summary). This script gives the same verdicts from the
outputs a run kept, without running the editor again.
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import os

import numpy as np
from PIL import Image

import mcie.transforms.synthetic.judge as judge_module
from mcie.bench.editors import BenchItem
from mcie.bench.metrics import judge_executed
from mcie.bench.sets import load_bench, plan_from_json, scene_from_json


def _decode(uri: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def rescore(items: dict, eval_dir: str, tol: int) -> tuple[dict, int, int]:
    """(judge IC overall and per edit type, sets whose verdicts equal the run's, sets) at ``tol``."""
    with open(os.path.join(eval_dir, "samples.jsonl")) as fh:
        ran = {r["set_id"]: r["executed"] for r in map(json.loads, fh)}
    per_set, by_type, same = [], collections.defaultdict(list), 0
    with open(os.path.join(eval_dir, "gallery.jsonl")) as fh:
        for g in map(json.loads, fh):
            it = items[g["set_id"]]
            out = _decode(dict(g["img"])["output"])
            plan, scene = plan_from_json(it.plan_json), scene_from_json(it.scene_json)
            done, _ = judge_executed(it.src, out, plan, scene, it.regions, tol)
            same += done == ran[g["set_id"]]
            per_set.append(float(np.mean(done)))
            for t, d in zip(it.edit_types, done, strict=True):
                by_type[t].append(d)
    ic = {t: round(float(np.mean(v)), 3) for t, v in by_type.items()}
    ic["all"] = round(float(np.mean(per_set)), 3)
    return ic, same, len(per_set)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", help="the benchmark folder the runs were scored on")
    p.add_argument("evals", nargs="+", help="mcie bench run output folders")
    p.add_argument("--tol", default="6,8,10,12", help="EXACT_TOL values (default 6,8,10,12)")
    args = p.parse_args()
    items = {it.set_id: it for it in map(BenchItem.from_row, load_bench(args.bench))}
    tols = [int(t) for t in args.tol.split(",")]
    print("| run | " + " | ".join(f"judge IC at {t}" for t in tols) + " | verdicts reproduced at 6 |")
    print("|---|" + "---|" * (len(tols) + 1))
    for ev in args.evals:
        cells, check = [], ""
        for t in tols:
            ic, same, n = rescore(items, ev, t)
            types = ", ".join(f"{k} {v:.2f}" for k, v in ic.items() if k != "all")
            cells.append(f"{ic['all']:.3f} ({types})")
            if t == judge_module.EXACT_TOL:
                check = f"{same}/{n}"
        print(f"| {os.path.basename(ev.rstrip('/'))} | " + " | ".join(cells) + f" | {check} |")


if __name__ == "__main__":
    main()

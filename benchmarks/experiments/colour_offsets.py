"""Where does an editor's recolour sit, when the pixel judge's colour-offset rule fails it?

The judge fails a recolour whose inside shows the new colour only by a median distance over
``offset_tol`` (6 levels for a build, see ``judge_offset_tolerance.py``). This reads the outputs
a ``mcie bench run`` kept (``gallery.jsonl``) and, for every solid recolour sub-instruction whose
object is large enough to be judged on its inside, measures on that inside (eroded by 1 px, as
the judge reads it):

- ``offset``: the largest channel distance of the median output colour from the new colour;
- ``toward_old``: how far the median output colour sits on the way back from the new colour to
  the old one (0: the new colour, 1: unchanged), its projection on that line;
- ``off_line``: what is left off that line (levels, largest channel): a shade the line does
  not explain (a hue turned, a grey pulled in);
- ``spread``: the median per-channel standard deviation inside (grain);
- ``pixel_offset``: the median over the inside's pixels of each one's largest channel distance
  from the new colour — what the judge's rule reads (on the pixels within ``colour_tol``), so
  grain alone moves it though the median colour sits on the new one.

A systematic ``toward_old`` says the edit is carried out partly (the model undershoots, as an
under-trained regressor does); a large ``off_line`` with ``toward_old`` near 0 says the colour
is reached but shaded.

    python benchmarks/experiments/colour_offsets.py BENCH EVAL [EVAL ...]

Figures: ``benchmarks/notes/2026-12-filter-worth.md``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from judge_offset_tolerance import _decode  # a sibling script

from mcie.bench.editors import BenchItem
from mcie.bench.metrics import judge_executed
from mcie.bench.sets import load_bench, plan_from_json, scene_from_json
from mcie.metrics import erode
from mcie.transforms.synthetic.edits import edit_type
from mcie.transforms.synthetic.judge import EXACT_TOL


def measure(items: dict, eval_dir: str) -> list[dict]:
    """One row per judged-on-its-inside recolour of ``eval_dir``'s kept outputs."""
    recolour = type(edit_type("recolour"))
    original, rows, current = recolour.check, [], {}

    def check(self, c):  # the judge's own crop, as it checks the sub-edit
        inside = erode(c.g, 1)
        if c.g.any() and inside.sum() >= 8 and c.p["pattern"] == "solid":
            new = np.asarray(c.p["to_rgb"], dtype=np.float64)
            old = np.asarray(c.p["rgb"], dtype=np.float64)
            px = c.tgt[inside].astype(np.float64)
            med = np.median(px, axis=0)
            d = old - new
            t = float((med - new) @ d / (d @ d))
            rows.append(
                {
                    **current,
                    "offset": float(np.abs(med - new).max()),
                    "toward_old": t,
                    "off_line": float(np.abs(med - new - t * d).max()),
                    "spread": float(np.median(px.std(axis=0))),
                    "pixel_offset": float(np.median(np.abs(px - new).max(axis=1))),
                    "pixels": int(inside.sum()),
                }
            )
        return original(self, c)

    recolour.check = check
    try:
        with open(os.path.join(eval_dir, "gallery.jsonl")) as fh:
            for g in map(json.loads, fh):
                it = items[g["set_id"]]
                out = _decode(dict(g["img"])["output"])
                # (older runs kept pictures enlarged by an integer factor, nearest-neighbour)
                out = out[:: out.shape[0] // it.src.shape[0], :: out.shape[1] // it.src.shape[1]]
                current = {"set_id": g["set_id"]}
                plan, scene = plan_from_json(it.plan_json), scene_from_json(it.scene_json)
                judge_executed(it.src, out, plan, scene, it.regions, EXACT_TOL)
    finally:
        recolour.check = original
    return rows


def summarise(rows: list[dict]) -> dict:
    """Shares of recolours by offset band, and the medians of the measures above."""
    off = np.array([r["offset"] for r in rows])
    return {
        "recolours": len(rows),
        "offset <= 6": round(float((off <= 6).mean()), 3),
        "6 < offset <= 12": round(float(((off > 6) & (off <= 12)).mean()), 3),
        "12 < offset <= 24": round(float(((off > 12) & (off <= 24)).mean()), 3),
        "offset > 24": round(float((off > 24).mean()), 3),
        "median offset": round(float(np.median(off)), 1),
        "median toward_old": round(float(np.median([r["toward_old"] for r in rows])), 3),
        "median off_line": round(float(np.median([r["off_line"] for r in rows])), 1),
        "median spread": round(float(np.median([r["spread"] for r in rows])), 1),
        "median pixel_offset": round(float(np.median([r["pixel_offset"] for r in rows])), 1),
        "pixel_offset <= 6": round(float(np.mean([r["pixel_offset"] <= 6 for r in rows])), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", help="the benchmark folder the runs were scored on")
    p.add_argument("evals", nargs="+", help="mcie bench run output folders")
    p.add_argument("--json", help="write every row here")
    args = p.parse_args()
    items = {it.set_id: it for it in map(BenchItem.from_row, load_bench(args.bench))}
    out = {}
    for ev in args.evals:
        rows = measure(items, ev)
        out[ev] = rows
        print(os.path.basename(ev.rstrip("/")), json.dumps(summarise(rows)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh)


if __name__ == "__main__":
    main()

"""Why does the pixel judge fail a recolour? Named colour against exact colour, per checkpoint.

For the recolour sets of a CIE-Bench benchmark (the ``mini`` rung) this edits each set with an
MCIE-E1 checkpoint (true decomposition, as ``benchmarks/ablate_mcie_e1.py`` evaluates) and
reports, over the sub-instructions, on the inside of each region (eroded by 1 px, as the judge):

- ``named_colour_ok``: the median output colour's nearest palette colour is the target's
  (the right colour word was carried out, whatever its exact shade);
- ``share_within_16``: the share of pixels within 16 levels of the expected ones (what the
  pixel judge and the exact checker need for most of the region);
- ``colour_error``: median over sub-instructions of the median colour's largest channel error;
- ``grain``: median over sub-instructions of the per-channel standard deviation inside.

    python benchmarks/experiments/colour_check_mcie_e1.py --bench /tmp/abl-mini/bench --sets 50 \\
        CKPT [CKPT ...]

Figures: ``benchmarks/notes/2026-12-ladder.md``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mcie.bench.editors import BenchItem, MCIEE1Editor
from mcie.bench.sets import load_bench
from mcie.metrics import erode
from mcie.transforms.synthetic.scene import COLOURS


def nearest_colour(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    d = [np.abs(np.asarray(COLOURS[n], float) - rgb).sum() for n in names]
    return names[int(np.argmin(d))]


def check(ckpt: str, items: list[BenchItem], sampling: dict) -> dict:
    """The four figures for one checkpoint; ``sampling``: MCIEE1Editor's settings (None: the
    checkpoint's own)."""
    editor = MCIEE1Editor(ckpt, seed=0, **sampling)
    ok, within, err, grain = [], [], [], []
    for it in items:
        out, _ = editor.edit(it, True)
        for r in it.regions:
            m = erode(r, 1)
            if not m.any():
                continue
            o, e = out[m].astype(float), it.expected[m].astype(float)
            ok.append(nearest_colour(np.median(o, 0)) == nearest_colour(np.median(e, 0)))
            within.append(float((np.abs(o - e).max(-1) <= 16).mean()))
            err.append(float(np.abs(np.median(o, 0) - np.median(e, 0)).max()))
            grain.append(float(o.std(0).mean()))
    return {
        "checkpoint": ckpt,
        "sub_instructions": len(ok),
        "named_colour_ok": round(float(np.mean(ok)), 3),
        "share_within_16": round(float(np.mean(within)), 3),
        "colour_error": round(float(np.median(err)), 1),
        "grain": round(float(np.median(grain)), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="MCIE-E1 checkpoint folders")
    p.add_argument("--bench", required=True, help="recolour sets: mcie bench build --task mini")
    p.add_argument("--sets", type=int, default=50, help="the first N sets (default 50)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--scheduler", default=None, choices=["ddim", "euler_a"], help="default: the checkpoint's")
    p.add_argument("--guidance-scale", type=float, default=None, help="default: the checkpoint's")
    p.add_argument("--image-guidance-scale", type=float, default=None, help="default: the checkpoint's")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [r for r in load_bench(args.bench)[: args.sets] if set(r["edit_types"]) == {"recolour"}]
    items = [BenchItem.from_row(r) for r in rows]
    for ckpt in args.checkpoints:
        sampling = {
            "steps": args.steps,
            "scheduler": args.scheduler,
            "guidance_scale": args.guidance_scale,
            "image_guidance_scale": args.image_guidance_scale,
        }
        print(json.dumps(check(ckpt, items, sampling)), flush=True)


if __name__ == "__main__":
    main()

"""Does MCIE-E1 learn, and do SACA/BCCA help? ``tiny-pixel`` with and without them.

Builds the demo set (``mcie build --preset demo``: 1,200 candidates at 256 px, seed 0) and a
held-out set (seed 12345), trains ``tiny-pixel`` on it at 32 px twice with the same steps, seed
and data order (once as MCIE-E1, once with ``--no-saca --no-bcca``; by default both at once, one
torch thread each, so the two share the machine alike), then edits every held-out sample with
each checkpoint, given its true decomposition (sub-instructions + masks, as a user-given JSON
decomposition would be), and reports, 0..255 scale:

- ``region_l1_to_target``: mean |edited - target| inside the union of the sub-edit masks;
- ``region_compliance``: share of sub-edits whose mask region ends closer to the target than
  the source is (mean |edited - target| < 0.5 * mean |source - target| over its mask);
- ``background_l1_to_source``: mean |edited - source| outside the union (how much it moved);
- the same for the identity "editor" (output = source) as a floor.

    python benchmarks/experiments/learn_mcie_e1.py --steps 2000 --out /tmp/learn
    python benchmarks/experiments/learn_mcie_e1.py --steps 2000 --out /tmp/learn-recolour \\
        --edit-types recolour

The held-out samples are read as ``mcie train``'s validation reads them
(:class:`mcie.model.validation.ValidationSet`); the scores are ``region_scores.py``'s.
Figures: ``benchmarks/notes/2026-11-mcie-e1.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from region_scores import region_scores

from mcie.cli import main as mcie_main
from mcie.model.editor import MCIEEditor
from mcie.model.infer import edit_image
from mcie.model.validation import ValidationSample, ValidationSet


def build(out: str, samples: int, seed: int, args) -> str:
    if not os.path.isdir(out):
        argv = ["build", "--preset", "demo", "--out", out, "--samples", str(samples), "--seed", str(seed),
                "--min-edits", str(args.min_edits), "--max-edits", str(args.max_edits), "--no-progress",
                "--workers", "2"]  # fmt: skip
        if args.edit_types:
            argv += ["--edit-types", args.edit_types]
        assert mcie_main(argv) == 0
    return os.path.join(out, "shards", "*.tar")


def evaluate(ckpt: str | None, items: list[ValidationSample], args, guidance: float) -> dict:
    model = MCIEEditor.load(ckpt) if ckpt else None
    rows = []
    for item in items:
        if model is None:
            edited = item.src
        else:
            img, _ = edit_image(
                model,
                Image.fromarray(item.src),
                item.instruction,
                item.decomposition(),
                steps=args.sample_steps,
                seed=0,
                scheduler="ddim",
                guidance_scale=guidance,
                image_guidance_scale=args.image_guidance,
            )
            edited = np.asarray(img)
        rows.append(region_scores(edited, item.src, item.tgt, item.masks))
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def train_argv(train: str, run: str, args, extra: list[str]) -> list[str]:
    argv = ["train", "--shards", train, "--out", run, "--preset", "tiny-pixel",
            "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--seed", "0", "--resolution", str(args.resolution), "--checkpoint-every", str(args.steps),
            "--log-every", "100", "--threads", str(args.threads), *extra]  # fmt: skip
    return argv + (["--resume"] if os.path.isdir(run) else [])


def train_seconds(run: str) -> float | None:
    """Training wall time of a run from its ``log.jsonl``: a resumed run restarts ``elapsed_s``,
    so the last value of each segment is summed."""
    total, last = 0.0, None
    with open(os.path.join(run, "log.jsonl")) as fh:
        for line in fh:
            elapsed = json.loads(line).get("elapsed_s")
            if elapsed is None:
                continue
            if last is not None and elapsed < last:  # a new segment (--resume) began
                total += last
            last = elapsed
    return None if last is None else round(total + last, 2)


VARIANTS = (("mcie-e1", []), ("no-saca-no-bcca", ["--no-saca", "--no-bcca"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="work folder (data, runs, results.json)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per variant")
    p.add_argument("--batch-size", type=int, default=8, help="batch size")
    p.add_argument("--resolution", type=int, default=32, help="training and editing image side (default 32)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    p.add_argument(
        "--train-samples", type=int, default=1200, help="candidates built for training (demo: 1200)"
    )
    p.add_argument("--eval-samples", type=int, default=32, help="held-out samples scored")
    p.add_argument("--min-edits", type=int, default=2, help="fewest sub-edits per sample")
    p.add_argument("--max-edits", type=int, default=5, help="most sub-edits per sample")
    p.add_argument("--edit-types", default=None, help="restrict the data to these edit types (mcie build)")
    p.add_argument("--sample-steps", type=int, default=20, help="DDIM steps when editing")
    p.add_argument("--guidance", default="3.0,1.0", help="text guidance scales to edit with (comma list)")
    p.add_argument("--image-guidance", type=float, default=1.5, help="image guidance scale when editing")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    p.add_argument("--sequential", action="store_true", help="train the variants one after the other")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    train = build(os.path.join(args.out, "train"), args.train_samples, 0, args)
    evalset = build(os.path.join(args.out, "heldout"), args.eval_samples * 4, 12345, args)
    items = ValidationSet.from_shards(evalset, args.resolution, args.eval_samples).samples
    guidances = [float(g) for g in args.guidance.split(",")]
    results: dict = {"setup": {**vars(args), "eval_items": len(items)}}
    results["identity"] = evaluate(None, items, args, guidances[0])
    todo = [
        (n, x)
        for n, x in VARIANTS
        if not os.path.isdir(os.path.join(args.out, n, f"checkpoint-{args.steps}"))
    ]
    if args.sequential:
        for name, extra in todo:
            assert mcie_main(train_argv(train, os.path.join(args.out, name), args, extra)) == 0
    else:  # both at once: the same machine load falls on both
        procs = []
        for name, extra in todo:
            log_path = os.path.join(args.out, f"{name}.log")
            argv = train_argv(train, os.path.join(args.out, name), args, extra)
            cmd = [sys.executable, "-m", "mcie.cli", *argv]
            with open(log_path, "a") as log:  # the child keeps its own copy of the descriptor
                procs.append((name, log_path, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        for name, log_path, proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"training {name} failed: see {log_path}")
    for name, _ in VARIANTS:
        ckpt = os.path.join(args.out, name, f"checkpoint-{args.steps}")
        results[name] = {f"guidance {g}": evaluate(ckpt, items, args, g) for g in guidances}
        results[name]["train_s"] = train_seconds(os.path.join(args.out, name))
        print(name, results[name], flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Does MCIE-E1 learn, and do SACA/BCCA help? ``tiny-pixel`` with and without them.

Builds a training set and a held-out set (different seeds) with ``mcie build`` at 64 px, trains
``tiny-pixel`` at 32 px twice with the same steps, seed and data order (once as MCIE-E1, once
with ``--no-saca --no-bcca``), then edits every held-out sample with each checkpoint, given its
true decomposition (sub-instructions + masks, as a user-given JSON decomposition would be), and
reports, 0..255 scale:

- ``region_l1_to_target``: mean |edited - target| inside the union of the sub-edit masks;
- ``region_compliance``: share of sub-edits whose mask region ends closer to the target than
  the source is (mean |edited - target| < 0.5 * mean |source - target| over its mask);
- ``background_l1_to_source``: mean |edited - source| outside the union (how much it moved);
- the same for the identity "editor" (output = source) as a floor.

    python benchmarks/learn_mcie_e1.py --steps 400 --out /tmp/learn
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from mcie.cli import main as mcie_main
from mcie.images import decode_image, decode_mask
from mcie.model.data import resize_image, resize_mask
from mcie.model.decompose import Decomposition, SubInstruction
from mcie.model.editor import MCIEEditor
from mcie.model.infer import edit_image
from mcie.shards import read_tar


def build(out: str, samples: int, seed: int, args) -> str:
    if not os.path.isdir(out):
        argv = ["build", "--out", out, "--samples", str(samples), "--seed", str(seed), "--image-size", "64",
                "--shard-size", "200", "--min-edits", str(args.min_edits), "--max-edits", str(args.max_edits),
                "--no-progress", "--workers", "1"]  # fmt: skip
        assert mcie_main(argv) == 0
    return os.path.join(out, "shards", "*.tar")


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def held_out(pattern: str, res: int, n: int) -> list[dict]:
    items = []
    for path in sorted(glob.glob(pattern)):
        for _, m in read_tar(path):
            meta = json.loads(m["json"])
            subs = meta["sub_edits"]
            masks = [resize_mask(decode_mask(m[f"mask{i}.png"]), res).numpy() > 0 for i in range(len(subs))]
            items.append({
                "instruction": meta["instruction"],
                "subs": [s["instruction"] for s in subs],
                "src": to_uint8(resize_image(decode_image(m["src.jpg"]), res)),
                "tgt": to_uint8(resize_image(decode_image(m["tgt.jpg"]), res)),
                "masks": masks,
            })  # fmt: skip
            if len(items) == n:
                return items
    return items


def score(edited: np.ndarray, item: dict) -> dict:
    src, tgt = item["src"].astype(float), item["tgt"].astype(float)
    out = edited.astype(float)
    union = np.any(item["masks"], axis=0)
    done = []
    for m in item["masks"]:
        if m.any():
            done.append(np.abs(out - tgt)[m].mean() < 0.5 * np.abs(src - tgt)[m].mean())
    return {
        "region_l1_to_target": float(np.abs(out - tgt)[union].mean()) if union.any() else 0.0,
        "region_compliance": float(np.mean(done)) if done else 0.0,
        "background_l1_to_source": float(np.abs(out - src)[~union].mean()) if (~union).any() else 0.0,
    }


def evaluate(ckpt: str | None, items: list[dict], args) -> dict:
    model = MCIEEditor.load(ckpt) if ckpt else None
    rows = []
    for item in items:
        if model is None:
            edited = item["src"]
        else:
            subs = [SubInstruction(t, mask=m) for t, m in zip(item["subs"], item["masks"], strict=True)]
            d = Decomposition(item["instruction"], subs)
            img, _ = edit_image(
                model,
                Image.fromarray(item["src"]),
                item["instruction"],
                d,
                steps=args.sample_steps,
                seed=0,
                scheduler="ddim",
                guidance_scale=args.guidance,
                image_guidance_scale=1.5,
            )
            edited = np.asarray(img)
        rows.append(score(edited, item))
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="work folder (data, runs, results.json)")
    p.add_argument("--steps", type=int, default=400, help="training steps per variant")
    p.add_argument("--batch-size", type=int, default=8, help="batch size")
    p.add_argument("--resolution", type=int, default=32, help="training and editing image side (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate")
    p.add_argument("--train-samples", type=int, default=1000, help="candidates built for training")
    p.add_argument("--eval-samples", type=int, default=32, help="held-out samples scored")
    p.add_argument("--min-edits", type=int, default=2, help="fewest sub-edits per sample")
    p.add_argument("--max-edits", type=int, default=3, help="most sub-edits per sample")
    p.add_argument("--sample-steps", type=int, default=20, help="DDIM steps when editing")
    p.add_argument("--guidance", type=float, default=3.0, help="text guidance scale when editing")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    train = build(os.path.join(args.out, "train"), args.train_samples, 0, args)
    evalset = build(os.path.join(args.out, "heldout"), args.eval_samples * 3, 12345, args)
    items = held_out(evalset, args.resolution, args.eval_samples)
    results = {"setup": {**vars(args), "eval_items": len(items)}, "identity": evaluate(None, items, args)}
    for name, extra in (("mcie-e1", []), ("no-saca-no-bcca", ["--no-saca", "--no-bcca"])):
        run = os.path.join(args.out, name)
        t0 = time.time()
        if not os.path.isdir(os.path.join(run, f"checkpoint-{args.steps}")):
            argv = ["train", "--shards", train, "--out", run, "--preset", "tiny-pixel",
                    "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
                    "--lr", str(args.lr), "--seed", "0", "--resolution", str(args.resolution),
                    "--checkpoint-every", str(args.steps), "--log-every", "50", *extra]  # fmt: skip
            if os.path.isdir(run):
                argv.append("--resume")
            assert mcie_main(argv) == 0
        train_s = round(time.time() - t0, 1)
        results[name] = {
            **evaluate(os.path.join(run, f"checkpoint-{args.steps}"), items, args),
            "train_s": train_s,
        }
        print(name, results[name], flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

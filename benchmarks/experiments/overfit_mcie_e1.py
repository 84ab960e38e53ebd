"""Overfit MCIE-E1 on 8 samples and print the loss on fixed (sample, timestep, noise) triples.

Builds a small demo set in a temp dir (``mcie build --samples 40 --image-size 64``), takes its
first 8 accepted samples at 32 px, and trains with fresh random timesteps and noise each step
(no conditioning dropout); the measured triples are drawn once and never trained on directly.

    python benchmarks/experiments/overfit_mcie_e1.py --preset tiny --steps 80

Figures: ``benchmarks/notes/2026-11-mcie-e1.md``; ``tests/test_model_train.py`` asserts the 5x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from mcie.cli import main as mcie_main
from mcie.model.config import MCIEConfig
from mcie.model.data import shard_loader
from mcie.model.editor import MCIEEditor
from mcie.model.training import fixed_triple_loss, training_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "tiny-pixel"], help="model size")
    p.add_argument("--steps", type=int, default=80, help="optimiser steps (default 80)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--every", type=int, default=10, help="steps between measurements (default 10)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "demo")
        argv = ["build", "--out", out, "--samples", "40", "--image-size", "64", "--shard-size", "20"]
        assert mcie_main([*argv, "--no-progress"]) == 0
        model = MCIEEditor.from_config(MCIEConfig.preset_config(args.preset), seed=0)
        shards = os.path.join(out, "shards", "*.tar")
        batch = next(iter(shard_loader(shards, model.tokenizer, 32, 5, 8, shuffle_buffer=0, repeat=False)))
    g = torch.Generator().manual_seed(1)
    fixed_loss = fixed_triple_loss(model, batch, g)  # the triples come first; training then goes on with g

    before = fixed_loss()
    print(f"step 0: fixed-triple loss {before:.4f}")
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=args.lr)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        training_loss(model, batch, g, dropout=0.0).backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            now = fixed_loss()
            print(f"step {step}: fixed-triple loss {now:.4f} (÷{before / now:.1f}; {time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()

"""One run of the tiny-pixel learning sweep (benchmarks/notes/2026-11-mcie-e1.md, "How the
configuration was found"): train ``tiny-pixel`` on synthetic edits generated in-process (no
shards, no Beam, so it runs on a bare GPU machine), then score held-out edits every
``--eval-every`` steps.

The data: the synthetic source at ``--img`` px with exactly ``--edits`` sub-edits and no injected
failures, annotated by the pipeline's mask annotator, downscaled to ``--res``. Scores from
``region_scores.py``, as learn_mcie_e1.py's (region L1 to target, region compliance, background
L1 to source; 0..255), with the true decomposition, DDIM 20 steps, text guidance 3.0 / image 1.5
and 1.0 / 1.0.

    python benchmarks/experiments/sweep_tiny_pixel.py --types recolour --groups 8 --train-text \\
        --device cuda --tag F

``gpu_sweep_tiny_pixel.sh`` runs the twelve configurations of the table side by side on one GPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from region_scores import region_scores

from mcie.model.config import MCIEConfig
from mcie.model.data import resize_image, resize_mask
from mcie.model.decompose import Decomposition, SubInstruction
from mcie.model.editor import MCIEEditor
from mcie.model.infer import edit_image
from mcie.model.tokenizer import token_ids
from mcie.model.training import training_loss
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.planner import PlanConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", default="run", help="name printed on every line")
    p.add_argument("--types", default="", help="edit types, comma list (default: all seven)")
    p.add_argument("--img", type=int, default=64, help="generated image side")
    p.add_argument("--res", type=int, default=32, help="training and editing side")
    p.add_argument("--n", type=int, default=800, help="training samples")
    p.add_argument("--eval", type=int, default=24, help="held-out samples")
    p.add_argument("--edits", type=int, default=2, help="sub-edits per sample")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--eval-every", type=int, default=750, help="steps between evaluations")
    p.add_argument("--bs", type=int, default=8, help="batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate")
    p.add_argument("--ablate", action="store_true", help="--no-saca --no-bcca")
    p.add_argument("--train-text", action="store_true", help="train the text encoder too")
    p.add_argument("--groups", type=int, default=32, help="UNet norm groups")
    p.add_argument("--blocks", default="32,64", help="UNet block_out_channels")
    p.add_argument("--attention-levels", default="0", help="UNet levels with cross-attention (the sweep: 0)")
    p.add_argument("--gate", type=float, default=0.0, help="start value of the SACA/BCCA gates")
    p.add_argument("--device", default="cpu", help="torch device")
    return p.parse_args()


def make_data(source: SyntheticSource, seed: int, n: int, res: int) -> list[dict]:
    """``n`` annotated samples of ``seed`` at ``res`` px (samples the annotator leaves without a
    mask are skipped)."""
    annotator, out, i = MaskAnnotator(), [], 0
    while len(out) < n:
        sample, _ = source.generate(seed, i)
        i += 1
        sample = annotator.annotate(sample)
        if any(e.mask is None for e in sample.sub_edits):
            continue
        out.append({
            "instruction": sample.instruction,
            "subs": [e.instruction for e in sample.sub_edits],
            "src": resize_image(sample.src, res),
            "tgt": resize_image(sample.tgt, res),
            "regions": torch.stack([resize_mask(e.mask, res) for e in sample.sub_edits]),
        })  # fmt: skip
    return out


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def evaluate(model: MCIEEditor, held: list[dict], tag: str, step: int, t0: float) -> None:
    for guidance, image_guidance in ((3.0, 1.5), (1.0, 1.0)):
        rows = []
        for d in held:
            src, tgt = to_uint8(d["src"]), to_uint8(d["tgt"])
            masks = [m.numpy() > 0 for m in d["regions"]]
            subs = [SubInstruction(t, mask=m) for t, m in zip(d["subs"], masks, strict=True)]
            decomposition = Decomposition(d["instruction"], subs)
            img, _ = edit_image(model, Image.fromarray(src), d["instruction"], decomposition, steps=20,
                                seed=0, scheduler="ddim", guidance_scale=guidance,
                                image_guidance_scale=image_guidance)  # fmt: skip
            rows.append(list(region_scores(np.asarray(img), src, tgt, masks).values()))
        r = np.mean(rows, axis=0)  # region L1 to target, compliance, background L1 to source
        print(f"RESULT {tag} step {step} g {guidance} regionL1 {r[0]:.1f} compliance {r[1]:.3f} "
              f"bgL1 {r[2]:.1f} t {time.time() - t0:.0f}s", flush=True)  # fmt: skip
    model.unet.train()


def main() -> None:
    a = parse_args()
    torch.set_num_threads(1)
    weights = tuple((t, 1.0) for t in a.types.split(",")) if a.types else PlanConfig().edit_weights
    source = SyntheticSource(
        SyntheticConfig(
            image_size=a.img,
            plan=PlanConfig(a.edits, a.edits, weights),
            failures=FailureConfig(rate=0.0),
        )
    )
    cfg = MCIEConfig.preset_config(
        "tiny-pixel",
        resolution=a.res,
        saca=not a.ablate,
        bcca=not a.ablate,
        block_out_channels=tuple(int(c) for c in a.blocks.split(",")),
        attention_levels=tuple(int(v) for v in a.attention_levels.split(",")),
        norm_num_groups=a.groups,
        max_sub_edits=a.edits,
        train_text_encoder=a.train_text,
    )
    model = MCIEEditor.from_config(cfg, seed=0)
    t0 = time.time()
    train, held = make_data(source, 0, a.n, a.res), make_data(source, 12345, a.eval, a.res)
    print(a.tag, f"data {time.time() - t0:.1f}s", flush=True)
    ids = token_ids(model.tokenizer, [d["instruction"] for d in train])
    sub_ids = torch.stack([token_ids(model.tokenizer, d["subs"]) for d in train])
    S, T = torch.stack([d["src"] for d in train]), torch.stack([d["tgt"] for d in train])
    R = torch.stack([d["regions"] for d in train])
    model.to(a.device)
    model.text_encoder.requires_grad_(cfg.train_text_encoder)
    with torch.no_grad():
        for name, p in model.unet.named_parameters():
            if name.endswith("_gate"):
                p.fill_(a.gate)
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    model.unet.train()
    t0, losses = time.time(), []
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(train), (a.bs,), generator=g)
        batch = {
            "src": S[idx],
            "tgt": T[idx],
            "regions": R[idx],
            "input_ids": ids[idx],
            "sub_ids": sub_ids[idx],
        }
        loss = training_loss(model, batch, g, dropout=0.05)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 250 == 0:
            print(
                a.tag, step, round(float(np.mean(losses[-250:])), 4), f"{time.time() - t0:.0f}s", flush=True
            )
        if step % a.eval_every == 0:
            evaluate(model, held, a.tag, step, t0)


if __name__ == "__main__":
    main()

"""Validation during training: edit a few fixed shard samples and score them.

Each sample is edited with :func:`mcie.model.infer.edit_image` given its true decomposition
(the sub-instructions and masks stored in the shard, as a user-given JSON decomposition would
be), at the training resolution (centre square, as the loader crops). Scores, on the 0..255
scale, averaged over the samples:

- ``val_region_l1``: mean |edited - target| inside the union of the sub-edit masks (did the edits
  happen);
- ``val_background_l1``: mean |edited - source| outside that union (did the rest stay put).

The grid image has one row per sample: source | edited | target.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from PIL import Image

from mcie.model.data import expand_shards, resize_image, resize_mask
from mcie.model.decompose import Decomposition, SubInstruction
from mcie.model.editor import MCIEEditor
from mcie.model.infer import edit_image
from mcie.shards import decode_sample, read_tar
from mcie.validate import sample_problems

log = logging.getLogger(__name__)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, R, R) in [-1, 1] → (R, R, 3) uint8."""
    return ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


@dataclasses.dataclass
class ValidationSample:
    """One shard sample at the training resolution."""

    key: str
    instruction: str
    subs: list[str]
    src: np.ndarray  # (R, R, 3) uint8
    tgt: np.ndarray  # (R, R, 3) uint8
    masks: np.ndarray  # (K, R, R) bool, one per sub-edit

    def decomposition(self) -> Decomposition:
        subs = [SubInstruction(t, mask=m) for t, m in zip(self.subs, self.masks, strict=True)]
        return Decomposition(self.instruction, subs)


class ValidationSet:
    """The first ``n`` samples of the shards matching ``pattern`` (sorted shards, file order)."""

    def __init__(self, samples: list[ValidationSample], steps: int = 10, seed: int = 0) -> None:
        if not samples:
            raise ValueError("the validation set is empty")
        if steps < 1:
            raise ValueError(f"validation steps must be >= 1, got {steps}")
        self.samples, self.steps, self.seed = samples, steps, seed

    @classmethod
    def from_shards(
        cls, pattern: str, resolution: int, n: int, steps: int = 10, seed: int = 0
    ) -> ValidationSet:
        items: list[ValidationSample] = []
        for path in expand_shards(pattern):
            for key, m in read_tar(path):
                problems, _ = sample_problems(key, m)  # the one sample validator
                if problems:
                    log.warning("validation skips a bad sample of %s: %s", path, "; ".join(problems))
                    continue
                meta, src, tgt, full_masks = decode_sample(m)
                subs = meta["sub_edits"]
                masks = [resize_mask(mask, resolution).numpy() > 0 for mask in full_masks]
                items.append(
                    ValidationSample(
                        key=key,
                        instruction=meta["instruction"],
                        subs=[s["instruction"] for s in subs],
                        src=_to_uint8(resize_image(src, resolution)),
                        tgt=_to_uint8(resize_image(tgt, resolution)),
                        masks=np.stack(masks) if masks else np.zeros((0, resolution, resolution), bool),
                    )
                )
                if len(items) == n:
                    return cls(items, steps, seed)
        return cls(items, steps, seed)

    def run(self, model: MCIEEditor) -> tuple[Image.Image, dict[str, float | None]]:
        """Edit every sample (DDIM, fixed seed); returns the grid image and the mean scores
        (``None`` when no sample has a region, or no background)."""
        rows, region, background = [], [], []
        for s in self.samples:
            d = s.decomposition()
            img, _ = edit_image(
                model,
                Image.fromarray(s.src),
                s.instruction,
                d,
                steps=self.steps,
                seed=self.seed,
                scheduler="ddim",
            )
            out = np.asarray(img.convert("RGB").resize(s.src.shape[1::-1]), dtype=np.uint8)
            union = s.masks.any(axis=0) if len(s.masks) else np.zeros(s.src.shape[:2], bool)
            edited, src, tgt = out.astype(float), s.src.astype(float), s.tgt.astype(float)
            if union.any():
                region.append(float(np.abs(edited - tgt)[union].mean()))
            if (~union).any():
                background.append(float(np.abs(edited - src)[~union].mean()))
            rows.append(np.concatenate([s.src, out, s.tgt], axis=1))  # (R, 3R, 3)
        grid = Image.fromarray(np.concatenate(rows, axis=0))  # (K*R, 3R, 3)
        metrics = {
            "val_region_l1": round(float(np.mean(region)), 4) if region else None,
            "val_background_l1": round(float(np.mean(background)), 4) if background else None,
        }
        return grid, metrics

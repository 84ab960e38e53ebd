"""The region scores of the early learning experiments (``learn_mcie_e1.py``, ``sweep_tiny_pixel.py``),
kept in one place so both report the same figures as the lab notebook
(``benchmarks/notes/2026-11-mcie-e1.md``). Images are (R, R, 3) uint8, masks (R, R) bool, one per
sub-edit; every score is on the 0..255 scale.

These predate CIE-Bench's pixel judge (``mcie bench run``), which later experiments use instead.
"""

from __future__ import annotations

import numpy as np


def region_scores(edited: np.ndarray, src: np.ndarray, tgt: np.ndarray, masks) -> dict[str, float]:
    """Scores of one edited sample:

    - ``region_l1_to_target``: mean |edited - target| inside the union of the sub-edit masks;
    - ``region_compliance``: share of sub-edits whose region ends closer to the target than the
      source is (mean |edited - target| < 0.5 * mean |source - target| over its mask);
    - ``background_l1_to_source``: mean |edited - source| outside the union (how much it moved).
    """
    src, tgt, out = src.astype(float), tgt.astype(float), edited.astype(float)
    union = np.any(masks, axis=0)
    done = [np.abs(out - tgt)[m].mean() < 0.5 * np.abs(src - tgt)[m].mean() for m in masks if m.any()]
    return {
        "region_l1_to_target": float(np.abs(out - tgt)[union].mean()) if union.any() else 0.0,
        "region_compliance": float(np.mean(done)) if done else 0.0,
        "background_l1_to_source": float(np.abs(out - src)[~union].mean()) if (~union).any() else 0.0,
    }

"""CIE-Bench's per-set scores, on top of the shared :mod:`mcie.metrics`.

Instruction Compliance on synthetic sets comes from **the build's pixel judge** (the checks the
pipeline's filter uses: colour, presence, position, size and pattern per sub-edit; see
``mcie.transforms.judge``), run on the editor's output at the set's resolution
(:func:`judge_executed`): a sub-instruction counts executed when the judge says so. A sample's
compliance is the share of its sub-instructions executed; ``all_executed`` says whether every
one was. The judge asks whether the sub-instruction was carried out, not whether the pixels
equal one particular rendering.

The **exact checker** stays beside it as ``ic_exact``: sub-instruction k counts executed when
at least :data:`AGREE_MIN` of its region's pixels match the expected target within
:data:`AGREE_TOL` levels on every channel (mild grain or a slightly different shade fails it).

Background Consistency: masked SSIM, PSNR (capped at 100 dB) and L1 between the output and the
source outside the union of regions (SSIM over the background eroded by its window radius).

MagicBrush-style L1 and L2 compare the whole output with the reference target (0..1 scale, mean
over pixels and channels). CLIP-I, CLIP-T and DINO need their models given locally; LPIPS needs
torchvision and its weights, which this machine lacks: both are reported as null, never faked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcie.metrics import background_metrics

AGREE_TOL = 16
AGREE_MIN = 0.9


def region_agreement(output: np.ndarray, expected: np.ndarray, region: np.ndarray) -> float:
    """Share of ``region`` where ``output`` matches ``expected`` within :data:`AGREE_TOL`."""
    if not region.any():
        return 1.0
    d = np.abs(output[region].astype(np.int16) - expected[region].astype(np.int16)).max(axis=-1)
    return float((d <= AGREE_TOL).mean())


def _pixel_judge(offset_tol: float | None = None):
    """The build's pixel judge, through its public class (its module may move into the
    synthetic domain; both homes are tried); ``offset_tol``: its colour-offset rule for an
    editor's outputs (None: the build's own, :data:`~mcie.transforms.synthetic.judge.EXACT_TOL`)."""
    try:
        from mcie.transforms.judge import PixelJudge
    except ImportError:  # pragma: no cover - after the judge moves into the synthetic domain
        from mcie.transforms.synthetic.judge import PixelJudge
    return PixelJudge(offset_tol=offset_tol)


def judge_executed(
    src: np.ndarray,
    output: np.ndarray,
    plan: list,
    scene,
    regions: list[np.ndarray],
    offset_tol: float | None = None,
) -> tuple[list[bool], list[float]]:
    """Per sub-instruction (executed, judge score) of ``output`` for a synthetic set: the
    planned edits (``plan``: :class:`PlannedEdit` s) with their regions, judged as the build's
    filter judges a candidate (its ``ground_mask`` is the target's visible footprint in the
    source scene)."""
    from mcie.records import EditSample, SubEdit
    from mcie.transforms.synthetic.scene import footprints

    fps = footprints(scene)
    subs = [
        SubEdit(
            edit_type=e.edit_type,
            instruction=e.instruction,
            target_phrase=e.target_phrase,
            label=e.label,
            params=e.params,
            ground_mask=None if e.target is None else fps[e.target],
            mask=r,
        )
        for e, r in zip(plan, regions, strict=True)
    ]
    sample = EditSample(
        key="bench", source_id="", source_hash="", src=src, tgt=output, instruction="", sub_edits=subs
    )
    _pixel_judge(offset_tol).judge(sample)
    return [bool(s.executed) for s in subs], [float(s.scores["compliance"]) for s in subs]


def score_set(
    src: np.ndarray, expected: np.ndarray, output: np.ndarray, regions: list[np.ndarray]
) -> dict[str, Any]:
    """All per-set figures of one editor output."""
    if output.shape != src.shape:
        raise ValueError(f"editor output {output.shape} differs from the source {src.shape}")
    agree = [region_agreement(output, expected, r) for r in regions]
    executed = [bool(a >= AGREE_MIN) for a in agree]
    union = np.zeros(src.shape[:2], dtype=bool)
    for r in regions:
        union |= r
    bg = background_metrics(src, output, ~union)
    diff = (output.astype(np.float64) - expected.astype(np.float64)) / 255.0
    return {
        "agreement": [round(a, 4) for a in agree],
        "executed": executed,
        "compliance": float(np.mean(executed)) if executed else 1.0,
        "all_executed": all(executed),
        "background_ssim": bg["bg_ssim"],
        "background_psnr": bg["bg_psnr"],
        "background_l1": bg["bg_l1"],
        "l1": float(np.abs(diff).mean()),
        "l2": float((diff * diff).mean()),
    }

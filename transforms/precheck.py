"""The pixel check that runs before a model judge: two failures any editor makes that the
pixels alone show, rejected (``precheck_rejected``) before a VLM call is spent on them.

- **Changes outside the masks.** An annotated mask holds every change near its sub-edit's
  evidence, so pixels that moved outside every mask (dilated by ``margin`` px, to leave an
  inpainter's soft seam out) are a change nobody asked for: a drifted background, an edit of
  the wrong object. Bound: ``max_outside_share`` of the image.
- **A target barely changed.** The changed pixels cover less than ``min_changed_share`` of
  the sub-edit's grounded target (its planner's box where it has none, as for ``add``): the edit was
  not done, or only a sliver of it. The grounded target, not the mask: a mask also holds a
  neighbouring sub-edit's changes within the annotator's search distance. All changed pixels
  count, not only the largest connected piece: a pattern edit changes an object in many
  small pieces (its dots or stripes), each a sliver of the whole.

Outside the masks a pixel changed when a channel moved by more than ``diff_tol`` levels (as
the annotator counts: an editor that composites on the source leaves the rest exact, so a
global shift of a few levels shows); inside a target, by more than ``change_tol`` (the pixel
judge's colour tolerance: an inpainter that repaints an object as it was moves it a little
everywhere, which is not an edit). Its figures are the sample's
``scores["outside_changed"]`` and each sub-edit's ``scores["changed_share"]``, so the report
can show why. Measured on the synthetic truth by ``benchmarks/bench_judge.py precheck``
(benchmarks/notes/judge.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import changed, dilate
from mcie.reasons import Reason, Status
from mcie.records import EditSample
from mcie.transforms.annotate import box_mask
from mcie.transforms.step import Step


@dataclasses.dataclass(frozen=True)
class PrecheckConfig:
    """Bounds of :class:`Precheck` (see the module's docstring)."""

    diff_tol: int = 2
    change_tol: int = 16
    margin: int = 3
    max_outside_share: float = 0.001
    min_changed_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.diff_tol < 255 or not 0 <= self.change_tol < 255 or self.margin < 0:
            raise ValueError(f"need 0 <= diff_tol, change_tol < 255 and margin >= 0, got {self}")
        if not 0.0 <= self.max_outside_share <= 1.0 or not 0.0 <= self.min_changed_share <= 1.0:
            raise ValueError(f"max_outside_share and min_changed_share must be in [0, 1], got {self}")


class Precheck:
    """Scores an annotated sample's changes against its masks; :meth:`passes` says whether it
    may go on to the judge."""

    name = "pixel-precheck-v1"

    def __init__(self, config: PrecheckConfig | None = None) -> None:
        self.config = config or PrecheckConfig()

    def score(self, sample: EditSample) -> EditSample:
        """Set ``scores["outside_changed"]`` on the sample and ``scores["changed_share"]`` on
        each sub-edit (in place); returns the sample."""
        if sample.src is None or sample.tgt is None:
            raise ValueError(f"sample {sample.key} has no images to check")
        c = self.config
        moved = changed(sample.src, sample.tgt, c.diff_tol)
        edited = changed(sample.src, sample.tgt, c.change_tol)
        union = np.zeros(moved.shape, dtype=bool)
        for sub in sample.sub_edits:
            if sub.mask is None:
                raise ValueError(f"sample {sample.key}: sub-edit {sub.instruction!r} is not annotated")
            union |= sub.mask
            # the grounded target is where the edit must show; a mask also holds the changes
            # of neighbouring sub-edits within the annotator's search distance
            where = sub.ground_mask if sub.ground_mask is not None else None
            if where is None or not where.any():  # add: the planner's box is where it must show
                where = box_mask(sub, *moved.shape)
            n = int(where.sum())
            share = float(edited[where].sum() / n) if n else 0.0
            sub.scores = {**sub.scores, "changed_share": round(share, 4)}
        outside = float((moved & ~dilate(union, c.margin)).mean())
        sample.scores = {**sample.scores, "outside_changed": round(outside, 5)}
        return sample

    def passes(self, sample: EditSample) -> bool:
        """Whether a sample (scored by :meth:`score`) is within both bounds."""
        c = self.config
        if sample.scores["outside_changed"] > c.max_outside_share:
            return False
        return all(sub.scores["changed_share"] >= c.min_changed_share for sub in sample.sub_edits)


class PrecheckStep(Step):
    """Between annotate and a model judge: a candidate :class:`Precheck` refuses is rejected
    (``precheck_rejected``); the judge and the filter leave it as it is."""

    stage = "score"
    reason = Reason.SCORE_ERROR

    def __init__(self, config: PrecheckConfig | None = None) -> None:
        self.check = Precheck(config)

    def process(self, sample: EditSample) -> EditSample:
        if not self.check.passes(self.check.score(sample)):
            sample.reject(Reason.PRECHECK_REJECTED)
        return sample


def prechecked(sample: EditSample) -> bool:
    """Whether the precheck rejected ``sample`` (later steps leave such a sample as it is)."""
    return sample.status == Status.REJECTED and sample.reason == Reason.PRECHECK_REJECTED.value

"""Annotate stage: a semantic-spatial mask, box and label per sub-edit, from evidence.

The evidence is what a real annotator model has too: both images, each sub-edit's type and
wording, the grounder's footprint of its target phrase on the source, and the planner's box for
new footprints (``add``, ``move``, ``resize``). Never the target scene, never the truth.

Mask semantics (DESIGN.md): ``add`` → footprint in the target; ``remove`` → footprint in the
source; every other type → union of source and target footprints. The target footprint is
the set of changed pixels inside the planner's boxes; which params hold those boxes, and
whether the grounded source footprint belongs to the mask, is each edit type's to say
(:mod:`mcie.transforms.synthetic.edits`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie.metrics import changed, dilate
from mcie.records import EditSample, mask_box


@dataclasses.dataclass(frozen=True)
class AnnotateConfig:
    """``diff_tol``: levels a channel must move for a pixel to count as changed (small: an
    editor that composites on the source leaves untouched pixels exactly equal, and the faint
    anti-aliased rim of a new shape moves only a few levels); ``box_margin``: pixels added
    around the planner's box (its rounding)."""

    diff_tol: int = 2
    box_margin: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.diff_tol < 255 or self.box_margin < 0:
            raise ValueError(f"need 0 <= diff_tol < 255 and box_margin >= 0, got {self}")


class MaskAnnotator:
    """Sets ``mask`` and ``box`` on every sub-edit of a sample (``label`` comes from the plan)."""

    name = "mask-annotator-v1"

    def __init__(self, config: AnnotateConfig | None = None) -> None:
        self.config = config or AnnotateConfig()

    def annotate(self, sample: EditSample) -> EditSample:
        """Annotate ``sample`` in place and return it."""
        if sample.src is None or sample.tgt is None:
            raise ValueError(f"sample {sample.key} has no images to annotate")
        if sample.src.shape != sample.tgt.shape:
            raise ValueError(f"source {sample.src.shape} and target {sample.tgt.shape} differ in size")
        h, w = sample.src.shape[:2]
        diff = changed(sample.src, sample.tgt, self.config.diff_tol)
        boxes = [self._box_region(sub, h, w, 0) for sub in sample.sub_edits]
        for k, sub in enumerate(sample.sub_edits):
            mask = np.zeros((h, w), dtype=bool)
            if sub.ground_mask is not None and _edit_type(sub.edit_type).mask_from != "target":
                mask |= sub.ground_mask
            region = self._box_region(sub, h, w, self.config.box_margin)
            if region is not None:
                # Changes another sub-edit explains are not this one's: its grounded source
                # footprint (objects never overlap), and its box outside this one's own box.
                ground, other_boxes = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=bool)
                for j, other in enumerate(sample.sub_edits):
                    if j != k:
                        if other.ground_mask is not None:
                            ground |= other.ground_mask
                        if boxes[j] is not None:
                            other_boxes |= boxes[j]
                mask |= diff & region & ~ground & ~(other_boxes & ~boxes[k])
            sub.mask = mask
            sub.box = mask_box(mask)
        sample.provenance = {**sample.provenance, "annotator": self.name}
        return sample

    @staticmethod
    def _box_region(sub, h: int, w: int, margin: int) -> np.ndarray | None:
        """The planner's boxes for new footprints, grown by ``margin``, as a mask (or None)."""
        boxes = _edit_type(sub.edit_type).new_boxes(sub.params)
        if not boxes:
            return None
        region = np.zeros((h, w), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            region[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = True
        return region


def _edit_type(name: str):
    # The planner's edit types say where their new footprints are; imported here, not at the
    # top, so the real-model backend (RegionAnnotator) does not load the synthetic domain.
    from mcie.transforms.synthetic.edits import edit_type

    return edit_type(name)


@dataclasses.dataclass(frozen=True)
class RegionAnnotateConfig:
    """``diff_tol``: levels a channel must move for a pixel to count as changed; ``search``:
    how far (px) from a sub-edit's evidence its changed pixels are looked for. A generative
    editor repaints past an object's outline (an inpainter works in a dilated region), so
    the search reaches further than the synthetic annotator's box margin."""

    diff_tol: int = 2
    search: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.diff_tol < 255 or self.search < 0:
            raise ValueError(f"need 0 <= diff_tol < 255 and search >= 0, got {self}")


class RegionAnnotator:
    """Masks from evidence for the real-model backend: a sub-edit's mask is the grounder's
    footprint of its target on the source, united with the pixels that changed between source
    and target within ``search`` px of its evidence (that footprint, or the planner's box
    where the grounder found nothing, as for ``add``). A change far from every sub-edit stays
    outside all masks, so the judge sees it as a background change."""

    name = "region-annotator-v1"

    def __init__(self, config: RegionAnnotateConfig | None = None) -> None:
        self.config = config or RegionAnnotateConfig()

    def annotate(self, sample: EditSample) -> EditSample:
        """Annotate ``sample`` in place and return it."""
        if sample.src is None or sample.tgt is None:
            raise ValueError(f"sample {sample.key} has no images to annotate")
        if sample.src.shape != sample.tgt.shape:
            raise ValueError(f"source {sample.src.shape} and target {sample.tgt.shape} differ in size")
        h, w = sample.src.shape[:2]
        diff = changed(sample.src, sample.tgt, self.config.diff_tol)
        for sub in sample.sub_edits:
            ground = sub.ground_mask if sub.ground_mask is not None else np.zeros((h, w), dtype=bool)
            base = ground if ground.any() else box_mask(sub, h, w)
            sub.mask = ground | (diff & dilate(base, self.config.search))
            sub.box = mask_box(sub.mask)
        sample.provenance = {**sample.provenance, "annotator": self.name}
        return sample


def box_mask(sub, h: int, w: int) -> np.ndarray:
    """The planner's (or grounder's) box of a sub-edit as a mask; empty when it has none."""
    m = np.zeros((h, w), dtype=bool)
    box = sub.params.get("box") or sub.params.get("plan_box") or sub.ground_box
    if box is not None:
        x0, y0, x1, y1 = box
        m[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return m

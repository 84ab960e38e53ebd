"""Ground stage: each sub-edit's target phrase → a box (open-vocabulary detector) and a mask
(SAM prompted with that box), on the source image.

Detector: OWLv2 (``Owlv2ForObjectDetection``), one text query per sub-edit. Among its boxes we
take the best-scoring one that overlaps the planner's rough box when there is one (the planner
looked at the image too), else the best overall. ``add`` sub-edits have nothing to find: their
region is the planner's box. SAM (``SamModel``) then turns each box into a mask.

Boxes: OWLv2 predicts (cx, cy, w, h) relative to the image padded to a square at the bottom and
right, so they scale by the long side.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mcie import weights
from mcie.records import EditSample, mask_box


@dataclasses.dataclass(frozen=True)
class GrounderConfig:
    """``mask_threshold``: SAM logit above which a pixel is inside; ``prefer_plan_box``: pick
    the detector's best box overlapping the planner's box."""

    mask_threshold: float = 0.0
    prefer_plan_box: bool = True


def load_grounder(detector: str, sam: str, device: str = "cpu", dtype: str = "float32"):
    """``(det_processor, det_model, sam_processor, sam_model)`` from hub names or local dirs."""
    import torch
    from transformers import AutoProcessor, Owlv2ForObjectDetection, SamModel

    dt = getattr(torch, dtype)
    det_p = AutoProcessor.from_pretrained(detector)
    det_m = weights.from_pretrained(Owlv2ForObjectDetection.from_pretrained, detector, "detector", dtype=dt)
    det_m = det_m.to(device).eval()
    sam_p = AutoProcessor.from_pretrained(sam)
    sam_m = weights.from_pretrained(SamModel.from_pretrained, sam, "sam", dtype=dt).to(device).eval()
    return det_p, det_m, sam_p, sam_m


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


class DetectorSamGrounder:
    """Sets ``ground_box``, ``ground_mask`` and ``scores["ground"]`` on every sub-edit."""

    name = "owlv2-sam-v1"

    def __init__(
        self, det_processor, det_model, sam_processor, sam_model, config: GrounderConfig | None = None
    ):
        self.det_p, self.det_m, self.sam_p, self.sam_m = det_processor, det_model, sam_processor, sam_model
        self.config = config or GrounderConfig()

    def detect(
        self, images: list[np.ndarray], queries: list[list[str]]
    ) -> list[list[tuple[list[int], float]]]:
        """Per image, per query: the candidate boxes (x0, y0, x1, y1 pixels) sorted by score."""
        import torch
        from PIL import Image

        # OWLv2 takes the same number of queries per image: pad with a copy of the first
        n = max(len(q) for q in queries)
        padded = [q + [q[0]] * (n - len(q)) for q in queries]
        inputs = self.det_p(
            text=padded, images=[Image.fromarray(im) for im in images], return_tensors="pt", padding=True
        ).to(self.det_m.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.det_m.dtype)
        with torch.inference_mode():
            out = self.det_m(**inputs)
        logits = out.logits.float().sigmoid().cpu().numpy()  # (B, patches, n)
        boxes = out.pred_boxes.float().cpu().numpy()  # (B, patches, 4) cx, cy, w, h in [0, 1]
        result = []
        for b, (im, q) in enumerate(zip(images, queries, strict=True)):
            h, w = im.shape[:2]
            side = max(h, w)
            cx, cy, bw, bh = (boxes[b, :, i] * side for i in range(4))
            xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            xyxy = np.clip(np.rint(xyxy), 0, [w, h, w, h]).astype(int)
            per_query = []
            for j in range(len(q)):
                order = np.argsort(-logits[b, :, j])
                per_query.append([(xyxy[i].tolist(), float(logits[b, i, j])) for i in order])
            result.append(per_query)
        return result

    def segment(self, images: list[np.ndarray], boxes: list[list[list[int]]]) -> list[np.ndarray]:
        """Per image, SAM masks (n_boxes, H, W) bool for its boxes (images with no boxes skipped
        by the caller)."""
        import torch
        from PIL import Image

        inputs = self.sam_p(
            images=[Image.fromarray(im) for im in images], input_boxes=boxes, return_tensors="pt"
        ).to(self.sam_m.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.sam_m.dtype)
        with torch.inference_mode():
            out = self.sam_m(**inputs, multimask_output=False)
        masks = self.sam_p.image_processor.post_process_masks(
            out.pred_masks.float().cpu(),
            inputs["original_sizes"].cpu(),
            inputs["reshaped_input_sizes"].cpu(),
            binarize=False,
        )
        return [(m[:, 0] > self.config.mask_threshold).numpy() for m in masks]  # (n_boxes, H, W)

    def ground(self, samples: list[EditSample]) -> list[EditSample]:
        """Ground every sub-edit of every sample (batched over samples)."""
        todo = [(s, [k for k, e in enumerate(s.sub_edits) if e.edit_type != "add"]) for s in samples]
        todo = [(s, ks) for s, ks in todo if ks]
        for s in samples:
            for e in s.sub_edits:
                if e.edit_type == "add":
                    e.ground_box, e.ground_mask = None, None
        if todo:
            dets = self.detect(
                [s.src for s, _ in todo], [[s.sub_edits[k].target_phrase for k in ks] for s, ks in todo]
            )
            chosen = []
            for (s, ks), det in zip(todo, dets, strict=True):
                picks = []
                for k, cands in zip(ks, det, strict=False):
                    hint = s.sub_edits[k].params.get("plan_box")
                    pick = cands[0]
                    if hint and self.config.prefer_plan_box:
                        pick = next((c for c in cands if _overlap(c[0], hint) > 0 and _area(c[0]) > 0), pick)
                    if _area(pick[0]) == 0 and hint:
                        pick = (list(hint), pick[1])  # a degenerate detection: fall back to the plan
                    picks.append(pick)
                chosen.append(picks)
            masks = self.segment([s.src for s, _ in todo], [[p[0] for p in picks] for picks in chosen])
            for (s, ks), picks, m in zip(todo, chosen, masks, strict=True):
                for j, (k, (box, score)) in enumerate(zip(ks, picks, strict=True)):
                    e = s.sub_edits[k]
                    e.ground_mask = m[j].astype(bool)
                    e.ground_box = mask_box(e.ground_mask) or tuple(box)
                    e.scores = {**e.scores, "ground": round(score, 4)}
        for s in samples:
            s.provenance = {**s.provenance, "grounder": self.name}
        return samples


def _area(b) -> int:
    return max(b[2] - b[0], 0) * max(b[3] - b[1], 0)

"""One build sample → one Label Studio task with its pre-annotation (a prediction).

Task data: ``key`` (the sample key, what export and import match on), ``src``/``tgt`` (local-
files URLs), ``instruction``, and per slot k < 5: ``sub{k}`` (the sub-instruction, "" when the
slot is unused) and ``score{k}`` (its judge score as text). The prediction carries what the
pipeline knows: the used slots, per sub-edit its mask as brush RLE (via
``label_studio_sdk.converter.brush``), its box, its judge verdict (executed → accept, else
reject) and score; the prediction's score is the sample's compliance and its model version
names the judge and annotator that produced it. The overall verdict is left to people.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mcie.annotation import config as cfg
from mcie.images import decode_mask


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """A boolean (H, W) mask as Label Studio brush RLE (RGBA, every channel 0/255)."""
    from label_studio_sdk.converter.brush import mask2rle

    return mask2rle(np.where(mask, np.uint8(255), np.uint8(0)))


def rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Brush RLE → boolean (H, W) mask (alpha channel > 127, as Label Studio draws it)."""
    from label_studio_sdk.converter.brush import decode_rle

    flat = decode_rle(rle)
    if flat.size != height * width * 4:
        raise ValueError(f"brush RLE holds {flat.size} values, expected {height}x{width}x4")
    return flat.reshape(height, width, 4)[:, :, 3] > 127


def model_version(meta: dict[str, Any]) -> str:
    """The prediction's model version: the judge and the annotator that made the sample."""
    prov = meta.get("provenance") or {}
    return f"{prov.get('judge', 'judge?')}+{prov.get('annotator', 'annotator?')}"


def _region(k: int, kind: str, w: int, h: int, value: dict[str, Any], score: float | None) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": f"{kind}{k}",
        "type": kind,
        "from_name": cfg.mask_control(k) if kind == "brushlabels" else cfg.box_control(k),
        "to_name": cfg.IMAGE_TGT,
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": value,
    }
    if score is not None:
        r["score"] = score
    return r


def brush_region(k: int, mask: np.ndarray, score: float | None = None, region_id: str | None = None) -> dict:
    """Slot ``k``'s brush region on the target, in Label Studio's result format (RLE of ``mask``,
    shape (H, W) bool): what the pre-annotation holds, and what a reviewer's repaint submits."""
    h, w = mask.shape
    value = {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [cfg.mask_label(k)]}
    r = _region(k, "brushlabels", w, h, value, score)
    if region_id is not None:
        r["id"] = region_id
    return r


def _choice(name: str, values: list[str]) -> dict[str, Any]:
    return {
        "id": name,
        "type": "choices",
        "from_name": name,
        "to_name": cfg.IMAGE_TGT,
        "value": {"choices": values},
    }


def prediction_for(meta: dict[str, Any], masks: list[bytes]) -> dict[str, Any]:
    """The pre-annotation of a sample from its JSON and mask PNGs."""
    w, h = int(meta["width"]), int(meta["height"])
    subs = meta["sub_edits"]
    result = [_choice(cfg.SLOTS_CONTROL, [str(k) for k in range(len(subs))])]
    for k, (sub, png) in enumerate(zip(subs, masks, strict=True)):
        score = sub.get("scores", {}).get("compliance")
        # the mask's size is the sample's: ls export validates every sample before this
        result.append(brush_region(k, decode_mask(png), score))
        if sub.get("box"):
            x0, y0, x1, y1 = sub["box"]
            box = {
                "x": 100.0 * x0 / w,
                "y": 100.0 * y0 / h,
                "width": 100.0 * (x1 - x0) / w,
                "height": 100.0 * (y1 - y0) / h,
                "rotation": 0,
                "rectanglelabels": [cfg.mask_label(k)],
            }
            result.append(_region(k, "rectanglelabels", w, h, box, score))
        if sub.get("executed") is not None:
            result.append(_choice(cfg.verdict_control(k), ["accept" if sub["executed"] else "reject"]))
    out = {"model_version": model_version(meta), "result": result}
    if meta.get("scores", {}).get("compliance") is not None:
        out["score"] = float(meta["scores"]["compliance"])
    return out


def task_for(meta: dict[str, Any], masks: list[bytes], src_url: str, tgt_url: str) -> dict[str, Any]:
    """The task (data + one prediction) of a sample."""
    subs = meta["sub_edits"]
    if not 1 <= len(subs) <= cfg.SLOTS:
        raise ValueError(f"sample {meta['key']} has {len(subs)} sub-edits; the config has {cfg.SLOTS} slots")
    data: dict[str, Any] = {
        "key": meta["key"],
        "src": src_url,
        "tgt": tgt_url,
        "instruction": meta["instruction"],
        "n_subs": len(subs),
        "width": int(meta["width"]),
        "height": int(meta["height"]),
    }
    for k in range(cfg.SLOTS):
        sub = subs[k] if k < len(subs) else None
        data[f"sub{k}"] = sub["instruction"] if sub else ""
        score = sub.get("scores", {}).get("compliance") if sub else None
        data[f"score{k}"] = "" if score is None else f"judge compliance {score:.2f}"
    return {"data": data, "predictions": [prediction_for(meta, masks)]}


def original_from_task(data: dict[str, Any]) -> dict[str, Any]:
    """What the import needs of the exported sample, read back from the task data."""
    return {
        "key": data["key"],
        "instruction": data["instruction"],
        "width": int(data["width"]),
        "height": int(data["height"]),
        "sub_edits": [{"instruction": data[f"sub{k}"]} for k in range(int(data["n_subs"]))],
    }

"""MagicBrush's model-based metrics for CIE-Bench, from local model directories only.

* CLIP-I — cosine similarity of the CLIP image embeddings of the output and the reference target;
* CLIP-T — cosine similarity of the output's CLIP image embedding and the text embedding of the
  complex instruction (our sets have no captions of the edited image, which MagicBrush uses;
  the instruction is the closest text we have — our choice);
* DINO — cosine similarity of the DINO(v2) pooled embeddings of the output and the reference.

Models load with ``from_pretrained`` from a directory (a hub name works for users with network;
never in tests or defaults). LPIPS is not offered: it needs torchvision, unusable here.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mcie import weights


class ClipScorer:
    """CLIP-I and CLIP-T with a CLIP model and processor from ``path``."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoProcessor, CLIPModel

        self.torch, self.device = torch, device
        self.model = weights.from_pretrained(CLIPModel.from_pretrained, path, "CLIP").to(device).eval()
        self.processor = AutoProcessor.from_pretrained(path)

    def _image(self, arrays: list[np.ndarray]):
        inp = self.processor(images=[Image.fromarray(a) for a in arrays], return_tensors="pt").to(self.device)
        with self.torch.no_grad():
            e = self.model.get_image_features(**inp)
        e = getattr(e, "pooler_output", e)
        return e / e.norm(dim=-1, keepdim=True)

    def score(self, output: np.ndarray, reference: np.ndarray, text: str) -> dict[str, float]:
        img = self._image([output, reference])
        tok = self.processor.tokenizer
        t = tok([text], return_tensors="pt", padding=True, truncation=True, max_length=tok.model_max_length)
        with self.torch.no_grad():
            te = self.model.get_text_features(**t.to(self.device))
        te = getattr(te, "pooler_output", te)
        te = te / te.norm(dim=-1, keepdim=True)
        return {"clip_i": float(img[0] @ img[1]), "clip_t": float(img[0] @ te[0])}


class DinoScorer:
    """DINO similarity with a DINO/DINOv2 model and image processor from ``path``."""

    def __init__(self, path: str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.torch, self.device = torch, device
        self.model = weights.from_pretrained(AutoModel.from_pretrained, path, "DINO").to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)

    def score(self, output: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        inp = self.processor(
            images=[Image.fromarray(output), Image.fromarray(reference)], return_tensors="pt"
        )
        with self.torch.no_grad():
            e = self.model(**inp.to(self.device)).pooler_output
        e = e / e.norm(dim=-1, keepdim=True)
        return {"dino": float(e[0] @ e[1])}

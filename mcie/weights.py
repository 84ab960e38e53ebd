"""Model weights load as safetensors only.

A model folder is untrusted input: pickled weights (``pytorch_model.bin``,
``diffusion_pytorch_model.bin``, ``.pt``, ``.ckpt``) can run code when unpickled, and both
transformers and diffusers fall back to them when a folder has no ``.safetensors`` file (only
torch's current ``weights_only`` default stands in the way). Every loader of a user-given model
(the models.yaml stages, the InstructPix2Pix bench editor, the CLIP and DINO scorers, MCIE-E1's
``--init-from``) goes through :func:`from_pretrained` here: it refuses a local folder whose
weights are pickled only, with an error naming the folder, and passes ``use_safetensors=True``
so that neither library ever unpickles (a hub name then downloads safetensors only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mcie import logs
from mcie.exitcodes import UsageError

#: suffixes of pickled weight files (torch.save / pickle)
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE = ".safetensors"


class UnsafeWeightsError(UsageError):
    """A model folder holds pickled weights only (exit 1: the folder is the user's to fix)."""


def pickled_only_folders(path: str) -> list[str]:
    """The folders under ``path`` (itself included) that hold pickled weight files and no
    ``.safetensors`` file; empty for a hub name or a folder that is all safetensors."""
    if not os.path.isdir(path):
        return []
    bad = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .cache, .git: not weights
        if any(f.endswith(PICKLED) for f in files) and not any(f.endswith(SAFE) for f in files):
            bad.append(root)
    return sorted(bad)


def require_safetensors(path: str, what: str) -> None:
    """Raise :class:`UnsafeWeightsError` naming the folder when ``path`` (a local model folder)
    has weights only in pickled files. ``what`` names the model's role (``judge``, ``CLIP``)."""
    bad = pickled_only_folders(path)
    if bad:
        names = ", ".join(sorted({f for b in bad for f in os.listdir(b) if f.endswith(PICKLED)}))
        raise UnsafeWeightsError(
            f"{what}: {bad[0]!r} holds pickled weights only ({names}); mcie loads safetensors only. "
            "Convert it (load it yourself, then save_pretrained(..., safe_serialization=True))"
        )


def from_pretrained(loader: Callable[..., Any], path: str, what: str, **kwargs: Any) -> Any:
    """``loader(path, use_safetensors=True, **kwargs)`` (a transformers or diffusers
    ``from_pretrained``) after :func:`require_safetensors`; a load that still finds no
    safetensors file raises :class:`UnsafeWeightsError` naming ``path``."""
    require_safetensors(path, what)
    try:
        with logs.model_calls():  # the libraries' warnings and progress bars: only with -v
            return loader(path, use_safetensors=True, **kwargs)
    except OSError as exc:
        if SAFE in str(exc) or "safetensors" in str(exc).lower():
            raise UnsafeWeightsError(f"{what}: no safetensors weights in {path!r} ({exc})") from exc
        raise

"""The model extra's presence check, shared by the ``train`` and ``edit`` commands."""

from __future__ import annotations

from mcie import extras


def require_torch(what: str = "MCIE-E1") -> None:
    """The model extra (torch, safetensors, diffusers, transformers, accelerate), or a usage
    error naming it and what is missing (exit 1, not a traceback from the first import)."""
    extras.require("model", what)

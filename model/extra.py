"""The model extra's presence check, shared by the ``train`` and ``edit`` commands."""

from __future__ import annotations

from mcie.exitcodes import UsageError


def require_torch() -> None:
    """The model extra, or a usage error naming it (exit 1, not a traceback at import)."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # the model extra is optional
        raise UsageError("MCIE-E1 needs the model extra: pip install 'mcie[model]'") from exc

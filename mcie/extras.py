"""The optional extras of pyproject.toml, and the check that names the missing one.

A command that needs an extra calls :func:`require` before it imports or writes anything, so a
user without it gets exit 1 and the line to run (``pip install 'mcie[model]'``), not exit 2 and
``ModuleNotFoundError`` from deep inside a library. The check uses
:func:`importlib.util.find_spec`: it finds a module without importing it, so checking for torch
costs nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from mcie.exitcodes import UsageError

#: extra -> the top-level modules its packages install (pyproject.toml's optional-dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    # what MCIE-E1 and the real-model stages import; tensorboard and scikit-image only where
    # a command uses them (train's default --report-to, the bundled sample photographs)
    "model": ("torch", "safetensors", "diffusers", "transformers", "accelerate"),
    "annotation": ("label_studio_sdk",),
    "dask": ("dask", "distributed"),
}
#: storage URL scheme -> the module Beam's filesystem for it needs (the ``cloud`` extra)
CLOUD_CLIENTS: dict[str, str] = {"gs": "google.cloud.storage", "s3": "boto3"}


def missing(modules: Iterable[str]) -> list[str]:
    """The names among ``modules`` that cannot be imported here (found without importing)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a missing parent package (google.cloud), a bad name
            found = False
        if not found:
            gone.append(name)
    return gone


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (mcie is installed from a wheel or a clone, not from
    a package index: the clone's spelling too)."""
    return f"pip install 'mcie[{extra}]' (in a clone: pip install -e '.[{extra}]')"


def require(extra: str, what: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`~mcie.exitcodes.UsageError` (exit 1) naming ``extra`` and the missing
    modules when ``modules`` (default: every module of ``extra``) are not all importable.
    ``what`` names what needs them (``mcie train``, ``--runner dask``)."""
    if extra not in EXTRAS and extra != "cloud":
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted([*EXTRAS, 'cloud']))}")
    gone = missing(EXTRAS.get(extra, ()) if modules is None else modules)
    if gone:
        raise UsageError(
            f"{what} needs the {extra} extra (missing: {', '.join(gone)}): {install_hint(extra)}"
        )

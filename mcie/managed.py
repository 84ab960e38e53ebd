"""A build's managed files: the paths no command may write a report, a preview or a model over.

A build folder (recognised by its ``index.parquet`` or ``run.json``) holds the dataset: the
index (after ``mcie ls import`` the only copy of the reviewers' verdicts), the truth, the
shards and their descriptors, the per-unit stats and parts, the reviewers' masks, the card and
the run's options. ``mcie report --out``, ``mcie preview --out`` and ``mcie train --out`` take
any path, so a careless one (``--out B/index.parquet``) would replace the data with a page.
:func:`refuse_managed_output` refuses such a path (exit 1) before anything is written; other
paths inside a build folder (``B/report.html``, ``B/model/``) stay allowed.
"""

from __future__ import annotations

import os

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.layout import (
    CARD_FILE,
    INDEX_FILE,
    PARTS_DIR,
    REVIEW_DIR,
    RUN_FILE,
    SHARD_DIRS,
    STATS_DIR,
    TRUTH_FILE,
    WIDS_FILES,
)

#: files at a build folder's top level that hold the dataset or say how it was made
MANAGED_FILES = frozenset({INDEX_FILE, TRUTH_FILE, RUN_FILE, CARD_FILE, *WIDS_FILES.values()})
#: folders of a build folder whose every file is the build's
MANAGED_DIRS = frozenset({*SHARD_DIRS, STATS_DIR, PARTS_DIR, REVIEW_DIR})
#: what marks a folder as a build folder
_MARKERS = (INDEX_FILE, RUN_FILE)


def _is_build(folder: str) -> bool:
    return any(storage.exists(storage.join(folder, m)) for m in _MARKERS)


def _split(path: str) -> tuple[str, list[str]]:
    """(root, components) of a normalised path; symlinks resolved for local paths, so a link
    into a build folder is seen for what it is."""
    if storage.is_remote(path):
        scheme, _, rest = path.partition("://")
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{scheme}://{parts[0]}" if parts else f"{scheme}://", parts[1:]
    real = os.path.realpath(path)
    return os.sep, [p for p in real.split(os.sep) if p]


def managed_by(path: str) -> str | None:
    """The build folder whose managed files ``path`` would overwrite (the folder itself
    included), or None."""
    root, parts = _split(path)
    for n in range(len(parts), -1, -1):
        folder = root.rstrip("/") + "/" + "/".join(parts[:n]) if n else root
        rel = parts[n:]
        if not _is_build(folder):
            continue
        if not rel or (len(rel) == 1 and rel[0] in MANAGED_FILES) or rel[0] in MANAGED_DIRS:
            return folder
    return None


def refuse_managed_output(path: str, option: str = "--out") -> None:
    """Raise :class:`UsageError` (exit 1) when writing ``path`` would replace a build's
    managed files (see the module docstring); do nothing otherwise."""
    build = managed_by(path)
    if build is not None:
        raise UsageError(
            f"{option} {path!r} would overwrite the managed files of the build {build!r} "
            "(its index, truth, shards, stats, reviews, card or run.json); pick a path outside them"
        )

"""Done-markers and ``--resume``: which units of an output are finished, checked, not trusted.

A unit's stats file (``stats/mcie-NNNNNN.json``, written last by the sink) lists the unit's
files with their sizes and SHA-256. A resumed run keeps a unit only when every listed file is
there with that size and those bytes; a unit with a missing, truncated or altered file loses
its marker and is built again (same options, same bytes). Markers without a file list (record
tables of the stage-at-a-time commands) are trusted as before.
"""

from __future__ import annotations

import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mcie import storage
from mcie.layout import STATS_DIR, UNIT_FOLDERS, BuildLayout, unit_of
from mcie.reasons import Status

log = logging.getLogger(__name__)

#: files checked at once: object stores answer slowly but in parallel; locally it is disk-bound
_THREADS = 8


def unit_stats(unit_id: int, rows: list[Any]) -> dict[str, Any]:
    """A done-marker's counts: by status and by reason for one unit, from its index rows (or
    records). The sink adds the unit's file list."""

    def get(r, k):
        v = r[k] if isinstance(r, dict) else getattr(r, k)
        return v.value if isinstance(v, Status) else v

    by_status = collections.Counter(get(r, "status") for r in rows)
    by_reason = collections.Counter(
        f"{get(r, 'status')}:{get(r, 'reason')}" for r in rows if get(r, "reason")
    )
    return {
        "unit": unit_id,
        "candidates": len(rows),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
    }


def unit_problems(out: str, stats: dict[str, Any], sizes: dict[str, int]) -> list[str]:
    """What is wrong with the files a done-marker lists (empty: the unit is whole).
    ``sizes`` maps stored paths to sizes (from listings), so a missing or truncated file is
    found without reading it; the rest are read and hashed."""
    problems = []
    for rel, want in sorted(stats.get("files", {}).items()):
        path = BuildLayout(out).path(rel)
        if path not in sizes:
            problems.append(f"{rel} is missing")
        elif sizes[path] != want["size"]:
            problems.append(f"{rel} has {sizes[path]} bytes, its marker says {want['size']}")
        elif storage.digest(path).sha256 != want["sha256"]:
            problems.append(f"{rel} does not match its checksum")
    return problems


def _sizes(out: str, markers: list[dict[str, Any]]) -> dict[str, int]:
    """Sizes of the files under every folder the markers name: one listing per folder."""
    folders = sorted({rel.rsplit("/", 1)[0] for m in markers for rel in m.get("files", {})})
    sizes: dict[str, int] = {}
    for folder in folders:
        sizes.update(storage.glob_sizes(storage.join(storage.escape(out), folder, "*")))
    return sizes


def remove_leftovers(out: str) -> int:
    """Delete the temporary files (``*.tmp-*``) a killed worker may leave between writing a
    file and renaming it; returns how many. Nothing lists them, so this only saves space."""
    leftovers = [p for d in UNIT_FOLDERS for p in storage.list_folder(BuildLayout(out).folder(d), "*.tmp-*")]
    storage.delete(leftovers)
    return len(leftovers)


def finished_units(out: str, verify: bool = True) -> set[int]:
    """Units of ``out`` whose done-marker exists and (``verify``) whose files check out.
    A damaged unit's marker is deleted, with a warning naming the problem, so it is redone;
    temporary files a killed run left are deleted too."""
    if n := remove_leftovers(out):
        log.info("resume: deleted %d temporary file(s) of the interrupted run", n)
    markers: dict[int, dict[str, Any]] = {}
    for path in storage.list_folder(BuildLayout(out).folder(STATS_DIR), "mcie-*.json"):
        uid = unit_of(storage.basename(path))
        if uid is None:
            continue
        try:
            markers[uid] = storage.read_json(path)
        except ValueError:  # unreadable marker: the unit is redone
            log.warning("resume: unit %06d: unreadable done-marker, building it again", uid)
    if not verify or not markers:
        return set(markers)
    sizes = _sizes(out, list(markers.values()))
    with ThreadPoolExecutor(_THREADS) as pool:
        checked = pool.map(lambda s: unit_problems(out, s, sizes), markers.values())
        found = dict(zip(markers, checked, strict=True))
    damaged = sorted(uid for uid, problems in found.items() if problems)
    for uid in damaged:
        log.warning("resume: unit %06d is damaged (%s); building it again", uid, "; ".join(found[uid]))
    storage.delete(BuildLayout(out).stats(uid) for uid in damaged)
    return set(markers) - set(damaged)

"""Units of work: shard-sized ranges of a backend's items (sample indices, input files).

A unit is small (three integers), so it is what Beam shuffles between workers; image bytes
never cross a shuffle. Everything about a sample is decided by (seed, index), so the output
does not depend on which worker ran which unit.
"""

from __future__ import annotations

import dataclasses
import json

from mcie import storage
from mcie.exitcodes import UsageError
from mcie.layout import RUN_FILE, BuildLayout, unit_stem


@dataclasses.dataclass(frozen=True, order=True)
class Unit:
    """Sample indices ``[start, stop)`` that become shard number ``id``."""

    id: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        """Zero-padded shard stem, e.g. ``mcie-000003``."""
        return unit_stem(self.id)


def plan_units(samples: int, shard_size: int) -> list[Unit]:
    """Split ``samples`` indices into units of ``shard_size`` (the last may be shorter)."""
    return [Unit(i, s, min(s + shard_size, samples)) for i, s in enumerate(range(0, samples, shard_size))]


def load_run_manifest(out: str) -> dict | None:
    """``out``'s run manifest (``run.json``), or None when there is none."""
    path = BuildLayout(out).run_manifest
    if not storage.exists(path):
        return None
    return storage.read_json(path)


def write_run_manifest(out: str, manifest: dict) -> None:
    storage.atomic_write(BuildLayout(out).run_manifest, json.dumps(manifest, indent=2, sort_keys=True))


def check_resume(out: str, manifest: dict) -> None:
    """A resumed run must have the same output-defining options as the run it continues."""
    old = load_run_manifest(out)
    if old is None:
        raise UsageError(f"--resume: {out!r} has no {RUN_FILE}; it is not an mcie output to resume")
    if old.get("command") != manifest.get("command"):
        raise UsageError(
            f"--resume: {out!r} was written by `mcie {old.get('command')}`, "
            f"not `mcie {manifest.get('command')}`"
        )
    differ = _differences(old.get("options") or {}, manifest.get("options") or {})
    if differ:
        raise UsageError(
            f"--resume: options differ from the run that wrote {out!r} (see its {RUN_FILE}): "
            + "; ".join(differ[:8])
            + (f"; and {len(differ) - 8} more" if len(differ) > 8 else "")
        )


def _differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    """``name old -> new`` for each option that differs (nested groups as ``group.name``)."""
    out = []
    for name in sorted(set(before) | set(now)):
        a, b = before.get(name, _ABSENT), now.get(name, _ABSENT)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name} {_shown(a)} -> {_shown(b)}")
    return out


_ABSENT = object()


def _shown(value) -> str:
    """An option's value as a resume error shows it (short; ``(unset)`` when absent)."""
    if value is _ABSENT:
        return "(unset)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."

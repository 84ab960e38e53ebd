"""The layout of a build folder (and of a record table): every name inside it, in one place.

```
OUT/
  shards/mcie-000003.tar      accepted samples of unit 3 (the dataset)
  rejected/mcie-000003.tar    rejected samples (kept: a user may re-filter or review them)
  pending/mcie-000003.tar     samples waiting for a human verdict
  parts/index-000003.parquet  unit 3's index rows (merged into index.parquet by the final step)
  parts/truth-000003.parquet  unit 3's generator truth (merged into truth.parquet)
  part-000003.parquet         a record table's full records of unit 3 (stage commands)
  stats/mcie-000003.json      unit 3's counts and file digests: its done-marker
  index.parquet  truth.parquet  shards.json  rejected.json  README.md
  run.json                    the run manifest: command, options, meta (for --resume and later stages)
  review/                     masks repainted by reviewers (``mcie ls import``)
  logs/                       a failed run's log
```

A unit's files share its stem ``mcie-NNNNNN`` (zero-padded: names sort as numbers). Names
relative to ``OUT`` (``shards/mcie-000003.tar``) are what the index's ``shard`` column and a
done-marker's file list hold; :class:`BuildLayout` joins them to ``OUT`` (a local folder or a
``gs://`` / ``s3://`` URL).
"""

from __future__ import annotations

import dataclasses
import re

from mcie import storage

#: accepted samples' shards (the dataset)
SHARDS_DIR = "shards"
#: rejected samples' shards (kept: a user may re-filter or review them)
REJECTED_DIR = "rejected"
#: samples waiting for a human verdict
PENDING_DIR = "pending"
#: per-unit stats, each the unit's done-marker
STATS_DIR = "stats"
#: per-unit index and truth parts, merged by the final step
PARTS_DIR = "parts"
#: masks repainted by reviewers (``mcie ls import``)
REVIEW_DIR = "review"
#: a failed run's log (``mcie.logs``)
LOGS_DIR = "logs"
#: the index (one row per candidate) and the generator's truth
INDEX_FILE = "index.parquet"
TRUTH_FILE = "truth.parquet"
#: the dataset card
CARD_FILE = "README.md"
#: the run manifest: command, output-defining options, meta
RUN_FILE = "run.json"
#: folders holding shards, in the order readers walk them
SHARD_DIRS = (SHARDS_DIR, REJECTED_DIR, PENDING_DIR)
#: the wids descriptor of each shard folder that has one
WIDS_FILES = {SHARDS_DIR: "shards.json", REJECTED_DIR: "rejected.json"}
#: samples per shard (and per unit of work) unless a command is told otherwise
DEFAULT_SHARD_SIZE = 500
#: the folders a unit writes into
UNIT_FOLDERS = (STATS_DIR, *SHARD_DIRS, PARTS_DIR)

_STEM = "mcie-{:06d}"
_NUMBERED = re.compile(r"(?:mcie|part|index|truth)-(\d{6})\.(?:json|parquet|tar)")


def unit_stem(unit: int) -> str:
    """The stem every file of unit ``unit`` shares, e.g. ``mcie-000003``."""
    return _STEM.format(unit)


def unit_of(name: str) -> int | None:
    """The unit number of a unit file's base name (``mcie-000003.json``,
    ``part-000003.parquet``), else None."""
    m = _NUMBERED.fullmatch(name)
    return int(m.group(1)) if m else None


def shard_name(unit: int, folder: str = SHARDS_DIR) -> str:
    """``shards/mcie-000003.tar``: a unit's shard in ``folder``, relative to the build."""
    return f"{folder}/{unit_stem(unit)}.tar"


def index_part_name(unit: int) -> str:
    """``parts/index-000003.parquet``, relative to the build."""
    return f"{PARTS_DIR}/index-{unit:06d}.parquet"


def truth_part_name(unit: int) -> str:
    """``parts/truth-000003.parquet``, relative to the build."""
    return f"{PARTS_DIR}/truth-{unit:06d}.parquet"


def record_part_name(unit: int) -> str:
    """``part-000003.parquet``: a record table's records of one unit."""
    return f"part-{unit:06d}.parquet"


def stats_name(unit: int) -> str:
    """``stats/mcie-000003.json``: a unit's done-marker, relative to the build."""
    return f"{STATS_DIR}/{unit_stem(unit)}.json"


@dataclasses.dataclass(frozen=True)
class BuildLayout:
    """Every path of the build folder (or record table) ``out``; ``out`` may be a local folder
    or a storage URL. Glob patterns have ``out`` escaped, so a folder name with glob
    characters cannot widen a match."""

    out: str

    def path(self, name: str) -> str:
        """``name`` (relative, ``/``-separated) inside the build."""
        return storage.join(self.out, name)

    def shard(self, unit: int, folder: str = SHARDS_DIR) -> str:
        return self.path(shard_name(unit, folder))

    def index_part(self, unit: int) -> str:
        return self.path(index_part_name(unit))

    def truth_part(self, unit: int) -> str:
        return self.path(truth_part_name(unit))

    def record_part(self, unit: int) -> str:
        return self.path(record_part_name(unit))

    def stats(self, unit: int) -> str:
        """A unit's stats file, its done-marker."""
        return self.path(stats_name(unit))

    def folder(self, name: str) -> str:
        """One of the build's folders (``SHARDS_DIR``, ``STATS_DIR``...)."""
        return self.path(name)

    @property
    def index(self) -> str:
        return self.path(INDEX_FILE)

    @property
    def truth(self) -> str:
        return self.path(TRUTH_FILE)

    @property
    def card(self) -> str:
        """The dataset card, ``README.md``."""
        return self.path(CARD_FILE)

    @property
    def run_manifest(self) -> str:
        """``run.json``."""
        return self.path(RUN_FILE)

    @property
    def logs(self) -> str:
        return self.path(LOGS_DIR)

    @property
    def review(self) -> str:
        return self.path(REVIEW_DIR)

    def wids(self, folder: str) -> str:
        """The wids descriptor of a shard folder (``shards.json``, ``rejected.json``)."""
        return self.path(WIDS_FILES[folder])

    def _pattern(self, *parts: str) -> str:
        return storage.join(storage.escape(self.out), *parts)

    def shards_pattern(self, folder: str = SHARDS_DIR) -> str:
        return self._pattern(folder, "*.tar")

    def index_parts_pattern(self) -> str:
        return self._pattern(PARTS_DIR, "index-*.parquet")

    def truth_parts_pattern(self) -> str:
        return self._pattern(PARTS_DIR, "truth-*.parquet")

    def record_parts_pattern(self) -> str:
        return self._pattern("part-*.parquet")

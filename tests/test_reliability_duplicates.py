"""Identical input images are one candidate (issue 14): the first in input order keeps the key,
every later copy is a ``duplicate`` row with a key of its own, whatever ``--shard-size`` and
``--workers`` put them in the same unit or not. Real-model build with the tiny models."""

from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.transforms.sources.images import sample_photo_paths

FLAGS = ["--image-size", "64", "--no-progress", "--max-failed-fraction", "1"]
#: the columns that must not depend on how inputs were cut into units
COLUMNS = ["key", "status", "reason", "error", "source_id", "source_hash", "instruction", "compliance"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> str:
    """a.png and c.png are the same file's bytes (astronaut); b.png and d.png other photos."""
    d = str(tmp_path_factory.mktemp("dups") / "in")
    os.makedirs(d)
    by_name = {os.path.basename(p): p for p in sample_photo_paths()}
    shutil.copy(by_name["astronaut.png"], os.path.join(d, "a.png"))
    shutil.copy(by_name["camera.png"], os.path.join(d, "b.png"))
    shutil.copy(by_name["astronaut.png"], os.path.join(d, "c.png"))
    shutil.copy(by_name["chelsea.png"], os.path.join(d, "d.png"))
    return d


@pytest.fixture(scope="module")
def builds(tiny_models, photos, tmp_path_factory) -> dict[str, str]:
    """The same inputs cut three ways: copies in different units (shard size 1, two workers;
    shard size 2) and in one unit (shard size 4)."""
    root = tmp_path_factory.mktemp("dup-builds")
    outs = {}
    for name, extra in {
        "size1-w2": ["--shard-size", "1", "--workers", "2"],
        "size2": ["--shard-size", "2"],
        "size4": ["--shard-size", "4"],
    }.items():
        out = str(root / name)
        args = ["build", "--models", tiny_models, "--images", photos, "--out", out, *FLAGS, *extra]
        assert main(args) == 0
        outs[name] = out
    return outs


def _index(out: str) -> list[dict]:
    return pq.read_table(os.path.join(out, "index.parquet"), columns=COLUMNS).to_pylist()


@pytest.mark.parametrize("name", ["size1-w2", "size2", "size4"])
def test_one_copy_keeps_the_key_the_other_is_a_duplicate(builds, photos, name):
    from mcie.audit import audit
    from mcie.keys import is_valid_key
    from mcie.shards import read_tar

    out = builds[name]
    rows = _index(out)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 4  # every input has its row, no key twice
    assert all(is_valid_key(k) for k in keys)
    by_file = {os.path.basename(r["source_id"]): r for r in rows}
    first, copy = by_file["a.png"], by_file["c.png"]
    assert first["reason"] != "duplicate" and copy["reason"] == "duplicate"
    assert first["key"] in copy["error"] and first["source_hash"] == copy["source_hash"]
    # the tiny models (seed 0) accept or reject the astronaut, so the copy's sample has images:
    # it moves out of its shard into rejected/ under its new key
    assert first["status"] in ("accepted", "rejected") and copy["status"] == "rejected"
    assert [r["source_id"] for r in rows if r["reason"] == "duplicate"] == [copy["source_id"]]
    report = audit(out)
    assert report["ok"], report["problems"]
    held = {k for d in ("shards", "rejected") for p in sorted(os.listdir(os.path.join(out, d)))
            for k, _ in read_tar(os.path.join(out, d, p))}  # fmt: skip
    assert copy["key"] in held and first["key"] in held  # both kept, under different keys


def test_the_same_rows_whatever_the_units_and_workers(builds):
    a, b, c = (_index(builds[n]) for n in ("size1-w2", "size2", "size4"))
    assert a == b == c


def test_resume_after_the_rewrite_verifies_every_unit(builds, tiny_models, photos, tmp_path):
    """The rewritten units' done-markers list the new files: a resume redoes nothing and
    changes no byte."""
    out = str(tmp_path / "out")
    shutil.copytree(builds["size1-w2"], out)

    def files():
        res = {}
        for root, _, names in os.walk(out):
            for n in names:
                if n != ".mcie.lock":
                    with open(os.path.join(root, n), "rb") as fh:
                        res[os.path.relpath(os.path.join(root, n), out)] = fh.read()
        return res

    before = files()
    args = ["build", "--models", tiny_models, "--images", photos, "--out", out, *FLAGS]
    assert main([*args, "--shard-size", "1", "--workers", "2", "--resume"]) == 0
    assert files() == before

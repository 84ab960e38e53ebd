"""Every input is accounted for, once (issue 14), in a real-model build with the tiny models:

* a folder or glob lists dangling symlinks and symlink loops, which get a ``failed`` index row
  saying which; a folder symlinked back up the tree is walked once; a file name that is not
  valid UTF-8 is built like any other (shown with ``\\xNN`` escapes in the index);
* identical images are one candidate: the first in input order keeps the key, every later copy
  (another file, a symlink) is a ``duplicate`` row with a key of its own, whether
  ``--shard-size`` puts the copies in one unit or in different ones, with one worker or two.
"""

from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.transforms.sources.images import ImageLoader, display_name, list_inputs, sample_photo_paths

#: a name that is not UTF-8 (Latin-1 "café.png"), as os.listdir returns it
CAFE = os.fsdecode(b"caf\xe9.png")
FLAGS = ["--image-size", "64", "--no-progress", "--max-failed-fraction", "1"]
#: the index columns that must not depend on how the inputs were cut into units
COLUMNS = ["key", "status", "reason", "error", "source_id", "source_hash", "instruction", "compliance"]


def make_inputs(d: str) -> str:
    """b.png and d.png: the same bytes (astronaut); sub/z.png: a symlink to b.png; café.png
    (a Latin-1 name): another photo; a dangling symlink, a self-loop, a folder loop."""
    os.makedirs(os.path.join(d, "sub"))
    by_name = {os.path.basename(p): p for p in sample_photo_paths()}
    shutil.copy(by_name["astronaut.png"], os.path.join(d, "b.png"))
    shutil.copy(by_name["astronaut.png"], os.path.join(d, "d.png"))
    shutil.copy(by_name["camera.png"], os.path.join(os.fsencode(d), b"caf\xe9.png"))
    os.symlink("nowhere.png", os.path.join(d, "dangling.png"))
    os.symlink("loop.png", os.path.join(d, "loop.png"))
    os.symlink("..", os.path.join(d, "sub", "up"))  # sub/up/sub/up/... is the same folder
    os.symlink(os.path.join("..", "b.png"), os.path.join(d, "sub", "z.png"))
    return d


ENTRIES = ["b.png", CAFE, "d.png", "dangling.png", "loop.png", os.path.join("sub", "z.png")]


@pytest.mark.parametrize("pattern", ["", "*.png", "**/*.png", "**"])
def test_folder_and_glob_list_every_entry_once(tmp_path, pattern):
    d = make_inputs(str(tmp_path / "in"))
    spec = os.path.join(d, pattern) if pattern else d
    got = sorted(os.path.relpath(p, d) for p in list_inputs(spec))
    want = [e for e in ENTRIES if pattern != "*.png" or os.sep not in e]
    assert got == sorted(want)


def test_links_that_lead_nowhere_fail_with_a_reason(tmp_path):
    d = make_inputs(str(tmp_path / "in"))
    loader = ImageLoader()
    dangling = loader.load(os.path.join(d, "dangling.png"))
    assert (dangling.ok, dangling.reason.value) == (False, "source_unreadable")
    assert "dangling symlink (-> nowhere.png" in dangling.error
    loop = loader.load(os.path.join(d, "loop.png"))
    assert (loop.ok, loop.reason.value) == (False, "source_unreadable")
    assert "symlink loop" in loop.error
    cafe = loader.load(os.path.join(d, CAFE))
    assert cafe.ok and cafe.pixels.shape[2] == 3
    assert display_name(os.path.join(d, CAFE)).endswith("caf\\xe9.png")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> str:
    return make_inputs(str(tmp_path_factory.mktemp("inputs") / "in"))


@pytest.fixture(scope="module")
def builds(tiny_models, inputs, tmp_path_factory) -> dict[str, str]:
    """The same inputs cut two ways: every input its own unit (two workers), and one unit."""
    root = tmp_path_factory.mktemp("input-builds")
    outs = {}
    for name, extra in {
        "size1-w2": ["--shard-size", "1", "--workers", "2"],
        "size6": ["--shard-size", "6"],
    }.items():
        out = str(root / name)
        assert main(["build", "--models", tiny_models, "--images", inputs, "--out", out, *FLAGS, *extra]) == 0
        outs[name] = out
    return outs


def _index(out: str) -> list[dict]:
    return pq.read_table(os.path.join(out, "index.parquet"), columns=COLUMNS).to_pylist()


@pytest.mark.parametrize("name", ["size1-w2", "size6"])
def test_every_input_has_one_row_and_copies_are_duplicates(builds, inputs, name):
    from mcie.audit import audit
    from mcie.keys import is_valid_key
    from mcie.shards import read_tar

    out = builds[name]
    rows = _index(out)
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 6 and all(is_valid_key(k) for k in keys)
    shown = {display_name(os.path.join(inputs, e)): e for e in ENTRIES}
    by = {shown[r["source_id"]]: r for r in rows}  # every entry has its row
    for entry, words in (("dangling.png", "dangling symlink"), ("loop.png", "symlink loop")):
        r = by[entry]
        assert (r["status"], r["reason"]) == ("failed", "source_unreadable") and words in r["error"]
    assert by[CAFE]["source_id"].endswith("caf\\xe9.png") and not by[CAFE]["reason"].startswith("source_")
    first = by["b.png"]
    # the tiny models (seed 0) accept or reject the astronaut: the copies' samples have images
    assert first["status"] in ("accepted", "rejected") and first["reason"] != "duplicate"
    for copy in (by["d.png"], by[os.path.join("sub", "z.png")]):
        assert (copy["status"], copy["reason"]) == ("rejected", "duplicate")
        assert first["key"] in copy["error"] and copy["source_hash"] == first["source_hash"]
    assert sum(r["reason"] == "duplicate" for r in rows) == 2
    report = audit(out)
    assert report["ok"], report["problems"]
    held = {k for d in ("shards", "rejected") for p in sorted(os.listdir(os.path.join(out, d)))
            for k, _ in read_tar(os.path.join(out, d, p))}  # fmt: skip
    assert {first["key"], by["d.png"]["key"], by[os.path.join("sub", "z.png")]["key"]} <= held


def test_the_same_rows_whatever_the_units_and_workers(builds):
    assert _index(builds["size1-w2"]) == _index(builds["size6"])


def test_resume_after_the_duplicate_rewrite_changes_nothing(builds, tiny_models, inputs, tmp_path):
    """Units rewritten by the cross-unit duplicate pass list their new files in their
    done-markers: a resume verifies them, redoes nothing and changes no byte."""
    out = str(tmp_path / "out")
    shutil.copytree(builds["size1-w2"], out)

    def files() -> dict[str, bytes]:
        res = {}
        for root, _, names in os.walk(out):
            for n in names:
                if n != ".mcie.lock":
                    with open(os.path.join(root, n), "rb") as fh:
                        res[os.path.relpath(os.path.join(root, n), out)] = fh.read()
        return res

    before = files()
    args = ["build", "--models", tiny_models, "--images", inputs, "--out", out, *FLAGS]
    assert main([*args, "--shard-size", "1", "--workers", "2", "--resume"]) == 0
    assert files() == before

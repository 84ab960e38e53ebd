"""Every input is accounted for (issue 14): in a folder or glob input, dangling symlinks and
symlink loops get a ``failed`` index row saying which, a folder symlinked back up the tree is
walked once, and a file name that is not valid UTF-8 is built like any other (shown with
``\\xNN`` escapes in the index) instead of aborting the build."""

from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest

from mcie.transforms.sources.images import ImageLoader, display_name, list_inputs, sample_photo_paths

#: a name that is not UTF-8 (Latin-1 "café.png"), as os.listdir returns it
CAFE = os.fsdecode(b"caf\xe9.png")


@pytest.fixture
def awkward_links(tmp_path) -> str:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    by_name = {os.path.basename(p): p for p in sample_photo_paths()}
    shutil.copy(by_name["astronaut.png"], d / "good.png")
    shutil.copy(by_name["camera.png"], os.path.join(os.fsencode(d), b"caf\xe9.png"))
    os.symlink("nowhere.png", d / "dangling.png")
    os.symlink("loop.png", d / "loop.png")
    os.symlink("..", d / "sub" / "up")  # a folder loop: sub/up/sub/up/... is the same folder
    os.symlink(os.path.join("..", "good.png"), d / "sub" / "again.png")  # a good symlink
    return str(d)


def _names(paths: list[str], root: str) -> list[str]:
    return sorted(os.path.relpath(p, root) for p in paths)


@pytest.mark.parametrize("pattern", ["", "*.png", "**/*.png", "**"])
def test_folder_and_glob_list_every_entry_once(awkward_links, pattern):
    spec = os.path.join(awkward_links, pattern) if pattern else awkward_links
    got = _names(list_inputs(spec), awkward_links)
    want = [CAFE, "dangling.png", "good.png", "loop.png", os.path.join("sub", "again.png")]
    if pattern == "*.png":
        want.remove(os.path.join("sub", "again.png"))
    assert got == sorted(want)


def test_links_that_lead_nowhere_fail_with_a_reason(awkward_links):
    loader = ImageLoader()
    dangling = loader.load(os.path.join(awkward_links, "dangling.png"))
    assert (dangling.ok, dangling.reason.value) == (False, "source_unreadable")
    assert "dangling symlink (-> nowhere.png" in dangling.error
    loop = loader.load(os.path.join(awkward_links, "loop.png"))
    assert (loop.ok, loop.reason.value) == (False, "source_unreadable")
    assert "symlink loop" in loop.error
    cafe = loader.load(os.path.join(awkward_links, CAFE))
    assert cafe.ok and cafe.pixels.shape[2] == 3
    assert display_name(os.path.join(awkward_links, CAFE)).endswith("caf\\xe9.png")


def test_a_build_over_them_accounts_for_every_input(awkward_links, tiny_models, tmp_path):
    from mcie.cli import main

    out = str(tmp_path / "out")
    flags = ["--image-size", "64", "--shard-size", "2", "--no-progress", "--max-failed-fraction", "1"]
    assert main(["build", "--models", tiny_models, "--images", awkward_links, "--out", out, *flags]) == 0
    rows = {r["source_id"]: r for r in pq.read_table(os.path.join(out, "index.parquet")).to_pylist()}
    root = awkward_links + os.sep
    assert sorted(rows) == sorted(
        root + n for n in ["caf\\xe9.png", "dangling.png", "good.png", "loop.png", "sub/again.png"]
    )
    for name, words in (("dangling.png", "dangling symlink"), ("loop.png", "symlink loop")):
        r = rows[root + name]
        assert (r["status"], r["reason"]) == ("failed", "source_unreadable") and words in r["error"]
    # the readable ones went through the models (the symlinked copy is a duplicate of good.png)
    assert not rows[root + "caf\\xe9.png"]["reason"].startswith("source_")
    assert not rows[root + "good.png"]["reason"].startswith("source_")
    assert rows[root + "sub/again.png"]["reason"] == "duplicate"

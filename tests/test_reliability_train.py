"""The training loader trusts no shard (issue 14): a truncated tar stops ``mcie train`` with an
error naming the file (webdataset alone reads it as a shorter tar), and a sample that breaks
the format is skipped, logged with its shard and key, and counted, never trained on."""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import shutil
import tarfile

import pytest

pytest.importorskip("torch")

from mcie.shards import ShardError, read_tar, write_tar  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _copy(shards: str, tmp_path) -> list[str]:
    d = tmp_path / "shards"
    d.mkdir()
    for p in sorted(glob.glob(shards)):
        shutil.copy(p, d)
    return sorted(glob.glob(str(d / "*.tar")))


def _png(size, fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L" if fmt == "PNG" else "RGB", size, 255).save(buf, format=fmt)
    return buf.getvalue()


def _tok():
    from mcie.model.config import MCIEConfig
    from mcie.model.editor import MCIEEditor

    cfg = MCIEConfig.preset_config("tiny")
    return MCIEEditor.from_config(cfg).tokenizer, cfg.max_sub_edits


def test_a_truncated_shard_stops_training_naming_the_file(shards, tmp_path, capsys):
    import webdataset as wds

    from mcie.cli import main
    from mcie.model.data import shard_loader

    paths = _copy(shards, tmp_path)
    with tarfile.open(paths[1]) as tar:
        cut = tar.getmembers()[5].offset  # a member boundary: tarfile sees a shorter tar
    with open(paths[1], "r+b") as fh:
        fh.truncate(cut)
    n_whole = sum(1 for _ in read_tar(paths[0]))
    # the defect: webdataset alone yields the shorter shard without a word
    short = list(wds.WebDataset(paths[1], shardshuffle=False, empty_check=False))
    assert 0 < len(short) < n_whole + 5
    tok, k = _tok()
    with pytest.raises(ShardError, match=f"{paths[1]}: truncated tar"):
        shard_loader(paths, tok, 32, k, 4, shuffle_buffer=0, repeat=False)
    pattern = os.path.join(os.path.dirname(paths[0]), "*.tar")
    args = ["train", "--shards", pattern, "--out", str(tmp_path / "run"), "--preset", "tiny"]
    assert main([*args, "--max-steps", "1", "--batch-size", "2", "--no-progress"]) == 2
    assert paths[1] in capsys.readouterr().err


#: damage done to a sample's members, and the validator's words for it
DAMAGE = {
    "wrong-size mask": (lambda m: m.update({"mask0.png": _png((7, 5))}), "mask0.png is 7x5"),
    "JPEG mask": (lambda m: m.update({"mask0.png": _png((64, 64), "JPEG")}), "is JPEG, not PNG"),
    "target of another size": (lambda m: m.update({"tgt.jpg": _png((32, 32), "JPEG")}), "differ"),
}


@pytest.fixture
def damaged(shards, tmp_path) -> tuple[list[str], dict[str, str], set[str]]:
    """Copies of the shards whose first shard's first three samples are damaged; returns the
    paths, {bad key: expected message} and the good keys."""
    paths = _copy(shards, tmp_path)
    samples = list(read_tar(paths[0]))
    bad = {}
    for (key, members), (change, message) in zip(samples[:3], DAMAGE.values(), strict=True):
        change(members)
        bad[key] = message
    write_tar(paths[0], [[(f"{k}.{s}", b) for s, b in m.items()] for k, m in samples])
    good = {k for p in paths for k, _ in read_tar(p)} - set(bad)
    return paths, bad, good


def test_bad_samples_are_skipped_logged_and_counted(damaged, caplog):
    from mcie.model.data import shard_loader

    paths, bad, good = damaged
    tok, k = _tok()
    seen, skipped = [], 0
    with caplog.at_level(logging.WARNING, logger="mcie.model.data"):
        for batch in shard_loader(paths, tok, 32, k, 4, shuffle_buffer=0, repeat=False):
            seen += list(batch["key"])
            skipped += int(batch["skipped"].sum())
    assert sorted(seen) == sorted(good)  # every good sample once, no bad one
    assert skipped == len(bad) == 3
    for key, message in bad.items():
        line = next(r.getMessage() for r in caplog.records if key in r.getMessage())
        assert paths[0] in line and message in line


def test_mcie_train_reports_the_skipped_samples(damaged, tmp_path, capsys):
    from mcie.cli import main

    paths, bad, good = damaged
    pattern = os.path.join(os.path.dirname(paths[0]), "*.tar")
    args = ["train", "--shards", pattern, "--out", str(tmp_path / "run"), "--preset", "tiny", "--json"]
    # one step over every good sample in file order: the loader passes every bad one
    steps = ["--max-steps", "1", "--batch-size", str(len(good)), "--shuffle-buffer", "0", "--no-progress"]
    assert main([*args, *steps]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped_samples"] == len(bad)


def test_the_validation_set_skips_bad_samples(damaged, caplog):
    from mcie.model.validation import ValidationSet

    paths, bad, good = damaged
    pattern = os.path.join(os.path.dirname(paths[0]), "*.tar")
    with caplog.at_level(logging.WARNING, logger="mcie.model.validation"):
        vs = ValidationSet.from_shards(pattern, 32, n=len(good) + len(bad))
    assert sorted(s.key for s in vs.samples) == sorted(good)
    assert sum(paths[0] in r.getMessage() for r in caplog.records) == len(bad)

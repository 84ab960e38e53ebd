"""Untrusted data and damaged files (issue 14): keys of the wrong shape, truncated tars,
samples that break the format, concurrent runs. Every case here was reproduced on main first."""

from __future__ import annotations

import glob
import io
import os
import shutil
import tarfile

import pytest

from mcie.keys import InvalidKeyError, check_key, is_valid_key
from mcie.shards import ShardError, check_tar_complete, read_tar


def _copy(built: str, tmp_path) -> str:
    out = str(tmp_path / "copy")
    shutil.copytree(built, out)
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# -- keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key", ["/etc/passwd", "../../x", "0123456789abcdef012*", "abc", "0123456789ABCDEF0123", "", None, 7]
)
def test_bad_keys_are_refused(key):
    assert not is_valid_key(key)
    with pytest.raises(InvalidKeyError, match="index.parquet: invalid sample key"):
        check_key(key, "index.parquet")


def test_our_keys_pass():
    from mcie.records import content_key

    k = content_key("a", b"b")
    assert is_valid_key(k) and check_key(k, "x") == k


# -- truncated and hostile tars ---------------------------------------------------------------
def test_truncated_tar_is_an_error_naming_the_file(built, tmp_path):
    path = sorted(glob.glob(os.path.join(built, "shards", "*.tar")))[0]
    data = _read(path)
    whole = list(read_tar(path))
    assert check_tar_complete(path) == sum(len(m) for _, m in whole)
    # cut at a member boundary (tarfile alone reads a shorter tar) and inside a member
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
    boundary = infos[len(infos) // 2].offset
    for cut in (boundary, boundary + 700, len(data) - 20000):
        bad = str(tmp_path / f"cut{cut}.tar")
        with open(bad, "wb") as fh:
            fh.write(data[:cut])
        with pytest.raises(ShardError, match=f"{bad}: .*(truncated|unreadable)"):
            list(read_tar(bad))
        with pytest.raises(ShardError, match=bad):
            check_tar_complete(bad)


@pytest.mark.parametrize("name", ["/tmp/evil.src.jpg", "..%2f.json", "a*b?c[d].json", "0123.json"])
def test_a_tar_member_with_a_bad_key_is_an_error(tmp_path, name):
    bad = str(tmp_path / "bad.tar")
    _tar(bad, [(name, b"{}")])
    with pytest.raises(ShardError, match="invalid sample key"):
        list(read_tar(bad))


def _rewrite_first_sample(out: str, change) -> tuple[str, str]:
    """Rewrite the first sample of the first accepted shard with ``change(members)``; returns
    (shard path, key)."""
    from mcie.shards import write_tar

    path = sorted(glob.glob(os.path.join(out, "shards", "*.tar")))[0]
    samples = list(read_tar(path))
    key, members = samples[0]
    change(members)
    write_tar(path, [[(f"{k}.{s}", b) for s, b in m.items()] for k, m in samples])
    return path, key


def _png(size, mode="L", fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, 255 if mode == "L" else (255, 0, 0)).save(buf, format=fmt)
    return buf.getvalue()


BAD_SAMPLES = {
    "wrong-size mask": (lambda m: m.update({"mask0.png": _png((7, 5))}), "mask0.png is 7x5"),
    "JPEG mask": (lambda m: m.update({"mask0.png": _png((64, 64), fmt="JPEG")}), "is JPEG, not PNG"),
    "RGB mask": (lambda m: m.update({"mask0.png": _png((64, 64), mode="RGB")}), "has mode RGB"),
    "target of another size": (
        lambda m: m.update({"tgt.jpg": _png((32, 32), mode="RGB", fmt="JPEG")}),
        "and target 32x32 differ",
    ),
    "mask missing": (lambda m: m.pop("mask0.png"), "masks for"),
    "JSON broken": (lambda m: m.update({"json": b"{not json"}), "unreadable JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLES))
def test_bench_from_refuses_a_bad_sample_naming_shard_and_key(small_build, tmp_path, capsys, case):
    from mcie.cli import main

    out = _copy(small_build, tmp_path)
    change, message = BAD_SAMPLES[case]
    path, key = _rewrite_first_sample(out, change)
    bench = str(tmp_path / "bench")
    assert main(["bench", "build", "--out", bench, "--from", out, "--holdout", "0.99"]) == 2
    err = capsys.readouterr().err
    assert path in err and key in err and message in err
    assert not os.path.exists(bench)  # a refused run leaves no folder behind


def _files(d: str) -> dict[str, bytes]:
    return {n: _read(os.path.join(d, n)) for n in sorted(os.listdir(d))}


def test_bench_build_never_overwrites_or_deletes_a_benchmark(small_build, tmp_path):
    from mcie.cli import main

    bench = str(tmp_path / "bench")
    assert main(["bench", "build", "--out", bench, "--from", small_build, "--holdout", "0.5"]) == 0
    before = _files(bench)
    assert set(before) == {"bench.parquet", "bench.json"}
    # into a folder that holds a benchmark: refused, nothing changed
    assert main(["bench", "build", "--out", bench, "--from", small_build, "--holdout", "0.3"]) == 1
    assert _files(bench) == before
    # asked to overwrite, but the overlap check then fails: the old benchmark survives whole
    shards = os.path.join(small_build, "shards", "*.tar")
    args = ["--from", small_build, "--holdout", "0.3", "--overwrite", "--train-shards", shards]
    assert main(["bench", "build", "--out", bench, *args]) == 1
    assert _files(bench) == before
    assert sorted(os.listdir(tmp_path)) == ["bench"]  # no staging folder left
    # asked to overwrite, and the checks pass: replaced
    assert (
        main(["bench", "build", "--out", bench, "--from", small_build, "--holdout", "0.3", "--overwrite"])
        == 0
    )
    assert _files(bench) != before and set(_files(bench)) == set(before)


# -- run lock --------------------------------------------------------------------------------
def test_a_second_build_into_a_locked_folder_is_refused(tmp_path, capsys):
    from conftest import build

    from mcie.runlock import LOCK_NAME, RunLock

    out = str(tmp_path / "out")
    with RunLock(out, "build run"):
        assert build(out, "--resume") == 1
        err = capsys.readouterr().err
        assert "another mcie build run is using" in err and f"pid {os.getpid()}" in err
    assert not os.path.exists(out)  # the lock was the only thing there: removed with it
    assert build(out) == 0 and not os.path.exists(os.path.join(out, LOCK_NAME))


@pytest.mark.slow
def test_two_concurrent_builds_one_refused(tmp_path):
    import subprocess
    import sys

    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", out, "--samples", "20", "--shard-size", "10",
           "--image-size", "64", "--no-progress", "--resume"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [rc for rc, _ in results] == [0, 1], results
    assert "another mcie build run is using" in results[1][1]


def test_a_killed_runs_lock_is_not_stuck(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import build

    out = str(tmp_path / "out")
    code = (
        "from mcie.runlock import RunLock; import time\n"
        f"with RunLock({out!r}): print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    assert build(out, "--resume") == 1  # held: refused
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert os.path.exists(os.path.join(out, ".mcie.lock"))  # left behind by the crash ...
    assert build(out, "--resume") == 0  # ... but not held: the next run takes it


# -- Label Studio annotations and keys read back ---------------------------------------------
def _ann(result):
    return {"id": 1, "completed_by": 1, "result": result}


def _choices(name, value):
    return {"from_name": name, "type": "choices", "value": {"choices": value}}


ORIGINAL = {"key": "0" * 20, "instruction": "x", "width": 4, "height": 4, "sub_edits": [{"instruction": "a"}]}


def test_a_verdict_given_as_a_string_is_read_and_odd_values_refused():
    from mcie.annotation.verdicts import parse_annotation

    assert parse_annotation(_ann([_choices("verdict", "reject")]), [], ORIGINAL).verdict == "reject"
    assert parse_annotation(_ann([_choices("verdict", ["accept"])]), [], ORIGINAL).verdict == "accept"
    with pytest.raises(ValueError, match="unknown reason 'made_up'"):
        parse_annotation(_ann([_choices("verdict", "reject"), _choices("reason", ["made_up"])]), [], ORIGINAL)
    with pytest.raises(ValueError, match="expected one choice"):
        parse_annotation(_ann([_choices("verdict", ["accept", "reject"])]), [], ORIGINAL)


def test_index_keys_are_checked_before_they_name_files(small_build, tmp_path):
    import pyarrow.parquet as pq

    from mcie.annotation.review_index import read_index
    from mcie.tables import INDEX_SCHEMA, write_rows

    out = _copy(small_build, tmp_path)
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    for evil in ("/tmp/evil", "*"):
        rows[0]["key"] = evil
        write_rows(os.path.join(out, "index.parquet"), sorted(rows, key=lambda r: r["key"]), INDEX_SCHEMA)
        with pytest.raises(InvalidKeyError, match="invalid sample key"):
            read_index(out)


def test_review_masks_of_other_samples_survive_a_glob_like_key(tmp_path):
    from mcie.annotation.importer import _write_masks

    other = tmp_path / "review" / ("a" * 20 + ".mask0.png")
    other.parent.mkdir()
    other.write_bytes(b"a reviewer's correction")
    with pytest.raises(InvalidKeyError):
        _write_masks(str(tmp_path), {"*": {0: b"x"}})
    assert other.read_bytes() == b"a reviewer's correction"
    assert sorted(p.name for p in other.parent.iterdir()) == [other.name]

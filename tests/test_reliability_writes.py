"""Small files written atomically (issue 14): a write that fails half-way (a real ``EFBIG``
from ``RLIMIT_FSIZE``, what a full disk does to a process) leaves the old file whole
or no file at all, never a 0-byte or cut ``shards.json``, summary or descriptor."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each test runs mcie in a subprocess

#: runs ``mcie ARGS`` and makes the write of the file named NAME fail half-way for real: when
#: a file whose name starts with NAME (the target or its temporary) is opened for writing, the
#: process may no longer grow any file past 10 bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so the
#: write fails with OSError EFBIG, as it would with ENOSPC on a full disk). An audit hook
#: watches ``open``: nothing of mcie is patched.
FAIL_WRITING = """
import os, resource, signal, sys
name = sys.argv[1]
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path, mode, flags = os.fsdecode(args[0]), args[1] or "", args[2] or 0
        writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
        if writing and os.path.basename(path).startswith(name):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (10, resource.RLIM_INFINITY))
sys.addaudithook(hook)
from mcie.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _fail_writing(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", FAIL_WRITING, name, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0, f"the write of {name} did not fail: {r.stderr[-300:]}"
    return r


def _snapshot(folder: str) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            if n != ".mcie.lock":
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, folder)] = fh.read()
    return out


def _check_whole(rel: str, data: bytes) -> None:
    """``data`` is a complete file of its kind (parses to the end), not a temporary."""
    import pyarrow.parquet as pq
    from PIL import Image

    assert ".tmp" not in rel, f"temporary file left behind: {rel}"
    assert data, f"0-byte file: {rel}"
    if rel.endswith(".json"):
        json.loads(data)
    elif rel.endswith(".jsonl"):
        [json.loads(line) for line in data.decode().splitlines()]
    elif rel.endswith(".parquet"):
        pq.read_table(io.BytesIO(data))
    elif rel.endswith(".png"):
        Image.open(io.BytesIO(data)).load()


@pytest.mark.parametrize("name", ["shards.json", "rejected.json", "README.md", "index.parquet"])
def test_a_failed_final_merge_leaves_the_old_file(built, tmp_path, name):
    """``mcie build --resume`` of a finished build re-runs only the final merge: a write cut
    half-way keeps every file's old bytes."""
    from conftest import SMALL

    out = str(tmp_path / "out")
    shutil.copytree(built, out)
    before = _snapshot(out)
    r = _fail_writing(name, "build", "--out", out, *SMALL, "--workers", "1", "--resume")
    after = _snapshot(out)
    # one line on the terminal naming the cause; the traceback log cannot be written either (the
    # process may grow no file past 10 bytes, as on a full disk), so the line says so and no
    # empty log is left; nothing else changes
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0] and "could not be written" in lines[0], lines
    assert after == before


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory) -> str:
    from mcie.cli import main

    bench = str(tmp_path_factory.mktemp("bench") / "bench")
    assert main(["bench", "build", "--out", bench, "--sets", "6", "--image-size", "32"]) == 0
    return bench


@pytest.mark.parametrize(
    "name", ["samples.jsonl", "summary.json", "summary.md", "summary.csv", "contact.png"]
)
def test_a_failed_bench_run_leaves_no_partial_report(small_bench, tmp_path, name):
    run = str(tmp_path / "run")
    _fail_writing(name, "bench", "run", "--bench", small_bench, "--editor", "identity", "--out", run)
    files = _snapshot(run)
    assert name not in files  # absent, not cut
    for rel, data in files.items():
        _check_whole(rel, data)


@pytest.mark.parametrize("name", ["bench.json", "bench.parquet"])
def test_a_failed_bench_build_leaves_no_partial_file(tmp_path, name):
    bench = str(tmp_path / "bench")
    _fail_writing(name, "bench", "build", "--out", bench, "--sets", "6", "--image-size", "32")
    for rel, data in _snapshot(bench).items():
        _check_whole(rel, data)


@pytest.mark.parametrize("name", ["shards.json", "reviewed.json", "index.parquet"])
def test_a_failed_ls_shard_leaves_no_partial_file(built, tmp_path, name):
    from mcie.shards import check_tar_complete

    final = str(tmp_path / "final")
    _fail_writing(name, "ls", "shard", built, "--out", final, "--include-unreviewed", "--shard-size", "25")
    files = _snapshot(final)
    assert not any(os.path.basename(rel) == name for rel in files)
    for rel, data in files.items():
        _check_whole(rel, data)
        if rel.endswith(".tar"):
            assert check_tar_complete(os.path.join(final, rel)) > 0


@pytest.mark.parametrize("limit", [0, 10])
def test_storage_write_json_keeps_the_old_file(tmp_path, limit):
    """The helper itself: the old content survives a write cut at ``limit`` bytes."""
    path = tmp_path / "shards.json"
    path.write_text('{"old": true}')
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))\n"
        "from mcie import storage\n"
        f"storage.write_json({str(path)!r}, {{'new': 'x' * 5000}})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "File too large" in r.stderr
    assert path.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["shards.json"]

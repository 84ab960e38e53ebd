"""A FIFO, socket or device among the inputs is never opened for reading: it becomes a
``failed`` row (``source_unreadable``) saying what it is, and the build goes on. Before, the
worker blocked in ``open`` on a FIFO for ever, and ``/dev/zero`` was read up to the byte cap."""

from __future__ import annotations

import os
import shutil
import socket
import threading

import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.exitcodes import UsageError
from mcie.transforms.sources.images import ImageLoader, list_inputs, sample_photo_paths

#: what each special input must be called in its row
KINDS = {"pipe.png": "a FIFO", "sock.png": "a socket", "zero.png": "a character device"}
COLUMNS = ["source_id", "status", "reason", "error"]
NAMES = ["ok.png", "pipe.png", "sock.png", "zero.png"]


def make_inputs(d: str) -> str:
    """ok.png (a photo), pipe.png (a FIFO nobody writes to), sock.png (a Unix
    socket's file, nobody listening), zero.png (a symlink to /dev/zero)."""
    os.makedirs(d)
    shutil.copy(sample_photo_paths()[0], os.path.join(d, "ok.png"))
    os.mkfifo(os.path.join(d, "pipe.png"))
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(d, "sock.png"))
    s.close()  # the file stays: a socket file nobody listens on
    os.symlink("/dev/zero", os.path.join(d, "zero.png"))
    return d


def _load_with_deadline(loader: ImageLoader, path: str, seconds: float = 60):
    """``loader.load(path)`` in a thread; fails the test (instead of hanging it) when the
    read blocks, then unblocks it by opening the FIFO's other end."""
    result = []
    t = threading.Thread(target=lambda: result.append(loader.load(path)), daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # a reader is waiting: release it
        t.join(10)
        pytest.fail(f"reading {path} blocked for {seconds} s")
    return result[0]


def test_special_files_fail_with_what_they_are_unread(tmp_path):
    d = make_inputs(str(tmp_path / "in"))
    assert sorted(os.path.basename(p) for p in list_inputs(d)) == NAMES
    loader = ImageLoader()
    for name, kind in KINDS.items():
        got = _load_with_deadline(loader, os.path.join(d, name))
        assert (got.ok, got.reason.value, got.source_hash) == (False, "source_unreadable", "")
        assert f"is {kind}, not a regular file" in got.error, got.error
    assert loader.load(os.path.join(d, "ok.png")).ok


def test_a_fifo_named_as_the_input_list_is_a_usage_error(tmp_path):
    fifo = str(tmp_path / "list.csv")
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"list .*list\.csv is a FIFO, not a regular file"):
        list_inputs(fifo)


def test_a_build_over_special_files_ends_with_a_row_for_each(tiny_models, tmp_path):
    d = make_inputs(str(tmp_path / "in"))
    out = str(tmp_path / "out")
    flags = ["--image-size", "64", "--no-progress", "--max-failed-fraction", "1"]
    assert main(["build", "--models", tiny_models, "--images", d, "--out", out, *flags]) == 0
    rows = pq.read_table(os.path.join(out, "index.parquet"), columns=COLUMNS)
    by = {os.path.basename(r["source_id"]): r for r in rows.to_pylist()}
    assert sorted(by) == NAMES
    for name, kind in KINDS.items():
        assert (by[name]["status"], by[name]["reason"]) == ("failed", "source_unreadable")
        assert f"is {kind}, not a regular file" in by[name]["error"]
    assert by["ok.png"]["status"] in ("accepted", "rejected")

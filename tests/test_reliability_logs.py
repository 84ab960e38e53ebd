"""Failure logs: never written through a planted link, said (not crashed on) when the disk
refuses them, and not left behind by a run stopped with SIGTERM.

A full disk is stood in for by a file-size limit (``RLIMIT_FSIZE``): the kernel then refuses a
write past the limit with ``EFBIG`` exactly where a full disk refuses it with ``ENOSPC``, in
the same calls, without a small filesystem to mount."""

from __future__ import annotations

import datetime
import glob
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcie import logs

MCIE = [sys.executable, "-m", "mcie.cli"]


def _fail() -> BaseException:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        return exc


def _plant(folder: str, victim: str, seconds: int = 30) -> None:
    """Symlinks to ``victim`` under every log name of the next ``seconds`` seconds."""
    os.makedirs(folder, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    for s in range(-1, seconds):
        name = logs.log_name(now + datetime.timedelta(seconds=s))
        if not os.path.lexists(os.path.join(folder, name)):
            os.symlink(victim, os.path.join(folder, name))


def test_a_traceback_without_a_build_goes_to_a_private_folder_never_a_planted_link(tmp_path, monkeypatch):
    shared = tmp_path / "shared-tmp"  # the temp folder every local user can write to
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    _plant(str(shared / "mcie-logs"), str(victim))  # the name the log used to have
    path = logs.write_traceback(_fail(), None)
    assert victim.read_text() == "mine\n"
    folder = os.path.dirname(path)
    assert os.path.dirname(folder) == str(shared) and folder != str(shared / "mcie-logs")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600 and not os.path.islink(path)
    assert "RuntimeError: boom" in Path(path).read_text()


def test_a_traceback_in_a_build_folder_never_follows_a_planted_link(tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    _plant(str(out / "logs"), str(victim))
    path = logs.write_traceback(_fail(), str(out))
    assert victim.read_text() == "mine\n"
    assert os.path.dirname(path) == str(out / "logs") and not os.path.islink(path)
    assert os.path.basename(path).startswith("mcie-") and "RuntimeError: boom" in Path(path).read_text()


def _limited(max_bytes: int):
    """preexec_fn: no file of this process may grow past ``max_bytes`` (Python ignores
    SIGXFSZ, so the write fails with EFBIG instead of killing the process)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def _run_limited(argv: list[str], max_bytes: int, tmp: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*MCIE, *argv], capture_output=True, text=True, env=env,
                          preexec_fn=_limited(max_bytes), timeout=900)  # fmt: skip


def test_a_full_disk_before_the_pipeline_names_the_cause_and_says_there_is_no_log(tmp_path):
    """The first write of a build (its run manifest) fails, then so does the traceback log:
    before, the error handler crashed with two raw tracebacks (exit 1) and left a 0-byte log."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    proc = _run_limited(["build", "--out", str(out), "--samples", "4", "--image-size", "32", "--no-progress"],
                        1, str(tmp))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mcie: run failed: OSError: [Errno 27] File too large"), lines[0]
    assert lines[0].endswith("(no traceback log: it could not be written (File too large))"), lines[0]
    assert not glob.glob(str(out / "logs" / "*")) and not os.listdir(tmp)  # no empty log anywhere


def test_a_full_disk_inside_the_pipeline_names_the_cause_first(tmp_path):
    """Workers' writes fail; the run log cannot take the traceback either."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    argv = ["build", "--out", str(out), "--samples", "8", "--image-size", "64", "--no-progress"]
    proc = _run_limited(argv, 6000, str(tmp))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("mcie: run failed: unit 0 (items 0-7) of build"), line
    cause, log = (
        line.index("OSError: [Errno 27] File too large"),
        line.index("the run log could not be written"),
    )
    assert cause < log, line  # before: the line named the log's failure, not the cause


def test_sigterm_removes_the_temporary_run_log(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    argv = [
        "build",
        "--out",
        str(tmp_path / "out"),
        "--samples",
        "4000",
        "--image-size",
        "64",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [*MCIE, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not glob.glob(str(tmp / "mcie-run-*.log")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the build ended before its run log appeared"
    time.sleep(2)  # into the pipeline
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM  # killed by it, as before
    assert not glob.glob(str(tmp / "mcie-run-*.log"))


def test_a_run_log_kept_across_filesystems_is_whole_and_private(tmp_path, monkeypatch):
    """The temp folder on another filesystem (tmpfs) than OUT: the log is copied into a file
    created new in OUT/logs/ and the temporary one removed."""
    shm = tempfile.mkdtemp(prefix="mcie-test-", dir="/dev/shm")
    monkeypatch.setattr(tempfile, "tempdir", shm)
    out = tmp_path / "out"
    out.mkdir()
    assert os.stat(shm).st_dev != os.stat(out).st_dev
    try:
        with logs.run_log(str(out)):
            raise RuntimeError("boom in a worker")
    except logs.RunFailedWithLog as exc:
        failed = exc
    finally:
        leftover = os.listdir(shm)
        os.rmdir(shm)
    assert leftover == []
    assert os.path.dirname(failed.log_path) == str(out / "logs")
    assert stat.S_IMODE(os.stat(failed.log_path).st_mode) == 0o600
    assert "RuntimeError: boom in a worker" in Path(failed.log_path).read_text()
    assert str(failed).startswith("RuntimeError: boom in a worker (full log: ")

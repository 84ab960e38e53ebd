"""One run at a time per folder: an exclusive lock file that a second run refuses with exit 1.

``RunLock(folder)`` creates ``{folder}/.mcie.lock`` and takes a non-blocking ``flock`` on it
for the whole run; a second ``mcie`` run on the same folder (a build into the same ``--out``,
an ``ls export`` into the same project folder) finds it locked and raises :class:`UsageError`
naming the holder (pid, host, start time, command, read from the file).

Stale locks: the kernel drops an ``flock`` when its process dies, however it dies (crash,
``kill -9``, power loss), so a crashed run's lock file is left behind but unlocked, and the
next run simply takes it; nothing has to guess from pids or clocks. The lock file is removed
at the end of a run. Limit: ``flock`` serialises processes on one machine (and on local disks);
two machines writing one network folder or bucket are not serialised by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

from mcie.exitcodes import UsageError

LOCK_NAME = ".mcie.lock"


class RunLock:
    """Context manager holding the run lock of ``folder`` (created if missing; removed again on
    exit when the run left nothing else in it, so a refused run leaves no empty folder)."""

    def __init__(self, folder: str, what: str = "run") -> None:
        self.folder, self.what = folder, what
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        self._created = not os.path.exists(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise UsageError(
                    f"another mcie {self.what} is using {self.folder!r} ({holder}); "
                    "wait for it to finish or pick another folder"
                ) from None
            # the holder before us may have unlinked the file between our open and flock:
            # then we lock a dead inode, so try again on the file now at the path
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv[:3]),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info, sort_keys=True).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # still holding the lock: no one else can be using the file
        os.close(self._fd)
        self._fd = None
        if self._created:
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)  # only when empty: a refused run leaves no folder behind


def _read(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"

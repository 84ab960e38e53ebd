"""Nothing listens beyond loopback (issue 14): the servers Beam's local runner starts for its
worker processes during a 2-worker build, read from the kernel's socket tables."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # a 2-worker build in a subprocess


def _tree(pid: int) -> set[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += children.get(p, [])
    return out


def _socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def _address(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])  # little-endian word
    return ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets in LISTEN state that ``pids`` hold."""
    inodes = _socket_inodes(pids)
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[9]) in inodes:  # 0A: LISTEN
                    host, port = f[1].split(":")
                    out.add((str(_address(host)), int(port, 16)))
    return out


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def test_a_two_worker_build_listens_on_loopback_only(tmp_path):
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", out, "--samples", "40", "--shard-size", "10",
           "--image-size", "64", "--workers", "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[tuple[str, int]] = set()
    while proc.poll() is None:
        seen |= listening(_tree(proc.pid))
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read()[-500:]
    ports = {port for _, port in seen}
    # the runner's control, data, state and logging servers, and a logging server per worker
    assert len(ports) >= 6, seen
    assert all(_is_loopback(a) for a, _ in seen), sorted(seen)

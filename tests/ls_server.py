"""A real Label Studio server for the tests, started from ``.venv-ls`` (made by ``make install``).

The first start of a data dir runs Django migrations (about a minute on a slow machine); the
migrated data dir, with its preset user and token, is cached under pytest's cache folder and
copied for each session, which then starts in seconds. The cached credentials are random test
values written once with mode 0600; they reach the server through its environment only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket

from mcie.annotation.server import ENV_PASSWORD, ENV_TOKEN, ENV_USERNAME, LabelStudioServer, ServerConfig

CACHE_NAME = "mcie-label-studio-1.23.2"
#: The folder whose sitecustomize.py records the server's connection attempts.
NET_AUDIT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netaudit")
NET_AUDIT_FILE = "net-audit.jsonl"


def free_port() -> int:
    """A port free right now on loopback (Label Studio moves up if it is taken meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrated_data_dir(cache_root: str) -> tuple[str, dict[str, str]]:
    """A migrated data dir and its credentials, made once per cache.

    Safe across processes (pytest-xdist workers, two checkouts' runs): the first caller holds
    an exclusive lock on ``cache_root/lock`` while it migrates into a fresh folder and renames
    it into place; the others wait on the lock and then find ``ready``.
    """
    data = os.path.join(cache_root, "data")
    creds_path = os.path.join(cache_root, "credentials.json")
    ready = os.path.join(cache_root, "ready")
    with open(os.path.join(cache_root, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not os.path.exists(ready):
            _migrate(cache_root, data, creds_path)
            open(ready, "w").close()
    with open(creds_path) as fh:
        return data, json.load(fh)


def _migrate(cache_root: str, data: str, creds_path: str) -> None:
    """Run Label Studio's migrations in a fresh data dir with a new preset user."""
    creds = {
        ENV_USERNAME: "admin@mcie.test",
        ENV_PASSWORD: "pw-" + secrets.token_hex(12),
        ENV_TOKEN: secrets.token_hex(20),
    }
    work = os.path.join(cache_root, f"data.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    with LabelStudioServer(ServerConfig(work, port=free_port()), env=creds):
        pass  # migrations ran and the user with its token exists
    fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    shutil.rmtree(data, ignore_errors=True)
    os.rename(work, data)


def start_copy(cache_root: str, where: str) -> tuple[LabelStudioServer, dict[str, str]]:
    """Copy the cached data dir to ``where`` and start a server on it, its connection attempts
    recorded in ``{where}/net-audit.jsonl`` (see :func:`outbound_attempts`)."""
    data, creds = migrated_data_dir(cache_root)
    shutil.copytree(data, where)
    path = os.environ.get("PYTHONPATH")
    audit = {
        "PYTHONPATH": os.pathsep.join([NET_AUDIT_DIR, *([path] if path else [])]),
        "MCIE_NET_AUDIT_LOG": os.path.join(where, NET_AUDIT_FILE),
    }
    server = LabelStudioServer(ServerConfig(where, port=free_port()), env=creds, extra_env=audit)
    server.start()
    return server, creds


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def connection_attempts(server: LabelStudioServer) -> list[dict]:
    """Every ``socket.connect`` / ``getaddrinfo`` the server's processes made so far."""
    path = os.path.join(server.config.data_dir, NET_AUDIT_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def outbound_attempts(attempts: list[dict]) -> list[dict]:
    """The attempts that would leave the machine: a connect to a non-loopback IP address, or a
    name lookup of anything but a loopback name. Unix sockets (address a path) stay local."""
    out = []
    for a in attempts:
        if a["event"] == "getaddrinfo":
            host = a["host"]
            if host is not None and not _loopback(str(host)):
                out.append(a)
        elif a["family"] in (socket.AF_INET, socket.AF_INET6) and not _loopback(str(a["address"][0])):
            out.append(a)
    return out

"""Test-only network audit, loaded by Python at start-up in the Label Studio server.

tests/ls_server.py puts this folder first on the server's PYTHONPATH and names a log file in
``MCIE_NET_AUDIT_LOG``; every ``socket.connect`` and ``socket.getaddrinfo`` of the server's
processes is then appended to that file as one JSON line (an audit hook, PEP 578, sees every
attempt, also the ones that fail), so a test can assert that the server never tries to reach
anything beyond loopback (Sentry, version checks, analytics). Nothing here changes behaviour.
"""

import json
import os
import sys

_LOG = os.environ.get("MCIE_NET_AUDIT_LOG")


def _jsonable(address):
    if isinstance(address, bytes):
        return address.decode(errors="replace")
    if isinstance(address, tuple):
        return [_jsonable(a) for a in address]
    return address


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect":
        sock, address = args
        line = {"event": "connect", "family": int(sock.family), "address": _jsonable(address)}
    elif event == "socket.getaddrinfo":
        line = {"event": "getaddrinfo", "host": _jsonable(args[0])}
    else:
        return
    line["pid"] = os.getpid()
    # os.open/os.write: no Python-level buffering to lose when the server is killed
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


if _LOG:
    sys.addaudithook(_hook)

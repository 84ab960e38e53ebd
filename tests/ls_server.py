"""A real Label Studio server for the tests, started from ``.venv-ls`` (made by ``make install``).

The first start of a data dir runs Django migrations (about a minute on a slow machine); the
migrated data dir, with its preset user and token, is cached under pytest's cache folder and
copied for each session, which then starts in seconds. The cached credentials are random test
values written once with mode 0600; they reach the server through its environment only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket

from mcie.annotation.server import ENV_PASSWORD, ENV_TOKEN, ENV_USERNAME, LabelStudioServer, ServerConfig

CACHE_NAME = "mcie-label-studio-1.23.2"


def free_port() -> int:
    """A port free right now on loopback (Label Studio moves up if it is taken meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def migrated_data_dir(cache_root: str) -> tuple[str, dict[str, str]]:
    """A migrated data dir and its credentials, made once per cache."""
    data = os.path.join(cache_root, "data")
    creds_path = os.path.join(cache_root, "credentials.json")
    ready = os.path.join(cache_root, "ready")
    if not os.path.exists(ready):
        shutil.rmtree(data, ignore_errors=True)
        creds = {
            ENV_USERNAME: "admin@mcie.test",
            ENV_PASSWORD: "pw-" + secrets.token_hex(12),
            ENV_TOKEN: secrets.token_hex(20),
        }
        fd = os.open(creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        with LabelStudioServer(ServerConfig(data, port=free_port()), env=creds):
            pass  # migrations ran and the user with its token exists
        open(ready, "w").close()
    with open(creds_path) as fh:
        return data, json.load(fh)


def start_copy(cache_root: str, where: str) -> tuple[LabelStudioServer, dict[str, str]]:
    """Copy the cached data dir to ``where`` and start a server on it."""
    data, creds = migrated_data_dir(cache_root)
    shutil.copytree(data, where)
    server = LabelStudioServer(ServerConfig(where, port=free_port()), env=creds)
    server.start()
    return server, creds

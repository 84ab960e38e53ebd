"""Real object-storage servers on 127.0.0.1 for the storage tests, started from pip packages
(the ``dev`` extra): ``gcp-storage-emulator`` for ``gs://`` and ``moto`` in server mode for
``s3://``. Each runs as a child process; the environment variables that point the Google and
AWS clients (and so Beam, in every worker process) at them are set for the whole session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: str, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            with open(log) as fh:
                raise RuntimeError(f"storage server exited ({proc.returncode}): {fh.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"storage server did not listen on {port} within {timeout:.0f}s")


class StorageServer:
    """One server process and the environment that points clients at it."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], workdir: str) -> None:
        self.name, self.port, self.env = name, port, env
        self.log = os.path.join(workdir, f"{name}.log")
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir)
        _wait_port(port, self.proc, self.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_gcs(workdir: str, buckets: list[str]) -> StorageServer:
    """``gcp-storage-emulator`` in memory with ``buckets``; sets ``STORAGE_EMULATOR_HOST`` and
    a static OAuth token (the emulator ignores it) so the Google client never looks for
    credentials on the network: without one, Beam retries Application Default Credentials for
    about 30 s in every process before it connects anonymously."""
    port = free_port()
    adc = os.path.join(workdir, "emulator-adc.json")
    with open(adc, "w") as fh:
        json.dump(
            {
                "type": "authorized_user",
                "client_id": "emulator",
                "client_secret": "emulator",
                "refresh_token": "emulator",
                "token": "emulator",
                "expiry": "2999-01-01T00:00:00Z",
            },
            fh,
        )
    env = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
        "GOOGLE_APPLICATION_CREDENTIALS": adc,
        "GOOGLE_CLOUD_PROJECT": "mcie-test",
    }
    # started as modules of this interpreter, not as console scripts: a venv whose bin/ holds
    # only a python link (a worktree's) has no scripts beside it
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}",
           "--in-memory"]  # fmt: skip
    server = StorageServer("gcs", cmd, port, env, workdir)
    from google.cloud import storage

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = storage.Client()
        for b in buckets:
            client.create_bucket(b)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return server


def start_s3(workdir: str, buckets: list[str]) -> StorageServer:
    """``moto_server`` with ``buckets``; sets ``AWS_ENDPOINT_URL`` (boto3 reads it, so Beam's
    S3 filesystem needs no extra flag) and dummy keys."""
    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = StorageServer("s3", cmd, port, env, workdir)
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    for b in buckets:
        client.create_bucket(Bucket=b)
    return server

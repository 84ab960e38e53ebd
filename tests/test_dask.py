"""``--runner dask``: Beam's Dask runner on a real ``dask.distributed`` cluster of several
worker processes gives the FnApiRunner's bytes, for a build, the stages one by one, a resumed
run and a run that loses a worker; it listens and connects on loopback only."""

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from conftest import SMALL
from test_build import _assert_same_bytes

from mcie.cli import main
from mcie.exitcodes import UsageError
from mcie.pipeline.dask_runner import DASK_RUNNER, cluster
from mcie.pipeline.options import RunOptions

pytestmark = pytest.mark.timeout(600)

HERE = os.path.dirname(os.path.abspath(__file__))
DASK = ["--runner", "dask", "--workers", "2"]


def _cli(*args, env=None):
    cmd = [sys.executable, "-m", "mcie.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_runner_names_and_flags():
    assert RunOptions(runner="DaskRunner").runner == "dask"
    assert RunOptions(runner=DASK_RUNNER).runner == "dask"
    flags = RunOptions(runner="dask", dask_address="tcp://10.0.0.5:8786", beam_args=("--x=1",)).beam_flags()
    assert flags == [
        f"--runner={DASK_RUNNER}",
        "--dask_partition_size=1",  # one unit per dask task (Beam's default packs 128 in one)
        "--dask_client_address=tcp://10.0.0.5:8786",
        "--x=1",
    ]
    with pytest.raises(UsageError, match="--dask-address is for --runner dask"):
        RunOptions(dask_address="tcp://h:8786")
    with pytest.raises(UsageError, match="--workers sizes the local Dask cluster"):
        RunOptions(runner="dask", dask_address="tcp://h:8786", workers=2)


def test_local_cluster_listens_on_loopback_only():
    """... and on free ports: dask's default HTTP port (8787), taken here by another process,
    costs no warning."""
    import socket
    import warnings

    from distributed import Client

    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))
        taken.listen()
    except OSError:
        pass  # already taken by someone else: the same situation
    with warnings.catch_warnings(record=True) as caught, cluster(None, 2) as address:
        warnings.simplefilter("always")
        client = Client(address)
        try:
            info = client.scheduler_info()
            pids = set(client.run(os.getpid).values())
        finally:
            client.close()
        addresses = [address, *info["workers"], *(w["nanny"] for w in info["workers"].values())]
        assert len(info["workers"]) == 2 and len(pids) == 2
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
        listening = [
            c.laddr.ip
            for pid in [os.getpid(), *pids]
            for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert len(listening) >= 5 and set(listening) == {"127.0.0.1"}, listening
    taken.close()
    assert not [str(w.message) for w in caught if "8787" in str(w.message)]


def test_build_gives_the_fnapi_bytes_on_loopback_with_one_line(built, tmp_path):
    """Two worker processes; every connection any process makes (driver, nannies, workers:
    the audit hook is inherited by the spawned workers) goes to loopback; nothing of dask's
    reaches the terminal."""
    out, audit = str(tmp_path / "d"), str(tmp_path / "net.jsonl")
    env = {"PYTHONPATH": os.path.join(HERE, "netaudit"), "MCIE_NET_AUDIT_LOG": audit}
    res = _cli("build", "--out", out, *SMALL, *DASK, "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # --no-progress: no dask or Beam line on the terminal
    summary = json.loads(res.stdout)
    assert summary["candidates"] == 60 and summary["counters"] == {}  # the runner has no metrics
    _assert_same_bytes(built, out)
    assert not os.path.exists(os.path.join(out, "logs"))  # a run that succeeds keeps no log
    with open(audit) as fh:
        events = [json.loads(line) for line in fh]
    pids = {e["pid"] for e in events}
    assert len(pids) >= 3  # the driver and two worker processes at least
    remote = [
        e
        for e in events
        if e["event"] == "connect"
        and isinstance(e["address"], list)
        and e["address"][0] not in ("127.0.0.1", "::1")
    ]
    assert not remote, remote[:3]


def test_stages_alone_give_the_fnapi_bytes(built, tmp_path):
    t = str(tmp_path)
    assert main(["generate", "--out", f"{t}/t0", *SMALL, *DASK]) == 0
    assert main(["annotate", "--in", f"{t}/t0", "--out", f"{t}/t1", "--no-progress", *DASK]) == 0
    assert main(["score", "--in", f"{t}/t1", "--out", f"{t}/t2", "--no-progress", *DASK]) == 0
    assert main(["shard", "--in", f"{t}/t2", "--out", f"{t}/out", "--no-progress", *DASK]) == 0
    _assert_same_bytes(built, f"{t}/out")


def test_dead_workers_fail_the_run_and_resume_finishes_it(built, tmp_path):
    """Each worker process dies like ``kill -9`` after its first unit; with dask's retries
    turned off the run fails at once (exit 2, one line, the log in OUT/logs); ``--resume``
    redoes only the unfinished units and gives the FnApiRunner's bytes."""
    out = str(tmp_path / "r")
    killed = _cli(
        "build", "--out", out, *SMALL, *DASK, "--debug-exit-after-units", "1",
        env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
    )  # fmt: skip
    assert killed.returncode == 2, killed.stderr
    lines = killed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcie: run failed: unit "), lines
    assert "was on a Dask worker that died" in lines[0] and "rerun with --resume" in lines[0]
    logs = glob.glob(os.path.join(out, "logs", "*.log"))
    assert len(logs) == 1 and lines[0].endswith(f"(full log: {logs[0]})")
    with open(logs[0]) as fh:
        assert "KilledWorker" in fh.read()
    done = glob.glob(os.path.join(out, "stats", "*.json"))
    assert len(done) >= 1 and not os.path.exists(os.path.join(out, "index.parquet"))
    resumed = _cli("build", "--out", out, *SMALL, *DASK, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"units skipped (resumed): {len(done)}" in resumed.stdout
    _assert_same_bytes(built, out)


def test_a_worker_killed_mid_unit_is_replaced_and_the_bytes_hold(built, tmp_path):
    """On an existing cluster (``--dask-address``) a worker process is SIGKILLed while it
    runs a unit; dask reruns the unit on a restarted worker and the run finishes unchanged."""
    from distributed import Client

    out = str(tmp_path / "k")
    with cluster(None, 2) as address:
        client = Client(address)
        result = {}
        run = threading.Thread(
            target=lambda: result.update(
                res=_cli("build", "--out", out, *SMALL, "--runner", "dask", "--dask-address", address)
            )  # fmt: skip
        )
        run.start()
        killed = None
        while run.is_alive() and killed is None:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if glob.glob(os.path.join(out, "stats", "*.json")) and busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = busy[0]
            time.sleep(0.05)
        run.join()
        workers_after = set(client.scheduler_info()["workers"])
        client.close()
    assert killed is not None, "the run ended before a worker could be killed"
    assert result["res"].returncode == 0, result["res"].stderr
    assert killed not in workers_after and len(workers_after) == 2  # the nanny started a new one
    _assert_same_bytes(built, out)

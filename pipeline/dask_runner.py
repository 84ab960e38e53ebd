"""Beam's Dask runner on a ``dask.distributed`` cluster: ``mcie build --runner dask``.

The same pipeline as on the local ``FnApiRunner`` (the same units, steps and sink, so the same
bytes), run by Beam's ``DaskRunner`` (``apache_beam.runners.dask.dask_runner``; Beam accepts it
only by that full class name) on:

* a **local cluster** (no ``--dask-address``): ``--workers`` worker processes of one thread
  each, started and stopped with the run; the scheduler, nannies and workers listen on
  127.0.0.1 only; no dashboard (the scheduler's HTTP server, which dask always opens, gets no
  routes and listens on loopback); no memory cap (like the FnApiRunner's workers; dask's
  default cap would pause or restart a worker holding model weights at its share of the
  memory). dask sends nothing anywhere (it has no usage reporting).
* an **existing cluster** (``--dask-address tcp://HOST:8786``): SLURM or PBS through
  dask-jobqueue, Kubernetes through dask-kubernetes, or ``dask scheduler`` + ``dask worker`` by
  hand. Its workers need ``mcie`` installed and ``--out`` reachable at the same path or URL.

Beam's Dask runner puts 128 ``Create`` elements in one dask partition by default, which would
run every unit of a build in one task, one after the other; ``--dask_partition_size=1`` makes
each unit its own task, so units spread over the workers like on the FnApiRunner. It
runs ``DoFn.setup`` once per task (per unit), not once per worker process.

A worker that dies mid-unit (killed, out of memory) is dask's to handle: the scheduler reruns
its task on another worker, up to ``distributed.scheduler.allowed-failures`` times (dask's
default 3); past that the run fails (exit 2) and ``--resume`` redoes only the unfinished units.
The runner collects no Beam metrics: the summary's ``counters`` stay empty (the index and the
summary's ``by_status`` / ``by_reason`` have the counts).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from mcie import extras
from mcie.exitcodes import UnitFailed

from .units import Unit

#: the runner's class, the only name Beam's ``--runner`` accepts for it
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
#: what ``--runner`` accepts for it; all mean ``dask``
RUNNER_NAMES = ("dask", "DaskRunner", DASK_RUNNER)

log = logging.getLogger(__name__)


def require_dask() -> None:
    """Fail early (UsageError naming the extra) when ``dask.distributed`` is not installed."""
    extras.require("dask", "--runner dask")


def beam_flags(address: str | None) -> list[str]:
    """Beam's flags for a run on the scheduler at ``address`` (one unit per dask task; None
    until the local cluster is up)."""
    flags = [f"--runner={DASK_RUNNER}", "--dask_partition_size=1"]
    return flags + ([f"--dask_client_address={address}"] if address else [])


@contextlib.contextmanager
def cluster(address: str | None, workers: int) -> Iterator[str]:
    """The scheduler address of the run: ``address`` when given, else that of a local cluster
    of ``workers`` processes started now and closed (its processes ended) on exit."""
    require_dask()
    if address:
        yield address
        return
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.http.routes": []}):  # no JSON/Prometheus views
        local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one unit at a time per process, as on the FnApiRunner
            processes=True,
            host="127.0.0.1",  # scheduler, nannies and workers listen on loopback only
            dashboard_address=None,  # no dashboard
            # the HTTP server dask opens anyway, on a free port: its default 8787 is taken by
            # any other cluster on the machine, and dask then warns on the terminal
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            memory_limit=0,
            silence_logs=logging.WARNING,
        )
    try:
        yield local.scheduler_address
    finally:
        local.close()


def wait(result: Any, units: list[Unit]) -> None:
    """Wait for a DaskRunner ``result`` of a run over ``units``, then close its client (Beam's
    runner leaves it open). A unit whose workers kept dying fails the run with one line naming
    the unit and what to do (dask's task ``(name, i)`` runs the i-th unit: one per task)."""
    from distributed import KilledWorker

    try:
        result.wait_until_finish()
    except KilledWorker as exc:
        task = exc.task
        i = task[1] if isinstance(task, tuple) and len(task) == 2 and isinstance(task[1], int) else None
        what = (
            f"unit {units[i].id} (items {units[i].start}-{units[i].stop - 1})"
            if i is not None and i < len(units)
            else "a unit"
        )
        worker = getattr(exc.last_worker, "address", exc.last_worker)
        raise UnitFailed(
            f"{what} was on a Dask worker that died ({exc.allowed_failures + 1} time(s), the last "
            f"{worker}: killed? out of memory? see the log), more than "
            f"distributed.scheduler.allowed-failures ({exc.allowed_failures}) allows; rerun with "
            "--resume to redo the unfinished units"
        ) from exc
    finally:
        with contextlib.suppress(Exception):  # a cancelled run may have closed it already
            result.client.close()

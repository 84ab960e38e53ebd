"""Run a unit-parallel pipeline on Beam: output-dir checks, resume, progress, counters,
the final merge and the summary."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

import mcie
from mcie import logs, storage
from mcie.exitcodes import RunFailed, UsageError
from mcie.layout import STATS_DIR, BuildLayout
from mcie.records import EditSample
from mcie.runlock import LOCK_NAME, RunLock

from . import dask_runner, dataflow
from .finalize import finalize
from .loopback import bind_local_servers_to_loopback
from .markers import finished_units
from .options import LOCAL_RUNNERS, RunOptions, check_output_dir
from .progress import ProgressReporter
from .units import Unit, check_resume, write_run_manifest

log = logging.getLogger(__name__)


def count_outcome(sample: EditSample) -> None:
    """Beam counters: one per status, one per status and reason (``rejected_background_changed``)."""
    status = sample.status.value
    Metrics.counter("mcie", status).inc()
    if sample.reason:
        Metrics.counter("mcie", f"{status}_{sample.reason}").inc()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=lambda o: o.__dict__))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a unit-parallel pipeline: what :func:`run_pipeline` needs."""

    #: the command, stored in ``run.json`` (a resumed run must be the same command)
    command: str
    #: the output folder (or storage URL)
    out: str
    #: every unit of the run; those already finished in ``out`` are skipped on ``resume``
    units: Sequence[Unit]
    #: the options that decide the output's bytes (a resumed run must match them)
    fingerprint: dict[str, Any]
    #: stored in ``run.json`` for later stages and the card
    meta: dict[str, Any]
    run: RunOptions
    resume: bool
    #: adds the pipeline's transforms for the units to run: ``attach(pipeline, units)``
    attach: Callable[[beam.Pipeline, list[Unit]], Any]
    #: the final step, ``finish(out, meta)`` → the summary (by default the shard set's)
    finish: Callable[[str, dict[str, Any]], dict[str, Any]] = finalize


def run_pipeline(spec: RunSpec) -> dict[str, Any]:
    """Run the units of ``spec`` not yet finished in ``spec.out``, then ``spec.finish``;
    returns its summary plus ``elapsed_s``, ``samples_per_s`` and the Beam ``counters``.
    On Dataflow the run is checked first (:func:`~mcie.pipeline.dataflow.preflight`); with
    ``run.dry_run`` the job's plan (:func:`~mcie.pipeline.dataflow.plan`) is returned instead."""
    run = spec.run
    storage.configure(run.beam_flags())  # e.g. --s3_endpoint_url, for the driver's own reads
    if run.runner == "DataflowRunner":
        if run.dry_run:  # the job graph, built and reported; nothing written or submitted
            return dataflow.plan(spec.command, list(spec.units), run, spec.attach)
        dataflow.preflight(run, spec.out)  # credentials and buckets, before anything is written
    elif run.dry_run:
        raise UsageError("--dry-run is for --runner DataflowRunner")
    check_output_dir(spec.out, spec.resume)
    with RunLock(spec.out, f"{spec.command} run"):  # a second run into ``out`` refuses (exit 1)
        return _run_locked(spec)


def _run_locked(spec: RunSpec) -> dict[str, Any]:
    command, out, units, run, resume = spec.command, spec.out, spec.units, spec.run, spec.resume
    meta = _jsonable(spec.meta)
    manifest = {"command": command, "options": _jsonable(spec.fingerprint), "units": len(units)}
    if resume and not storage.is_empty_folder(out, ignore=(LOCK_NAME,)):
        check_resume(out, manifest)
    else:
        write_run_manifest(out, {**manifest, "meta": meta, "mcie_version": mcie.__version__})
    done = finished_units(out) if resume else set()
    todo = [u for u in units if u.id not in done]
    todo_samples = sum(u.stop - u.start for u in todo)
    t0 = time.monotonic()
    counters: dict[str, int] = {}
    if todo:
        if done:
            log.info("resuming: %d of %d units already done", len(done), len(units))
        stats_dir = BuildLayout(out).folder(STATS_DIR)
        label = f"{command} {storage.basename(out)}"
        reporter = ProgressReporter(stats_dir, len(todo), todo_samples, label, already=done)
        # Beam's log and its workers' output go to a run log, kept in OUT/logs/ on failure
        with logs.run_log(out), reporter if run.progress else _null(), engine(run) as flags:
            p = beam.Pipeline(options=PipelineOptions(flags))
            spec.attach(p, todo)
            result = p.run()
            if run.runner == "dask":
                dask_runner.wait(result, todo)
            else:
                result.wait_until_finish()
        try:
            for c in result.metrics().query()["counters"]:
                counters[c.key.metric.name] = int(c.committed or c.attempted or 0)
        except Exception:  # some runners report no metrics; the index has the counts anyway
            counters = {}
    elapsed = time.monotonic() - t0
    summary = spec.finish(out, meta)
    summary.update(
        elapsed_s=round(elapsed, 2),
        samples_this_run=todo_samples,
        samples_per_s=round(todo_samples / elapsed, 1) if elapsed > 0 else None,
        units_skipped=len(done),
        counters=dict(sorted(counters.items())),
    )
    return summary


@contextlib.contextmanager
def engine(run: RunOptions) -> Iterator[list[str]]:
    """What the run's runner needs around it; yields the Beam flags. A local Dask cluster
    starts and stops here, inside the run log, so its processes' output lands there too."""
    if run.runner == "dask":
        with dask_runner.cluster(run.dask_address, run.workers) as address:
            yield run.beam_flags(address)
        return
    if run.runner in LOCAL_RUNNERS:
        bind_local_servers_to_loopback()  # Beam binds its worker servers to every interface
    yield run.beam_flags()


def check_failures(summary: dict[str, Any], run: RunOptions) -> None:
    """Raise :class:`RunFailed` when the failed share exceeds ``run.max_failed_fraction``.

    Inputs that could not be used (``source_unreadable``, ``source_refused``) are outcomes of
    the data, not of the run: each has its index row and the summary counts them, but they do
    not count against the budget (a folder with junk in it is not a failed run)."""
    source = sum(v for k, v in summary["by_reason"].items() if k.startswith("failed:source_"))
    failed = summary["by_status"].get("failed", 0) - source
    n = max(summary["candidates"] - source, 1)
    if failed / n > run.max_failed_fraction:
        raise RunFailed(
            f"{failed} of {summary['candidates'] - source} candidates failed ({failed / n:.1%}), more than "
            f"--max-failed-fraction {run.max_failed_fraction:.1%}; see the index's error column"
        )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

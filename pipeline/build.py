"""The one unit pipeline: ``mcie build`` (and every stage command) for every backend.

```
backend ──► units ──► Reshuffle ──► UnitFn: items → source → steps, in order ──► sink ──► finalize
```

The pipeline is parallel over units (shard-sized lists of items: sample indices, input files);
inside a unit the steps run fused, a chunk of samples at a time (one sample for the synthetic
backend, so a unit never holds more than one sample's pixels; the whole unit for model steps,
which batch it). Only the units (three integers each) are reshuffled: image bytes never cross
a shuffle. The unit's sink (shards, index part, stats) is written at its end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from mcie.exitcodes import UnitFailed
from mcie.records import EditSample
from mcie.transforms.step import STAGES, Step

from .finalize import finalize
from .options import BuildOptions
from .runner import RunSpec, count_outcome, run_pipeline
from .units import Unit

#: the stage-at-a-time commands' cuts of a backend's steps (the source runs in ``generate``)
CUTS = {
    "build": STAGES,
    "generate": ("source", "plan", "ground", "edit"),
    "annotate": ("annotate",),
    "score": ("score",),
    "shard": (),
}


def select_steps(steps: list[Step], cut: str) -> list[Step]:
    """The steps of ``steps`` that stage command ``cut`` runs, in order."""
    return [s for s in steps if s.stage in CUTS[cut]]


class UnitFn(beam.DoFn):
    """Runs one unit through a cut of its backend's steps and writes it; yields the unit's
    stats (small). ``read(unit, source, policy)`` gives the unit's (sample, truth) pairs (from
    the backend's source, or from a stored record table); ``open_writer(unit)`` the writer
    the samples go to (the shard sink, or a record table)."""

    def __init__(
        self,
        opts: BuildOptions,
        cut: str,
        read: Callable[..., Iterator[tuple[EditSample, dict[str, Any] | None]]],
        open_writer: Callable[[BuildOptions, Unit], Any],
        count: bool,
    ) -> None:
        self.opts, self.cut, self.read, self.open_writer, self.count = opts, cut, read, open_writer, count

    def setup(self) -> None:
        # heavy state once per worker: a model-backed step loads its weights here
        policy = self.opts.run.error_policy
        self.source = self.opts.backend.source() if self.cut in ("build", "generate") else None
        self.steps = select_steps(self.opts.backend.steps(self.opts.thresholds, policy), self.cut)
        for s in [self.source, *self.steps]:
            if s is not None:
                s.setup()
        self.units_done = 0
        self.elapsed = Metrics.distribution("mcie", "unit_ms")

    def process(self, unit: Unit):
        t0 = time.perf_counter()
        current: list[EditSample] = []  # the samples in the steps now, named if one raises
        try:
            stats = self._run_unit(unit, current)
        except Exception as exc:  # one line for the driver: which unit, which sample, what
            raise UnitFailed(describe_failure(self.cut, unit, current, exc)) from exc
        self.elapsed.update(int(1000 * (time.perf_counter() - t0)))
        self.units_done += 1
        if self.opts.run.exit_after_units is not None and self.units_done >= self.opts.run.exit_after_units:
            os._exit(9)  # testing aid: die like kill -9, leaving this unit done and others not
        yield stats

    def _run_unit(self, unit: Unit, current: list[EditSample]) -> dict[str, Any]:
        writer = self.open_writer(self.opts, unit)
        for chunk in _chunks(self.read(self.opts, unit, self.source), self.opts.backend.chunk):
            current[:] = [s for s, _ in chunk]
            samples = run_steps(self.steps, current, self.opts.run.error_policy)
            for s, (_, truth) in zip(samples, chunk, strict=True):
                writer.add(s, truth)  # the sink encodes now; the pixels are not kept
                if self.count:
                    count_outcome(s)
            current.clear()
        return writer.close()


def describe_failure(cut: str, unit: Unit, samples: list[EditSample], exc: BaseException) -> str:
    """``unit 3 (items 600-799) of build, sample 1a2b… (source scene-000601): RuntimeError: …``:
    what the terminal shows when a unit raises (the traceback goes to the run log)."""
    where = f"unit {unit.id} (items {unit.start}-{unit.stop - 1}) of {cut}"
    if samples:
        names = ", ".join(f"{s.key or '?'} (source {s.source_id})" for s in samples[:3])
        more = f" and {len(samples) - 3} more" if len(samples) > 3 else ""
        where += f", sample{'s' if len(samples) > 1 else ''} {names}{more}"
    else:
        where += ", reading its input or writing its output"
    text = " ".join(str(exc).split())  # one line, whatever the exception's text
    return f"{where}: {type(exc).__name__}: {text[:500]}"


def run_steps(steps: list[Step], samples: list[EditSample], policy: str) -> list[EditSample]:
    """``samples`` through ``steps`` in order, each under the error policy."""
    for step in steps:
        samples = step.run(samples, policy)
    return samples


def _chunks(pairs, size: int | None):
    chunk = []
    for pair in pairs:
        chunk.append(pair)
        if size is not None and len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_source(opts: BuildOptions, unit: Unit, source) -> Iterator[tuple[EditSample, dict | None]]:
    """A unit's candidates from the backend's source step, one item at a time."""
    for item in opts.backend.items(unit):
        yield source.run(item, opts.run.error_policy)


def open_shard_writer(opts: BuildOptions, unit: Unit):
    """The shard sink's writer of ``unit`` in ``opts.out``."""
    from .sink import ShardSink

    return ShardSink(opts.out, opts.lossless, opts.run.error_policy).open_unit(unit.id)


def unit_pipeline(p: beam.Pipeline, units: list[Unit], fn: UnitFn):
    """The one wiring: Create(units) → Reshuffle → ParDo(fn); returns the PCollection of unit
    stats. The backend may add resource hints (a GPU on Dataflow)."""
    step = beam.ParDo(fn)
    hints = fn.opts.backend.resource_hints(fn.opts.run)
    if hints:
        step = step.with_resource_hints(**hints)
    return p | "Units" >> beam.Create(units) | "SpreadUnits" >> beam.Reshuffle() | "BuildUnits" >> step


def run_units(
    opts: BuildOptions,
    fn: UnitFn,
    units: list[Unit],
    *,
    command: str,
    fingerprint: dict[str, Any],
    meta: dict[str, Any],
    finish: Callable[[str, dict[str, Any]], dict[str, Any]] = finalize,
) -> dict[str, Any]:
    """Run ``fn`` over ``units`` into ``opts.out`` (a :class:`~mcie.pipeline.runner.RunSpec`
    of ``opts``), then ``finish``; returns the summary."""
    attach = lambda p, todo: unit_pipeline(p, todo, fn)  # noqa: E731
    spec = RunSpec(command, opts.out, units, fingerprint, meta, opts.run, opts.resume, attach, finish)
    return run_pipeline(spec)


def run_build(opts: BuildOptions) -> dict[str, Any]:
    """Run ``mcie build`` with any backend; returns its summary (see
    :func:`mcie.pipeline.runner.run_pipeline`)."""
    backend = opts.backend
    backend.check(opts.run)
    fn = UnitFn(opts, "build", read_source, open_shard_writer, count=True)
    units = backend.units(opts.shard_size)
    return run_units(
        opts, fn, units, command=backend.command, fingerprint=opts.fingerprint(), meta=opts.meta()
    )

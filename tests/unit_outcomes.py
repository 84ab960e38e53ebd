"""The build's unit DoFn with a writer that keeps outcomes instead of files: what a test
asserts on when it runs :class:`~mcie.pipeline.build.UnitFn` on a real Beam runner."""

import apache_beam as beam

from mcie.pipeline.build import UnitFn, read_source


class OutcomeWriter:
    """A unit writer (the sink's interface: ``add``, then ``close``) that keeps each sample's
    ``(source_id, key, status, reason, error)``; ``close`` returns them, so the DoFn yields them."""

    def __init__(self, opts, unit) -> None:
        self.rows = []

    def add(self, s, truth=None) -> None:
        self.rows.append((s.source_id, s.key, s.status.value, s.reason, s.error))

    def close(self):
        return self.rows


def unit_outcomes(p: beam.Pipeline, opts, units) -> beam.PCollection:
    """``opts.backend``'s whole build (source and every step) over ``units`` in ``p``: one
    outcome tuple per candidate, counters counted as in ``mcie build``."""
    fn = UnitFn(opts, "build", read_source, OutcomeWriter, count=True)
    return p | beam.Create(units) | beam.ParDo(fn) | beam.FlatMap(lambda rows: rows)

"""Beam transforms on the real FnApiRunner, checked with assert_that and counters."""

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from unit_outcomes import unit_outcomes

from mcie.pipeline.backends import SyntheticBackend
from mcie.pipeline.build import run_steps
from mcie.pipeline.options import BuildOptions, RunOptions
from mcie.pipeline.units import plan_units
from mcie.transforms.synthetic.generator import SyntheticConfig

OPTS = BuildOptions(
    out="/nonexistent",
    backend=SyntheticBackend(seed=21, synthetic=SyntheticConfig(image_size=64)),
    run=RunOptions(),
)
FLAGS = ["--runner=FnApiRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _units(p, n, shard_size=8):
    return unit_outcomes(p, OPTS, plan_units(n, shard_size))


def _expected(n):
    source, steps = OPTS.backend.source(), OPTS.backend.steps(OPTS.thresholds, "continue")
    made = [run_steps(steps, [source.run(i, "continue")[0]], "continue")[0] for i in range(n)]
    return [(s.key, s.status.value, s.reason) for s in made]


def test_the_unit_dofn_matches_the_steps_in_order_and_counts_outcomes():
    n = 24
    expected = _expected(n)
    p = BeamTestPipeline(runner="FnApiRunner", options=PipelineOptions(FLAGS))
    out = _units(p, n) | beam.Map(lambda r: (r[1], r[2], r[3]))
    assert_that(out, equal_to(expected))
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    accepted = sum(1 for _, st, _ in expected if st == "accepted")
    rejected = sum(1 for _, st, _ in expected if st == "rejected")
    assert 0 < accepted < n and rejected == n - accepted
    assert counters["accepted"] == accepted
    assert counters["rejected"] == rejected
    for reason in {r for _, st, r in expected if st == "rejected"}:
        assert counters[f"rejected_{reason}"] == sum(1 for _, _, r in expected if r == reason)


class _Boom(Exception):
    pass


def _explode_on_odd(sample):
    if sample.provenance["index"] % 2:
        raise _Boom("annotator crashed")
    return sample


def test_a_sample_that_raises_is_failed_with_its_reason_not_dropped(monkeypatch):
    from mcie.transforms.annotate import MaskAnnotator

    real = MaskAnnotator.annotate
    monkeypatch.setattr(MaskAnnotator, "annotate", lambda self, s: real(self, _explode_on_odd(s)))
    p = BeamTestPipeline(runner="FnApiRunner", options=PipelineOptions(FLAGS))
    out = _units(p, 6, shard_size=4) | beam.Map(
        lambda r: (
            int(r[0].rsplit(":", 1)[1]),  # the candidate's index, from its source id
            "failed" if r[2] == "failed" else "ok",
            r[3] if r[2] == "failed" else "",
            r[4],
        )
    )
    expected = [(i, "ok", "", "") for i in (0, 2, 4)] + [
        (i, "failed", "annotate_error", "_Boom: annotator crashed") for i in (1, 3, 5)
    ]
    assert_that(out, equal_to(expected))
    p.run().wait_until_finish()

"""The pixel precheck that runs before a model judge: what it refuses on the synthetic truth
(missed edits, changes outside the masks), that clean candidates pass it, and that a refused
candidate reaches neither the VLM judge nor the filter's thresholds."""

import json

import pytest

from mcie.reasons import Reason, Status
from mcie.transforms.annotate import RegionAnnotator
from mcie.transforms.judge import FilterStep, FilterThresholds
from mcie.transforms.precheck import Precheck, PrecheckConfig, PrecheckStep
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.planner import DEFAULT_EDIT_WEIGHTS, PlanConfig

#: one region per sub-edit, as an inpainting backend plans by default
INPAINT = tuple(
    (t, w)
    for t, w in DEFAULT_EDIT_WEIGHTS.items()
    if t in ("add", "remove", "recolour", "replace", "pattern")
)


def _candidates(failures: FailureConfig, n: int = 30, size: int = 128):
    source = SyntheticSource(
        SyntheticConfig(image_size=size, plan=PlanConfig(edit_weights=INPAINT), failures=failures)
    )
    for i in range(n):
        sample, truth = source.generate(0, i)
        yield RegionAnnotator().annotate(sample), json.loads(truth["failures_json"])


def test_clean_candidates_pass():
    check = Precheck()
    shares = []
    for sample, failures in _candidates(FailureConfig(rate=0.0)):
        assert not failures
        assert check.passes(check.score(sample)), (sample.scores, [s.scores for s in sample.sub_edits])
        assert sample.scores["outside_changed"] == 0.0
        shares += [s.scores["changed_share"] for s in sample.sub_edits]
    assert min(shares) >= PrecheckConfig().min_changed_share and len(shares) >= 60


def test_missed_edits_are_refused_for_their_unchanged_mask():
    check = Precheck()
    refused = 0
    for sample, (f,) in _candidates(FailureConfig(rate=1.0, types=("missed",))):
        assert f["type"] == "missed"
        refused += not check.passes(check.score(sample))
        # every other sub-edit was done: only the missed one's target is unchanged
        low = [k for k, s in enumerate(sample.sub_edits) if s.scores["changed_share"] < 0.05]
        assert low == [f["sub_edit"]], [s.scores for s in sample.sub_edits]
    assert refused == 30


def test_a_drifted_background_is_refused_for_changes_outside_the_masks():
    check = Precheck()
    refused = {"shift": [], "blotch": []}
    for sample, (f,) in _candidates(FailureConfig(rate=1.0, types=("background_drift",)), size=256):
        assert f["type"] == "background_drift"
        score = check.score(sample).scores["outside_changed"]
        refused[f["drift"]].append(score > PrecheckConfig().max_outside_share)
    # a global shift (8-16 levels) moves the whole background; a blotch within the region
    # annotator's search distance (16 px) of a sub-edit joins its mask (the judge's to see)
    assert len(refused["shift"]) == 13 and all(refused["shift"])
    assert sum(refused["blotch"]) == 14 and len(refused["blotch"]) == 17


def test_a_refused_candidate_keeps_its_reason_through_the_filter():
    (sample, _), (clean, _) = list(_candidates(FailureConfig(rate=0.0), n=2))
    sample.tgt = sample.src.copy()  # the editor did nothing
    for s in (sample, clean):
        PrecheckStep().process(s)
    assert sample.status == Status.REJECTED and sample.reason == Reason.PRECHECK_REJECTED.value
    assert [s.scores["changed_share"] for s in sample.sub_edits] == [0.0] * len(sample.sub_edits)
    assert clean.status == Status.CANDIDATE
    # no judge scores: the filter would fail on it, so it leaves it as the precheck did
    assert FilterStep(FilterThresholds()).process(sample).reason == Reason.PRECHECK_REJECTED.value


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="must be in"):
        PrecheckConfig(max_outside_share=2.0)
    with pytest.raises(ValueError, match="diff_tol"):
        PrecheckConfig(diff_tol=-1)


def test_the_vlm_judge_is_not_called_on_a_refused_candidate(tiny_models):
    from mcie.transforms.models.config import load_models_config
    from mcie.transforms.models.steps import ModelSet, ModelStep

    (done, _), (undone, _) = list(_candidates(FailureConfig(rate=0.0), n=2, size=64))
    undone.tgt = undone.src.copy()
    steps = [PrecheckStep(), ModelStep(ModelSet(load_models_config(tiny_models), "raise"), "judge", "score")]
    batch = [done, undone]
    for step in steps:
        batch = step.run(batch, "raise")
    assert batch == [done, undone]
    assert done.provenance["judge"] and 0.0 < done.sub_edits[0].scores["compliance"] < 1.0
    assert "judge" not in undone.provenance and "compliance" not in undone.sub_edits[0].scores
    assert undone.reason == Reason.PRECHECK_REJECTED.value

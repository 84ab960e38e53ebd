import dataclasses

import numpy as np
import pytest

from mcie.images import decode_mask
from mcie.metrics import iou
from mcie.reasons import Reason, Status
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import FilterThresholds, JudgeFilter
from mcie.transforms.synthetic.editor import FAILURE_TYPES, FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge
from mcie.transforms.synthetic.planner import DEFAULT_EDIT_WEIGHTS, PlanConfig

SIZE = 256  # the default; at 128 px a small shape is ~7 px across and a pattern a dot or two


def _scored(source, seed, index, thresholds=None):
    sample, truth = source.generate(seed, index)
    MaskAnnotator().annotate(sample)
    PixelJudge().judge(sample)
    JudgeFilter(thresholds).apply(sample)
    return sample, truth


def _only(edit_type, failures=None, rate=0.0):
    plan = PlanConfig(edit_weights=((edit_type, 1.0),), min_edits=2, max_edits=3)
    fc = FailureConfig(rate=rate, types=failures or ())
    return SyntheticSource(SyntheticConfig(image_size=SIZE, plan=plan, failures=fc))


@pytest.mark.parametrize("edit_type", DEFAULT_EDIT_WEIGHTS)  # opt-in types: their own tests
def test_every_edit_type_clean_gets_its_mask_semantics_and_is_accepted(edit_type):
    source = _only(edit_type)
    n = 0
    for i in range(12):
        sample, truth = _scored(source, 11, i)
        assert truth["num_failures"] == 0
        assert sample.status == Status.ACCEPTED, (sample.reason, [s.scores for s in sample.sub_edits])
        for sub, tm in zip(sample.sub_edits, truth["masks_png"], strict=True):
            assert sub.edit_type == edit_type
            truth_mask = decode_mask(tm)
            assert iou(sub.mask, truth_mask) > 0.95
            # the semantics themselves, checked against what the images show
            changed = (sample.src != sample.tgt).any(axis=-1)
            if edit_type == "remove":
                assert (sub.mask == sub.ground_mask).all()  # the source footprint
            elif edit_type == "add":
                assert sub.ground_mask is None and (sub.mask <= changed).all()  # the target footprint
            else:  # union of source and target footprints
                assert (sub.ground_mask <= sub.mask).all()
            if edit_type in ("move", "resize") and sub.params.get("scale", 2) > 1:
                assert (sub.mask & ~sub.ground_mask).any()  # the new footprint is in
            n += 1
    assert n >= 20


@pytest.mark.parametrize("failure", FAILURE_TYPES)
def test_every_failure_type_is_injected_recorded_and_rejected(failure):
    # a wrong object changes pixels outside every mask too, so either reason is right for it
    reason = Reason.BACKGROUND_CHANGED if failure in ("background_drift", "wrong_object") else None
    source = SyntheticSource(
        SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=1.0, types=(failure,)))
    )
    outcomes = []
    for i in range(30):
        sample, truth = _scored(source, 13, i)
        if truth["num_failures"]:
            assert truth["failure_types"] == [failure]
            k = __import__("json").loads(truth["failures_json"])[0]["sub_edit"]
            if failure != "background_drift":
                assert truth["executed"][k] is False and sum(truth["executed"]) == len(truth["executed"]) - 1
            outcomes.append(sample.reason)
    assert len(outcomes) >= 8  # a wrong object needs a look-alike distractor in the scene
    assert all(o for o in outcomes)  # every injected failure rejected here
    if reason is not None:
        assert reason.value in outcomes
    else:
        assert set(outcomes) == {Reason.SUB_EDIT_NOT_EXECUTED.value}


def test_partial_edits_cover_30_to_70_percent():
    source = SyntheticSource(
        SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=1.0, types=("partial",)))
    )
    for i in range(10):
        sample, truth = source.generate(14, i)
        if truth["num_failures"]:
            f = __import__("json").loads(truth["failures_json"])[0]
            assert 0.3 <= f["fraction"] <= 0.7


def test_drift_magnitude_is_visible():
    source = SyntheticSource(
        SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=1.0, types=("background_drift",)))
    )
    for i in range(10):
        sample, truth = _scored(source, 15, i)
        if '"shift"' in truth["failures_json"]:
            assert sample.scores["bg_l1"] >= 8 / 255 * 0.9  # >= 8 levels on (almost) every channel
        assert sample.reason == Reason.BACKGROUND_CHANGED.value


def test_thresholds_change_the_decision_not_the_scores():
    source = SyntheticSource(
        SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=1.0, types=("background_drift",)))
    )
    sample, _ = _scored(source, 14, 0)
    assert sample.status == Status.REJECTED and sample.reason == "background_changed"
    scores = dict(sample.scores)
    lenient = FilterThresholds(
        bg_ssim_min=0.0, bg_psnr_min=0.0, bg_l1_max=1.0, bg_changed_max=1.0, bg_faint_max=1.0
    )
    JudgeFilter(lenient).apply(sample)
    assert sample.status == Status.ACCEPTED and sample.reason == ""
    assert sample.scores == scores


def test_annotate_refuses_mismatched_images():
    sample, _ = SyntheticSource(SyntheticConfig(image_size=SIZE)).generate(1, 1)
    sample = dataclasses.replace(sample, tgt=sample.tgt[:-8])
    with pytest.raises(ValueError, match="differ in size"):
        MaskAnnotator().annotate(sample)


def test_annotate_reads_no_truth():
    """Masks depend only on the images, the plan and the grounder: scrambling what annotate
    must not read (the provenance) changes nothing."""
    sample, _ = SyntheticSource(SyntheticConfig(image_size=SIZE)).generate(2, 3)
    a = MaskAnnotator().annotate(dataclasses.replace(sample, provenance={}))
    b = MaskAnnotator().annotate(sample)
    for x, y in zip(a.sub_edits, b.sub_edits, strict=True):
        assert (x.mask == y.mask).all()


def test_invalid_configs_list_allowed_values():
    with pytest.raises(ValueError, match="allowed"):
        FailureConfig(types=("melted",))
    with pytest.raises(ValueError, match="multiple of 8"):
        SyntheticConfig(image_size=100)
    with pytest.raises(ValueError, match="allowed"):
        PlanConfig(edit_weights=(("explode", 1.0),))
    assert np.isfinite(SyntheticConfig().overlap_rate)

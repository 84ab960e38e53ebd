import dataclasses

import numpy as np
import pytest

from mcie.images import decode_mask
from mcie.metrics import iou
from mcie.reasons import Reason, Status
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import FilterThresholds, JudgeFilter, PixelJudge
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource

SIZE = 96


def _scored(source, seed, index, thresholds=None):
    sample, truth = source.generate(seed, index)
    MaskAnnotator().annotate(sample)
    PixelJudge().judge(sample)
    JudgeFilter(thresholds).apply(sample)
    return sample, truth


def test_clean_candidates_get_exact_masks_and_are_accepted():
    source = SyntheticSource(SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=0.0)))
    types = set()
    for i in range(30):
        sample, truth = _scored(source, 11, i)
        assert truth["num_failures"] == 0
        assert sample.status == Status.ACCEPTED, (sample.reason, [s.scores for s in sample.sub_edits])
        assert sample.scores["compliance"] == 1.0 and sample.scores["bg_psnr"] == 100.0
        for sub, tm in zip(sample.sub_edits, truth["masks_png"], strict=True):
            types.add(sub.edit_type)
            assert iou(sub.mask, decode_mask(tm)) > 0.97
            assert sub.box is not None
    assert {"add", "remove", "recolour"} <= types


def test_annotate_never_reads_truth_masks_semantics():
    """remove -> source footprint; add -> target footprint; move -> union of both."""
    source = SyntheticSource(SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=0.0)))
    seen = set()
    for i in range(40):
        sample, _ = _scored(source, 12, i)
        for sub in sample.sub_edits:
            if sub.edit_type == "remove":
                assert (sub.mask == sub.ground_mask).all()
            elif sub.edit_type == "add":
                assert sub.ground_mask is None and sub.mask.any()
                # inside the planner's box, and showing the added colour in the target
                x0, y0, x1, y1 = sub.params["box"]
                ys, xs = np.nonzero(sub.mask)
                assert xs.min() >= x0 - 2 and xs.max() < x1 + 2 and ys.min() >= y0 - 2 and ys.max() < y1 + 2
                assert (sample.tgt[sub.mask] == sub.params["rgb"]).all()
            elif sub.edit_type == "move":
                assert (sub.mask & sub.ground_mask).sum() == sub.ground_mask.sum()
                assert sub.mask.sum() > 1.8 * sub.ground_mask.sum()
            seen.add(sub.edit_type)
    assert {"remove", "add", "move"} <= seen


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("missed", Reason.SUB_EDIT_NOT_EXECUTED),
        ("colour_off", Reason.SUB_EDIT_NOT_EXECUTED),
        ("wrong_object", Reason.SUB_EDIT_NOT_EXECUTED),
        ("background_drift", Reason.BACKGROUND_CHANGED),
    ],
)
def test_each_failure_type_is_rejected_with_its_reason(failure, reason):
    source = SyntheticSource(
        SyntheticConfig(image_size=128, failures=FailureConfig(rate=1.0, types=(failure,)))
    )
    outcomes = []
    for i in range(25):
        sample, truth = _scored(source, 13, i)
        if truth["num_failures"]:
            assert truth["failure_types"] == [failure]
            outcomes.append(sample.reason)
    assert len(outcomes) >= 10
    # recall per type on this small set; the audit measures it at scale
    assert sum(o == reason.value for o in outcomes) / len(outcomes) >= 0.85


def test_thresholds_change_the_decision_not_the_scores():
    source = SyntheticSource(
        SyntheticConfig(image_size=SIZE, failures=FailureConfig(rate=1.0, types=("background_drift",)))
    )
    sample, _ = _scored(source, 14, 0)
    assert sample.status == Status.REJECTED and sample.reason == "background_changed"
    scores = dict(sample.scores)
    lenient = FilterThresholds(bg_ssim_min=0.0, bg_psnr_min=0.0, bg_l1_max=1.0, bg_changed_max=1.0)
    JudgeFilter(lenient).apply(sample)
    assert sample.status == Status.ACCEPTED and sample.reason == ""
    assert sample.scores == scores


def test_annotate_refuses_mismatched_images():
    source = SyntheticSource(SyntheticConfig(image_size=SIZE))
    sample, _ = source.generate(1, 1)
    sample = dataclasses.replace(sample, tgt=sample.tgt[:-8])
    with pytest.raises(ValueError, match="differ in size"):
        MaskAnnotator().annotate(sample)


def test_invalid_configs_list_allowed_values():
    with pytest.raises(ValueError, match="allowed"):
        FailureConfig(types=("melted",))
    with pytest.raises(ValueError, match="multiple of 8"):
        SyntheticConfig(image_size=100)

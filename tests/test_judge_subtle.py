"""The pixel judge at 256 px on subtle failures, and on the clean candidates it used to reject
(striped or dotted objects that are small, shrunk patterned objects on textured backgrounds,
objects revealed under a shrunk one)."""

import json

import pytest

from mcie.reasons import Reason, Status
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import JudgeFilter
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge
from mcie.transforms.synthetic.planner import PlanConfig


def _scored(source, seed, index):
    sample, truth = source.generate(seed, index)
    MaskAnnotator().annotate(sample)
    PixelJudge().judge(sample)
    JudgeFilter().apply(sample)
    return sample, truth


@pytest.mark.parametrize(
    "seed,index,edit_type",
    [
        (0, 339, "resize"),  # a striped star shrunk on a textured grey background
        (0, 1270, "resize"),
        (0, 1015, "resize"),  # shrinking reveals the square below
        (0, 605, "pattern"),  # a small square striped -> dotted (tint share 0.35 in a half)
        (1, 1904, "pattern"),  # solid -> striped: a stripe edge passes a pixel diagonal by 0.004 px
        (0, 1149, "add"),  # a small dotted square
        (1, 1173, "add"),
    ],
)
def test_clean_candidates_once_rejected_are_accepted(seed, index, edit_type):
    sample, truth = _scored(SyntheticSource(), seed, index)
    assert truth["num_failures"] == 0
    assert edit_type in [s.edit_type for s in sample.sub_edits]
    assert sample.status == Status.ACCEPTED, [(s.edit_type, s.scores) for s in sample.sub_edits]


@pytest.mark.parametrize(
    "seed,index",
    [(0, 88), (0, 185), (0, 613), (0, 973), (0, 1308), (0, 1577), (0, 1678), (0, 1997)],
)
def test_subtle_partial_patterns_are_rejected(seed, index):
    """65-85% of a pattern edit done: the tint shares of the halves were in range."""
    sample, truth = _scored(
        SyntheticSource(SyntheticConfig(failures=FailureConfig(magnitude="subtle"))), seed, index
    )
    (f,) = json.loads(truth["failures_json"])
    assert f["type"] == "partial" and sample.sub_edits[f["sub_edit"]].edit_type == "pattern"
    assert sample.status == Status.REJECTED and not sample.sub_edits[f["sub_edit"]].executed


def test_a_faint_blotch_is_rejected_for_the_background():
    """A 16-level blotch moves no channel by more than 16 (bg_changed) and is small; bg_faint
    counts it."""
    source = SyntheticSource(SyntheticConfig(failures=FailureConfig(magnitude="subtle")))
    sample, truth = _scored(source, 0, 1110)
    (f,) = json.loads(truth["failures_json"])
    assert (f["type"], f["drift"], f["levels"]) == ("background_drift", "blotch", 16)
    assert sample.scores["bg_changed"] == 0.0 and sample.scores["bg_faint"] > 0.001
    assert sample.reason == Reason.BACKGROUND_CHANGED.value


def test_a_hue_turned_within_the_colour_tolerance_is_rejected():
    """Brown turned by 10 degrees moves 16 levels: every pixel is within colour_tol."""
    source = SyntheticSource(SyntheticConfig(failures=FailureConfig(magnitude="subtle")))
    sample, truth = _scored(source, 0, 588)
    (f,) = json.loads(truth["failures_json"])
    assert f["type"] == "colour_off" and abs(f["hue_degrees"]) == 10.0
    assert sample.status == Status.REJECTED and not sample.sub_edits[f["sub_edit"]].executed


@pytest.mark.parametrize("magnitude", ["standard", "subtle"])
def test_dots_left_on_a_part_of_an_object_made_plain_are_rejected(magnitude):
    """A dotted star made plain, 45% (standard) or 73% (subtle) of it: the dots left on its
    tips lie mostly in the rim, so each slice's agreement stayed above 0.9; the dots' pixels
    a full pixel inside that did not change (22 and 18) show it."""
    source = SyntheticSource(SyntheticConfig(failures=FailureConfig(magnitude=magnitude)))
    sample, truth = _scored(source, 1, 1643)
    (f,) = json.loads(truth["failures_json"])
    sub = sample.sub_edits[f["sub_edit"]]
    assert f["type"] == "partial" and (sub.params["pattern"], sub.params["to_pattern"]) == ("dotted", "solid")
    assert sample.status == Status.REJECTED and not sub.executed


def test_a_tip_left_by_a_removal_is_rejected():
    """83% of a dotted star removed: the tip left is a tenth of its inside (score 0.901), but
    20 pixels still show its colours where a clean removal leaves none."""
    source = SyntheticSource(SyntheticConfig(failures=FailureConfig(magnitude="subtle")))
    sample, truth = _scored(source, 1, 1140)
    (f,) = json.loads(truth["failures_json"])
    sub = sample.sub_edits[f["sub_edit"]]
    assert (f["type"], sub.edit_type) == ("partial", "remove")
    assert sample.status == Status.REJECTED and sub.scores["compliance"] == 0.0


@pytest.mark.parametrize("failure", ["partial", "colour_off", "wrong_object", "background_drift"])
def test_subtle_failures_of_every_type_are_rejected(failure):
    plan = PlanConfig(min_edits=2, max_edits=3)
    fc = FailureConfig(rate=1.0, types=(failure,), magnitude="subtle")
    source = SyntheticSource(SyntheticConfig(plan=plan, failures=fc))
    injected = 0
    for i in range(40 if failure == "wrong_object" else 25):  # a look-alike is rarer
        sample, truth = _scored(source, 31, i)
        if truth["num_failures"]:
            injected += 1
            assert sample.status == Status.REJECTED, (i, [(s.edit_type, s.scores) for s in sample.sub_edits])
    assert injected >= 5


def test_clean_candidates_are_accepted():
    source = SyntheticSource(SyntheticConfig(failures=FailureConfig(rate=0.0)))
    outcomes = [_scored(source, 32, i)[0].status for i in range(40)]
    assert outcomes.count(Status.ACCEPTED) == 40

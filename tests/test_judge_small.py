"""The pixel judge on small objects: the share of perfect edits it passes on the task-ladder
rungs at 32 and 64 px (its ceiling), judged with the true regions as CIE-Bench judges them.
Before the small-object checks it passed 0.44 of the full mix at 32 px and 0.87 of mini-3."""

import numpy as np
import pytest

from mcie.images import decode_mask
from mcie.transforms.synthetic.generator import SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge
from mcie.transforms.synthetic.ladder import task_config


def _ceiling(task: str, size: int, n: int, seed: int = 5) -> tuple[float, dict]:
    source = SyntheticSource(task_config(task, size))
    judge = PixelJudge()
    passed, by_type = [], {}
    for i in range(n):
        sample, truth = source.generate(seed, i)
        for sub, m in zip(sample.sub_edits, truth["masks_png"], strict=True):
            sub.mask = decode_mask(m) > 0
        judge.judge(sample)
        for sub in sample.sub_edits:
            passed.append(bool(sub.executed))
            by_type.setdefault(sub.edit_type, []).append(bool(sub.executed))
    return float(np.mean(passed)), {k: round(float(np.mean(v)), 2) for k, v in by_type.items()}


@pytest.mark.parametrize(
    "task,size,floor",
    [("mini", 32, 0.97), ("mini-3", 32, 0.95), ("full", 32, 0.95), ("mini-3", 64, 0.98), ("full", 64, 0.98)],
)
def test_perfect_edits_pass_on_small_objects(task, size, floor):
    share, by_type = _ceiling(task, size, 40)
    assert share >= floor, by_type


@pytest.fixture(scope="module")
def perfect_full_32():
    """The sub-edits of 150 failure-free full-mix scenes at 32 px, judged with their true masks
    (made once for the tests below)."""
    source = SyntheticSource(task_config("full", 32))
    judge = PixelJudge()
    subs = []
    for i in range(150):
        sample, truth = source.generate(0, i)
        for sub, m in zip(sample.sub_edits, truth["masks_png"], strict=True):
            sub.mask = decode_mask(m) > 0
        judge.judge(sample)
        subs += sample.sub_edits
    return subs


def test_perfect_stripes_pass_on_few_pixel_objects(perfect_full_32):
    """Stripes run along x + y: a clean striped object of a few pixels may hold no stripe on
    one side of a cut along them (asking every half through the centre for a changed pixel
    failed 23 of 45 such edits at 32 px); its fitted stripes are all there."""
    passed = [s.executed for s in perfect_full_32 if s.params.get("to_pattern") == "striped"]
    assert len(passed) >= 20 and all(passed)


def test_perfect_sizes_pass_on_few_pixel_objects(perfect_full_32):
    """A few-pixel object's measured area runs over its drawn one by up to 1.95x (its rim is
    most of it): with the 1.33x bound of larger objects a fifth of the perfect resizes failed
    at 32 px, and a tenth of the replaces and moves."""
    passed = [s.executed for s in perfect_full_32 if s.edit_type in ("add", "move", "replace", "resize")]
    assert len(passed) >= 250 and np.mean(passed) >= 0.97


def test_small_objects_still_fail_when_not_edited():
    """The identity editor (target = source) passes nothing but removals of nothing."""
    source = SyntheticSource(task_config("full", 32))
    judge = PixelJudge()
    passed = []
    for i in range(20):
        sample, truth = source.generate(6, i)
        sample.tgt = sample.src.copy()
        for sub, m in zip(sample.sub_edits, truth["masks_png"], strict=True):
            sub.mask = decode_mask(m) > 0
        judge.judge(sample)
        passed += [bool(s.executed) for s in sample.sub_edits]
        # a shrink left undone is 2.78x its area: over the few-pixel bound (2x) too
        assert not any(s.executed for s in sample.sub_edits if s.edit_type == "resize")
    assert np.mean(passed) <= 0.05

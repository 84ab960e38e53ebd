"""The edit-type registry and the type added through it alone (``swap``)."""

import json
import re

import numpy as np
import pytest

from mcie.images import decode_mask
from mcie.metrics import iou
from mcie.reasons import Reason, Status
from mcie.transforms.annotate import MaskAnnotator
from mcie.transforms.judge import JudgeFilter
from mcie.transforms.synthetic.editor import FailureConfig
from mcie.transforms.synthetic.edits import DEFAULT_EDIT_WEIGHTS, EDIT_TYPES, EDIT_WEIGHTS, edit_type
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.judge import PixelJudge
from mcie.transforms.synthetic.planner import PlanConfig, ScenePlanner, template_count
from mcie.transforms.synthetic.scene import random_scene

BUILT_IN = ("recolour", "remove", "add", "move", "resize", "replace", "pattern")


def test_registry_lists_each_type_once_in_draw_order():
    # the order decides the bytes of every build: the seven built-ins first, as before
    assert EDIT_TYPES[:7] == BUILT_IN and len(set(EDIT_TYPES)) == len(EDIT_TYPES)
    assert tuple(DEFAULT_EDIT_WEIGHTS) == BUILT_IN and "swap" in EDIT_TYPES
    assert DEFAULT_EDIT_WEIGHTS["recolour"] == 2.0 and EDIT_WEIGHTS["swap"] == 1.0
    assert template_count() == 33 and template_count(["swap"]) == 36
    with pytest.raises(ValueError, match="unknown edit type 'melt'; allowed: recolour, remove"):
        PlanConfig(edit_weights=(("melt", 1.0),))


@pytest.mark.parametrize("name", EDIT_TYPES)
def test_every_type_keeps_the_grammar_invariants(name):
    t = edit_type(name)
    assert t.name == name and t.mask_from in ("source", "target", "union") and t.templates
    for template in t.templates:
        # the composer joins sub-instructions with these: a template must not contain them
        assert "," not in template and "." not in template and " and " not in template
        assert re.fullmatch(r"[a-z {}\d_-]+", template)


def _swaps(rate: float, types=("missed", "partial"), size: int = 128):
    plan = PlanConfig(min_edits=1, max_edits=2, edit_weights=(("swap", 1.0),))
    return SyntheticSource(SyntheticConfig(image_size=size, plan=plan, failures=FailureConfig(rate, types)))


def _scored(source, seed, index):
    sample, truth = source.generate(seed, index)
    MaskAnnotator().annotate(sample)
    PixelJudge().judge(sample)
    JudgeFilter().apply(sample)
    return sample, truth


def test_swap_exchanges_two_objects_and_keeps_their_look():
    planner = ScenePlanner(PlanConfig(min_edits=1, max_edits=1, edit_weights=(("swap", 1.0),)))
    rng = np.random.default_rng(3)
    done = 0
    for _ in range(20):
        scene = random_scene(rng, 128, 4, 7)
        try:
            (edit,), text = planner.plan(scene, rng)
        except ValueError:
            continue  # no two isolated objects of different colours
        a, b = scene.objects[edit.target], scene.objects[edit.params["other"]]
        assert a.colour != b.colour and text.startswith("Swap ")
        after = scene.copy()
        edit_type("swap").apply(after.objects, edit, edit.target, None)
        moved_a, moved_b = after.objects[edit.target], after.objects[edit.params["other"]]
        assert (moved_a.cx, moved_a.cy, moved_b.cx, moved_b.cy) == (b.cx, b.cy, a.cx, a.cy)
        assert (moved_a.shape, moved_a.r, moved_b.shape, moved_b.r) == (a.shape, a.r, b.shape, b.r)
        done += 1
    assert done >= 10


def test_clean_swaps_get_their_mask_and_are_accepted():
    source = _swaps(0.0, ())
    ious = []
    for i in range(16):
        sample, truth = _scored(source, 21, i)
        assert sample.status == Status.ACCEPTED, (sample.reason, [s.scores for s in sample.sub_edits])
        for sub, tm in zip(sample.sub_edits, truth["masks_png"], strict=True):
            assert sub.edit_type == "swap" and (sub.ground_mask <= sub.mask).all()  # union semantics
            ious.append(iou(sub.mask, decode_mask(tm)))
            # the mask covers both exchanged places: each holds changed pixels
            changed = (sample.src != sample.tgt).any(axis=-1)
            for key in ("to_box", "other_to_box"):
                x0, y0, x1, y1 = sub.params[key]
                assert (sub.mask & changed)[y0:y1, x0:x1].any()
    assert len(ious) >= 16 and min(ious) > 0.95


@pytest.mark.parametrize("failure", ["missed", "partial"])
def test_swap_failures_are_injected_and_rejected(failure):
    source = _swaps(1.0, (failure,))
    reasons = []
    for i in range(12):
        sample, truth = _scored(source, 22, i)
        assert truth["failure_types"] == [failure]
        k = json.loads(truth["failures_json"])[0]["sub_edit"]
        assert truth["executed"][k] is False
        reasons.append(sample.reason)
    assert set(reasons) <= {Reason.SUB_EDIT_NOT_EXECUTED.value, Reason.MASK_EMPTY.value}
    assert len(reasons) == 12


def test_swap_never_enters_the_default_mix():
    # the default plan draws the seven built-ins only; swap is asked for by name
    source = SyntheticSource(SyntheticConfig(image_size=128))
    seen = set()
    for i in range(30):
        sample, _ = source.generate(5, i)
        seen |= {s.edit_type for s in sample.sub_edits}
    assert "swap" not in seen and len(seen) >= 6


def test_opt_in_types_add_no_words_to_the_model_vocabulary(monkeypatch):
    # MCIE-E1's tokenizer has a whole-word token for every word the grammar can write: a new
    # word would renumber the vocabulary and change every default model's outputs
    from mcie.model.tokenizer import grammar_words
    from mcie.transforms.synthetic import planner

    every = grammar_words()
    defaults = {n: t for n, t in planner.TEMPLATES.items() if n in DEFAULT_EDIT_WEIGHTS}
    monkeypatch.setattr(planner, "TEMPLATES", defaults)
    assert grammar_words() == every and "swap" in every

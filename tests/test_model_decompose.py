"""Decomposers: the synthetic-grammar parser (round-tripped through the planner), JSON files, the
MLLM reply parser and its retries (a function stands in for the VLM; the real tiny VLM is in
test_model_decompose_vlm.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcie.images import encode_png
from mcie.model.decompose import (
    DecompositionError,
    GrammarDecomposer,
    MLLMDecomposer,
    load_decomposition,
    match_template,
    parse_mllm_reply,
    split_complex_instruction,
)
from mcie.transforms.synthetic.planner import PlanConfig, ScenePlanner, compose_instruction
from mcie.transforms.synthetic.scene import random_scene


def _plans(n: int):
    planner = ScenePlanner(PlanConfig(min_edits=2, max_edits=5))
    for i in range(n):
        rng = np.random.default_rng(i)
        try:
            yield planner.plan(random_scene(rng, 96, 3, 7), rng)
        except ValueError:  # crowded scene: the planner refuses, nothing to parse
            continue


def test_parser_inverts_compose_instruction_on_planner_output():
    n, styles = 0, set()
    for edits, text in _plans(150):
        parts = [e.instruction for e in edits]
        assert split_complex_instruction(text) == parts, text
        for e in edits:  # the template matcher recovers every sub-edit's type
            assert match_template(e.instruction)[0] == e.edit_type, e.instruction
        styles.add(
            "first"
            if text.startswith("First")
            else "also"
            if ". Also " in text
            else "semicolon"
            if "; " in text
            else "while"
            if ", while you " in text
            else "list"
        )
        n += 1
    assert n > 100 and styles == {"first", "also", "list", "semicolon", "while"}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_parser_round_trips_every_style(k):
    parts = [f"make the {c} circle blue" for c in ("red", "green", "orange", "pink", "yellow")][:k]
    seen = set()
    for seed in range(40):
        text = compose_instruction(parts, np.random.default_rng(seed))
        seen.add(text)
        assert split_complex_instruction(text) == parts
    assert len(seen) == (5 if k >= 3 else 4)  # every connective style of the grammar


def test_grammar_decomposer_places_adds_in_their_cell():
    d = GrammarDecomposer().decompose(
        "First remove the star, then add a small red circle in the top-right corner,"
        " finally turn the square blue.",
        96,
        60,
    )
    assert [s.edit_type for s in d.subs] == ["remove", "add", "recolour"]
    assert [s.box for s in d.subs] == [None, (64, 0, 96, 20), None]
    assert not d.all_located
    region = d.subs[1].region(60, 96)
    assert region.sum() == 32 * 20 and region[0, 95] == 1 and region[25, 95] == 0


def test_json_decomposition(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 255
    (tmp_path / "m.png").write_bytes(encode_png(mask))
    spec = {
        "instruction": "make the star red and remove the circle",
        "sub_instructions": [
            {"instruction": "make the star red", "box": [0, 0, 10, 4]},
            {"instruction": "remove the circle", "mask": "m.png"},
        ],
    }
    (tmp_path / "d.json").write_text(json.dumps(spec))
    d = load_decomposition(str(tmp_path / "d.json"))
    assert d.all_located and [s.text for s in d.subs] == ["make the star red", "remove the circle"]
    assert d.subs[0].region(20, 30).sum() == 40 and d.subs[1].region(20, 30).sum() == 25
    (tmp_path / "bad.json").write_text(json.dumps({"sub_instructions": [{"box": [1, 2, 3, 4]}]}))
    with pytest.raises(ValueError, match="instruction"):
        load_decomposition(str(tmp_path / "bad.json"))


def test_mllm_decomposer_parses_the_reply_json():
    # The VLM is any callable; here a function stands in for it, so only the parsing is tested.
    def vlm(image, prompt, attempt):
        assert "recolour all" in prompt and "at most 5" in prompt and attempt == 0
        items = [
            '{"instruction": "make it red", "box": [0, 0, 500, 500], "mask": "/etc/x"}',
            '{"instruction": "swap corners", "box": [1000, 1000, 250, 500.5]}',
            '{"instruction": "clip me", "box": [-50, 900, 1200, 2000]}',
            '{"instruction": " add a cat "}',
        ]
        return 'Sure: {"sub_instructions": [' + ", ".join(items) + "]} Hope that helps {:"

    d = MLLMDecomposer(vlm).decompose("recolour all", np.zeros((16, 32, 3), np.uint8))
    assert d.instruction == "recolour all"
    assert [s.text for s in d.subs] == ["make it red", "swap corners", "clip me", "add a cat"]
    # 0-1000 coordinates → pixels of the 32x16 image (floor / ceil), clipped, corners sorted
    assert [s.box for s in d.subs] == [(0, 0, 16, 8), (8, 8, 32, 16), (0, 14, 32, 16), None]
    assert d.subs[0].mask is None and not d.all_located


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ("I cannot help with that.", "no JSON object"),
        ("{sub_instructions: 1}", "not valid JSON"),
        ('{"sub_instructions": []}', "non-empty"),
        ('{"sub_instructions": [{"instruction": "1 2 3"}]}', "words"),
        ('{"sub_instructions": [{"instruction": "a", "box": [1, 2, 3]}]}', "numbers"),
        ('{"sub_instructions": [{"instruction": "a", "box": [10, 0, 10, 900]}]}', "covers no pixel"),
    ],
)
def test_mllm_reply_errors_say_what_is_wrong(reply, needle):
    with pytest.raises(DecompositionError, match=needle):
        parse_mllm_reply(reply, 64, 48)


def test_mllm_decomposer_retries_then_fails_on_garbage():
    calls = []

    def garbage(image, prompt, attempt):
        calls.append(attempt)
        return "As an AI model I would rather paint it myself."

    with pytest.raises(DecompositionError, match=r"3 VLM attempt.*no JSON object.*As an AI model"):
        MLLMDecomposer(garbage, retries=2).decompose("make it red", np.zeros((8, 8, 3), np.uint8))
    assert calls == [0, 1, 2]

    replies = ["not json", '{"sub_instructions":[{"instruction":"a","box":[0,0,0,0]}]}',
               '{"sub_instructions":[{"instruction":"make it red","box":[0,0,1000,1000]}]}']  # fmt: skip
    dec = MLLMDecomposer(lambda image, prompt, attempt: replies[attempt], retries=2)
    d = dec.decompose("make it red", np.zeros((8, 8, 3), np.uint8))
    assert dec.attempts == 3 and d.subs[0].box == (0, 0, 8, 8)
    with pytest.raises(ValueError, match="retries"):
        MLLMDecomposer(garbage, retries=-1)

"""Failure magnitude as a knob of the synthetic backend, recorded in the truth, and the audit's
recall against magnitude (per failure type and as detection curves), in the report and card."""

import json

import numpy as np
import pytest

from mcie.audit import CURVES, failure_strength, magnitude_figures
from mcie.cli import main
from mcie.transforms.synthetic.editor import COLOUR_FAMILY, MAGNITUDES, FailureConfig
from mcie.transforms.synthetic.generator import SyntheticConfig, SyntheticSource
from mcie.transforms.synthetic.scene import COLOURS


def _failures(failure: str, magnitude: str, n: int = 40, seed: int = 21) -> list[dict]:
    fc = FailureConfig(rate=1.0, types=(failure,), magnitude=magnitude)
    source = SyntheticSource(SyntheticConfig(image_size=128, failures=fc))
    out = []
    for i in range(n):
        _, truth = source.generate(seed, i)
        out += json.loads(truth["failures_json"])
    return out


@pytest.mark.parametrize("magnitude", ["standard", "subtle"])
def test_magnitudes_are_drawn_from_their_ranges_and_recorded(magnitude):
    mag = MAGNITUDES[magnitude]
    hues = [abs(f["hue_degrees"]) for f in _failures("colour_off", magnitude)]
    done = [f["fraction"] for f in _failures("partial", magnitude)]
    drift = _failures("background_drift", magnitude)
    assert len(hues) >= 10 and len(done) >= 10 and len(drift) >= 10
    assert mag.hue_degrees[0] <= min(hues) and max(hues) <= mag.hue_degrees[1] + 0.05
    assert mag.partial_done[0] <= min(done) and max(done) <= mag.partial_done[1] + 0.001
    for f in drift:
        lo, hi = mag.shift_levels if f["drift"] == "shift" else mag.blotch_levels
        assert lo <= f["levels"] <= hi
        assert f["magnitude"] == magnitude


def test_subtle_wrong_object_shares_shape_and_colour_family():
    fc = FailureConfig(rate=1.0, types=("wrong_object",), magnitude="subtle")
    source = SyntheticSource(SyntheticConfig(image_size=128, failures=fc))
    seen = 0
    for i in range(60):
        scene, edits, _, truth = source.generate_with_scene(22, i)
        for f in json.loads(truth["failures_json"]):
            t, d = scene.objects[edits[f["sub_edit"]].target], scene.objects[f["distractor"]]
            assert t.shape == d.shape and COLOUR_FAMILY[t.colour] == COLOUR_FAMILY[d.colour]
            assert f["same_colour"] == (t.colour == d.colour)
            seen += 1
    assert seen >= 3
    assert set(COLOUR_FAMILY) == set(COLOURS)


def test_standard_magnitude_keeps_the_images_of_before():
    """The knob's default draws the same random numbers as before it existed: a fixed sample's
    target pixels are pinned."""
    sample, truth = SyntheticSource(SyntheticConfig(image_size=64)).generate(0, 3)
    plain, _ = SyntheticSource(
        SyntheticConfig(image_size=64, failures=FailureConfig(magnitude="standard"))
    ).generate(0, 3)
    assert np.array_equal(sample.tgt, plain.tgt)
    assert sample.key == plain.key


def test_unknown_magnitude_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: standard, subtle"):
        FailureConfig(magnitude="gross")


def test_magnitude_figures_bin_recall_by_strength():
    truth = [
        {
            "key": "a",
            "failures_json": json.dumps(
                [{"type": "colour_off", "hue_degrees": -12.0, "magnitude": "subtle"}]
            ),
        },
        {
            "key": "b",
            "failures_json": json.dumps([{"type": "colour_off", "hue_degrees": 13.0, "magnitude": "subtle"}]),
        },
        {"key": "c", "failures_json": json.dumps([{"type": "colour_off", "hue_degrees": 40.0}])},
        {"key": "d", "failures_json": json.dumps([{"type": "missed", "magnitude": "subtle"}])},
        {"key": "e", "failures_json": "[]"},
        {"key": "f", "failures_json": json.dumps([{"type": "missed"}])},  # failed: left out
    ]
    rejected = {"a": True, "b": False, "c": True, "d": True, "e": False}
    fig = magnitude_figures(truth, rejected)
    assert fig["recall_by_magnitude"] == {
        "colour_off": {
            "standard": {"positives": 1, "recall": 1.0},
            "subtle": {"positives": 2, "recall": 0.5},
        },
        "missed": {"subtle": {"positives": 1, "recall": 1.0}},
    }
    bins = fig["detection_curves"]["colour_off"]["bins"]
    assert [(b["low"], b["high"], b["positives"], b["recall"]) for b in bins] == [
        (10, 14, 2, 0.5),
        (38, 45, 1, 1.0),
    ]
    assert failure_strength({"type": "partial", "fraction": 0.8}) == ("partial", 0.2)
    assert failure_strength({"type": "background_drift", "drift": "shift", "levels": 5})[0] in CURVES
    assert failure_strength({"type": "wrong_object"}) is None


def test_subtle_build_audit_report_and_card_show_recall_by_magnitude(tmp_path, capsys):
    out = str(tmp_path / "b")
    args = ["build", "--out", out, "--samples", "40", "--image-size", "128", "--failure-rate", "0.6"]
    assert main([*args, "--failure-magnitude", "subtle", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["audit", out, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_mag = report["recall_by_magnitude"]
    assert by_mag and all(set(v) == {"subtle"} for v in by_mag.values())
    positives = sum(x["positives"] for v in by_mag.values() for x in v.values())
    assert positives == sum(report["positives_by_failure"].values())
    assert report["detection_curves"]
    card = (tmp_path / "b" / "README.md").read_text()
    assert "Recall by failure type and magnitude:" in card and " subtle " in card
    assert main(["report", out, "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Detection curves: recall against failure strength" in html
    assert "filter recall by failure type and magnitude" in html


def test_build_refuses_an_unknown_magnitude(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", "--out", str(tmp_path / "x"), "--failure-magnitude", "huge"])
    assert exc.value.code == 1
    assert "invalid choice: 'huge' (choose from 'standard', 'subtle')" in capsys.readouterr().err

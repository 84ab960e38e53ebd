"""``mcie calibrate``: the judge against simulated reviewers of known accuracy on a synthetic
build (verdicts written into the index as ``mcie ls import`` writes them), the thresholds file
it writes, and that file changing what ``mcie build`` / ``mcie score`` accept."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mcie.calibrate import cohen_kappa, threshold_for, with_intervals
from mcie.cli import main
from mcie.records import EditSample, SubEdit
from mcie.tables import read_table
from mcie.transforms.judge import FilterThresholds, JudgeFilter

ACCURACY = 0.85  # each simulated reviewer's chance of calling a candidate right
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    """``benchmarks/bench_calibrate.py``: the simulated reviewers' one home."""
    spec = importlib.util.spec_from_file_location(
        "bench_calibrate", os.path.join(ROOT, "benchmarks", "bench_calibrate.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cal") / "b")
    args = ["build", "--out", out, "--samples", "160", "--image-size", "128", "--failure-rate", "0.4"]
    assert main([*args, "--no-progress"]) == 0
    _bench().simulate_reviews(out, ACCURACY, seed=0)
    return out


def test_calibrate_recovers_the_simulated_reviewer_accuracy(reviewed, capsys):
    capsys.readouterr()
    assert main(["calibrate", reviewed, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    s = r["samples"]
    # the judge agrees with the truth on (almost) every candidate here, so its agreement with
    # the reviewers is theirs with the truth: the simulated accuracy must lie in the interval
    lo, hi = s["accuracy"]["ci95"]
    assert lo <= ACCURACY <= hi, s
    assert hi - lo < 0.2
    assert s["n"] >= 140  # all but disagreements (ties of two reviewers)
    assert 0.4 < s["kappa"]["value"] < 0.85
    # two reviewers on every third task: their agreement is about q^2 + (1-q)^2 = 0.745
    (pair,) = r["reviewer_agreement"]
    assert pair["reviewers"] == ["1", "2"] and pair["tasks"] >= 40
    assert 0.55 <= pair["agreement"] <= 0.92
    # each reviewer's own verdicts against the judge (right on every candidate here): their
    # simulated accuracy itself, reviewer 1 on every task, reviewer 2 on every third
    one, two = r["reviewer_vs_judge"]
    assert (one["reviewer"], one["tasks"], two["reviewer"]) == ("1", 160, "2") and two["tasks"] >= 50
    lo, hi = one["agreement"]["ci95"]
    assert lo <= ACCURACY <= hi and hi - lo < 0.15, one
    sub = r["sub_edits"]
    assert sub["n"] > s["n"] and sub["precision"]["value"] is not None
    # the chosen threshold and what it costs
    t = s["at_target"]
    assert t["threshold"] is None or t["precision"] >= 0.95
    with open(r["thresholds_file"]) as f:
        written = json.load(f)
    assert written == r["thresholds"] and written["bg_faint_max"] == FilterThresholds().bg_faint_max
    assert json.loads(Path(reviewed, "calibration.json").read_text())["samples"]["n"] == s["n"]
    # the figures in the card (its filter paragraph renewed in place) and in the report
    card = Path(reviewed, "README.md").read_text()
    assert f"The judge against the reviewers (`mcie calibrate`, {s['n']} reviewed samples" in card
    assert card.count("Recall by failure type and magnitude:") == 1
    assert main(["report", reviewed, "--no-audit", "--out", str(Path(reviewed, "r.html"))]) == 0
    html = Path(reviewed, "r.html").read_text()
    assert "The judge against the reviewers" in html and f"<td>{s['n']}</td>" in html
    assert f"<td>{one['agreement']['value']} {one['agreement']['ci95']}</td>" in html


def test_thresholds_file_changes_what_build_and_score_accept(reviewed, tmp_path, capsys):
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"min_sub_score": 1.01}))  # no sub-edit scores above 1
    base = ["build", "--samples", "30", "--image-size", "128", "--no-progress", "--json"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--out", str(tmp_path / "strict"), "--thresholds", str(strict)]) == 0
    judged = json.loads(capsys.readouterr().out)
    assert plain["by_status"].get("accepted", 0) > 0
    assert judged["by_status"] == {"rejected": 30}
    # the file calibrate writes is read back as the same thresholds
    assert main(["calibrate", reviewed]) == 0
    assert FilterThresholds.from_file(f"{reviewed}/thresholds.json") == FilterThresholds(
        **json.loads(Path(reviewed, "thresholds.json").read_text())
    )


def test_the_thresholds_calibrate_writes_change_what_score_accepts(reviewed, tmp_path, capsys):
    """At a precision the reviewers reach with no threshold at all, the threshold chosen is
    the lowest sub-instruction score: ``mcie score`` with the file ``mcie calibrate`` wrote
    accepts candidates the judge's own calls rejected (a sub-instruction below 0.9, the
    background untouched), and rejects no other."""
    written = str(tmp_path / "t.json")
    capsys.readouterr()
    argv = ["calibrate", reviewed, "--target-precision", "0.5", "--thresholds-out", written, "--json"]
    assert main(argv) == 0
    at = json.loads(capsys.readouterr().out)["samples"]["at_target"]
    assert json.loads(Path(written).read_text())["min_sub_score"] == at["threshold"] < 0.9
    t = str(tmp_path)
    gen = ["--samples", "40", "--image-size", "128", "--failure-rate", "0.4", "--no-progress"]
    assert main(["generate", "--out", f"{t}/t0", *gen]) == 0
    assert main(["annotate", f"{t}/t0", "--out", f"{t}/t1", "--no-progress"]) == 0
    assert main(["score", f"{t}/t1", "--out", f"{t}/own", "--no-progress"]) == 0
    assert main(["score", f"{t}/t1", "--out", f"{t}/cal", "--no-progress", "--thresholds", written]) == 0

    def statuses(d):
        rows = read_table(f"{d}/part-000000.parquet", columns=["key", "status", "reason"]).to_pylist()
        return {r["key"]: (r["status"], r["reason"]) for r in rows}

    own, cal = statuses(f"{t}/own"), statuses(f"{t}/cal")
    assert own.keys() == cal.keys() and len(own) == 40
    changed = {k for k in own if own[k] != cal[k]}
    assert changed and all(
        own[k] == ("rejected", "sub_edit_not_executed") and cal[k][0] == "accepted" for k in changed
    )


def test_min_sub_score_decides_on_scores_not_on_executed():
    sub = SubEdit("recolour", "make it red", "it", "circle", {}, executed=False, scores={"compliance": 0.6})
    mask = np.ones((8, 8), dtype=bool)
    sub.mask = mask
    scores = {"compliance": 0.0, "bg_ssim": 1.0, "bg_psnr": 100.0, "bg_l1": 0.0, "bg_changed": 0.0}
    sample = EditSample("k", "s", "h", None, None, "make it red", [sub], scores=scores)
    assert JudgeFilter(FilterThresholds(min_compliance=0.0)).decide(sample) == (True, None)
    assert JudgeFilter(FilterThresholds()).decide(sample)[0] is False
    assert JudgeFilter(FilterThresholds(min_compliance=0.0, min_sub_score=0.5)).decide(sample) == (True, None)
    assert JudgeFilter(FilterThresholds(min_compliance=0.0, min_sub_score=0.7)).decide(sample)[0] is False
    # the sample's compliance (the judge's calls: 0.0) does not overrule the calibrated bound
    assert JudgeFilter(FilterThresholds(min_sub_score=0.5)).decide(sample) == (True, None)


def test_figures_and_threshold_by_hand():
    judge = np.array([True, True, True, False, False, True])
    human = np.array([True, True, False, False, True, True])
    r = with_intervals(judge, human, 200, 0)
    assert r["precision"]["value"] == 0.75 and r["recall"]["value"] == 0.75
    assert r["accuracy"]["value"] == round(4 / 6, 4)
    # kappa: po 4/6, pe (4/6)(4/6) + (2/6)(2/6) = 5/9 -> (2/3 - 5/9) / (4/9) = 0.25
    assert r["kappa"]["value"] == 0.25
    assert cohen_kappa(np.array([True, True]), np.array([True, True])) is None
    scores = np.array([0.95, 0.9, 0.5, 0.2, 0.3, 1.0])
    t = threshold_for(scores, human, 0.95)
    assert t == {"threshold": 0.9, "precision": 1.0, "recall": 0.75}


def test_bad_thresholds_file_is_refused_with_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"min_sub_scor": 0.5}))
    with pytest.raises(ValueError, match=r"unknown fields \['min_sub_scor'\]; allowed: \['bg_changed_max'"):
        FilterThresholds.from_file(str(bad))
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="not JSON"):
        FilterThresholds.from_file(str(bad))
    bad.write_text(json.dumps({"bg_ssim_min": 3}))
    with pytest.raises(ValueError, match="must be in"):
        FilterThresholds.from_file(str(bad))
    out = str(tmp_path / "b")
    assert main(["build", "--out", out, "--samples", "2", "--thresholds", str(bad)]) == 1
    assert "thresholds file" in capsys.readouterr().err


def test_calibrate_without_reviews_is_a_usage_error(tmp_path, capsys):
    out = str(tmp_path / "b")
    assert main(["build", "--out", out, "--samples", "4", "--image-size", "64", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["calibrate", out]) == 1
    assert "no reviewed candidates" in capsys.readouterr().err

"""Training sets are MCIE builds: the task-ladder rungs are options of `mcie build`, and a scene
that cannot hold its plan never ends a run."""

import json
import os

import pyarrow.parquet as pq
import pytest

from mcie.cli import main
from mcie.transforms.synthetic import generator
from mcie.transforms.synthetic.edits import EDIT_TYPES
from mcie.transforms.synthetic.ladder import ladder_config, task_config


def test_build_task_mini_is_the_rung_with_failures_judge_and_filter(tmp_path, capsys):
    out = str(tmp_path / "mini")
    argv = ["build", "--out", out, "--task", "mini", "--image-size", "32", "--samples", "60"]
    assert main([*argv, "--seed", "3", "--lossless", "--shard-size", "30", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    index = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    assert len(index) == 60 and summary["candidates"] == 60
    assert {r["num_sub_edits"] for r in index} == {2}
    assert {t for r in index for t in r["edit_types"]} == {"recolour"}
    truth = pq.read_table(os.path.join(out, "truth.parquet")).to_pylist()
    injected = {r["key"] for r in truth if r["num_failures"]}
    assert 5 <= len(injected) <= 35  # the build's default rate, 0.3, applies to a rung too
    rejected = {r["key"] for r in index if r["status"] == "rejected"}
    assert injected <= rejected  # the judge catches every injected failure here
    with open(os.path.join(out, "run.json")) as fh:
        synthetic = json.load(fh)["options"]["synthetic"]
    assert synthetic["image_size"] == 32 and synthetic["object_scale"] == 2.4
    assert synthetic["failures"]["rate"] == 0.3


def test_ladder_config_keeps_the_default_build_and_applies_overrides():
    from mcie.transforms.synthetic.editor import FailureConfig
    from mcie.transforms.synthetic.generator import SyntheticConfig

    # no task: exactly the configuration `mcie build` always had (the same bytes)
    assert ladder_config(None, 256, failure_rate=0.3) == SyntheticConfig(
        image_size=256, failures=FailureConfig(rate=0.3)
    )
    cfg = ladder_config("mini-3", 64, edit_types=["remove", "add"], min_edits=3, object_scale=1.5)
    assert [t for t, _ in cfg.plan.edit_weights] == [t for t in EDIT_TYPES if t in ("add", "remove")]
    assert (cfg.plan.min_edits, cfg.plan.max_edits, cfg.object_scale) == (3, 3, 1.5)
    assert cfg.failures.rate == 0.0 and task_config("mini-3", 64).max_objects == cfg.max_objects


def test_a_crowded_scene_is_redrawn_from_its_seed_and_index():
    # (1, 4751) and (2, 2990): mini scenes at 32 px whose plan fitted none of the first 5 draws
    # (then the whole `bench train-set` run aborted); now a later draw of the same stream fits
    src = generator.SyntheticSource(task_config("mini", 32))
    for seed, index in ((1, 4751), (2, 2990)):
        a, _ = src.generate(seed, index)
        b, _ = src.generate(seed, index)
        assert a.key == b.key and len(a.sub_edits) == 2


@pytest.mark.slow
def test_a_scene_that_never_fits_is_a_failed_row_not_an_abort(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generator, "REDRAWS", 1)  # as if no draw of these ever fitted
    out = str(tmp_path / "b")
    argv = ["build", "--out", out, "--task", "mini", "--image-size", "32", "--samples", "3000"]
    code = main([*argv, "--seed", "1", "--shard-size", "1000", "--max-failed-fraction", "0.5"])
    assert code == 0
    index = pq.read_table(os.path.join(out, "index.parquet"), columns=["status", "error"]).to_pylist()
    failed = [r for r in index if r["status"] == "failed"]
    assert len(index) == 3000 and failed
    assert all("scene too crowded" in r["error"] for r in failed)

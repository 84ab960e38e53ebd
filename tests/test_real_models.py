"""Real-model backends with tiny random-weight models built offline (``mcie models tiny``):
models file, each handler (loading from a local dir, batching, parsing, shapes, compositing),
RunInference, and Dataflow option checks. The end-to-end builds are in test_real_build.py."""

from __future__ import annotations

import json
import os
import pathlib

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from mcie.exitcodes import UsageError
from mcie.pipeline.backends import check_dataflow
from mcie.pipeline.options import RunOptions
from mcie.reasons import Status
from mcie.records import EditSample, SubEdit
from mcie.transforms.judge import Judge
from mcie.transforms.models.config import load_models_config
from mcie.transforms.models.handlers import EditorHandler, GrounderHandler, JudgeHandler, PlannerHandler
from mcie.transforms.models.vlm import RegexConstraint
from mcie.transforms.models.vlm_planner import PlanError, PlannerConfig, parse_plan, plan_pattern

GOOD = (
    '{"edits":[{"type":"recolour","target":"the red cup","instruction":"make the cup blue",'
    '"box":[100,200,300,400]},{"type":"add","target":"a small dog","instruction":"add a dog",'
    '"box":[500,500,200,100]}],"instruction":"Make the cup blue and add a small dog."}'
)


def photo(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], -1)
    return np.clip(base + rng.integers(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def sample(seed: int, subs: list[SubEdit] | None = None) -> EditSample:
    return EditSample(
        key=f"k{seed:019d}",
        source_id=f"img{seed}",
        source_hash=f"{seed:032x}",
        src=photo(seed),
        tgt=None,
        instruction="Make the cup blue and add a small dog.",
        sub_edits=subs or [],
    )


def planned(seed: int) -> EditSample:
    return sample(seed, parse_plan(GOOD, 64, 48, PlannerConfig())[1])


@pytest.fixture(scope="module")
def models(tiny_models):
    return load_models_config(tiny_models)


# -- models file ---------------------------------------------------------------------------
def test_models_file(tiny_models, tmp_path, models):
    assert models.planner.model.endswith("vlm") and os.path.isdir(models.planner.model)
    assert models.grounder.sam.endswith("sam") and models.editor.options["steps"] == 2
    assert not models.uses_gpu()
    bad = tmp_path / "bad.yaml"
    for text, needle in (
        ("planner: {model: x}\n", "lacks stages"),
        ("planr: {}\n", "unknown sections"),
        (pathlib.Path(tiny_models).read_text().replace("dtype: float32", "dtype: float8", 1), "dtype"),
    ):
        bad.write_text(text)
        with pytest.raises(UsageError, match=needle):
            load_models_config(str(bad))
    bad.write_text(pathlib.Path(tiny_models).read_text().replace("steps: 2", "stepz: 2"))
    with pytest.raises(UsageError, match="unknown options.*allowed"):
        EditorHandler(load_models_config(str(bad)).editor)


# -- planner -------------------------------------------------------------------------------
def test_parse_good_plan():
    instruction, subs = parse_plan(GOOD, 64, 48, PlannerConfig())
    assert instruction == "Make the cup blue and add a small dog."
    assert [s.edit_type for s in subs] == ["recolour", "add"]
    assert subs[0].params == {"plan_box": [6, 10, 26, 29]}  # x, y, w, h in 0-1000 → pixels
    assert subs[1].params == {"box": [32, 24, 45, 29]} and subs[1].target_phrase == "a small dog"


@pytest.mark.parametrize(
    "text, why",
    [
        ("not json at all", "not JSON"),
        ('{"edits":[],"instruction":"x"}', "list of 2-5"),
        ("[1, 2]", "exactly the keys"),
        (GOOD.replace('"type":"add"', '"type":"explode"'), "not in"),
        (GOOD.replace('"a small dog"', '"%%%"'), "word"),
        (GOOD.replace("[500,500,200,100]", "[500,500,0,100]"), "empty"),
        (GOOD.replace("[100,200,300,400]", '[100,200,"3",400]'), "4 integers"),
        (GOOD.replace('"box":[500,500,200,100]', '"bbox":[1,2,3,4]'), "keys"),
    ],
)
def test_parse_malformed_plan(text, why):
    with pytest.raises(PlanError, match=why):
        parse_plan(text, 64, 48, PlannerConfig())


def test_plan_grammar_accepts_good_and_refuses_wrong_shape(models):
    from transformers import AutoTokenizer

    c = RegexConstraint(plan_pattern(PlannerConfig()), AutoTokenizer.from_pretrained(models.planner.model))
    assert c.complete(GOOD)
    assert c.allows(GOOD[:50]) and not c.complete(GOOD[:50])
    assert not c.allows('{"edits":{') and not c.allows('{"plan":')  # wrong shapes: never generated
    assert not c.allows(GOOD.replace('"type":"add"', '"type":"move"'))  # move not in default types


def test_planner_handler_batches_and_keeps_raw_text(models):
    handler = PlannerHandler(models.planner)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 4
    planner = handler.load_model()  # from the local dir, through from_pretrained
    samples = [sample(i) for i in range(6)]  # 6 > batch size 4: two batches
    out = list(handler.run_inference(samples, planner))
    assert len(out) == 6
    statuses = {s.status for s in out}
    assert statuses <= {Status.CANDIDATE, Status.FAILED}
    for s in out:
        if s.status == Status.FAILED:
            assert s.reason == "plan_invalid" and "raw model text: {" in s.error
        else:
            assert 2 <= len(s.sub_edits) <= 3 and s.instruction
    # whatever a random model writes under the grammar stays on it (valid so far), even when cut off
    for s in out:
        if s.status == Status.FAILED:
            raw = s.error.split("raw model text: ", 1)[1]
            assert planner.constraint.allows(raw)


def test_sampled_plans_do_not_depend_on_the_batch(models):
    """Per-row seeds: an image's plan is the same alone or batched with others (so the
    shard size and worker count do not change the data)."""
    planner = PlannerHandler(models.planner).load_model()
    imgs = [photo(0), photo(1, 48, 56), photo(2)]
    together = planner.plan(imgs, [11, 22, 33])
    alone = [planner.plan([im], [sd])[0] for im, sd in zip(imgs, [11, 22, 33], strict=True)]
    assert [a.raw for a in together] == [b.raw for b in alone]
    assert len({a.raw for a in together}) == 3  # and different images/seeds get different plans


def test_unconstrained_random_model_fails_with_raw_text(models):
    planner = PlannerHandler(models.planner).load_model()
    planner.config = PlannerConfig(constraint="none", max_new_tokens=40, retries=1)
    planner.constraint = None
    results = planner.plan([photo(1), photo(2)])
    assert [r.ok for r in results] == [False, False]
    assert all(r.raw and r.attempts == 2 and r.error for r in results)


# -- grounder ------------------------------------------------------------------------------
def test_grounder_masks_and_boxes(models):
    handler = GrounderHandler(models.grounder)
    grounder = handler.load_model()
    samples = [planned(i) for i in range(3)]
    samples[2].src = photo(2, 40, 56)  # another size in the same batch
    handler.run_inference(samples, grounder)
    for s in samples:
        h, w = s.src.shape[:2]
        rec, add = s.sub_edits
        assert rec.ground_mask.shape == (h, w) and rec.ground_mask.dtype == bool and rec.ground_mask.any()
        x0, y0, x1, y1 = rec.ground_box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0.0 <= rec.scores["ground"] <= 1.0
        assert add.ground_mask is None and add.ground_box is None  # nothing to find for "add"
    dets = grounder.detect([photo(0)], [["a cup", "a dog"]])
    assert len(dets[0]) == 2 and len(dets[0][0]) == 16  # 16 patches of the tiny OWLv2
    assert all(0 <= b[0][2] <= 64 and 0 <= b[0][3] <= 48 for b in dets[0][0])


# -- editor --------------------------------------------------------------------------------
def test_editor_composites_inside_dilated_masks_only(models):
    handler = EditorHandler(models.editor)
    editor = handler.load_model()
    samples = [planned(i) for i in range(3)]
    for s in samples:
        s.sub_edits[0].ground_mask = np.zeros((48, 64), bool)
        s.sub_edits[0].ground_mask[10:20, 8:24] = True
    handler.run_inference(samples, editor)
    for s in samples:
        assert s.tgt.shape == s.src.shape and s.tgt.dtype == np.uint8
        union = np.zeros((48, 64), bool)
        for e in s.sub_edits:
            assert e.mask.shape == (48, 64) and e.box is not None and "seed" in e.params
            union |= e.mask
        assert (s.tgt[~union] == s.src[~union]).all()  # every background pixel is the source's
        assert (s.tgt[union] != s.src[union]).any()  # and the edit changed something
        # the mask is the grounded region dilated by `dilate` (8 px): grown, not shifted
        assert s.sub_edits[0].mask[10:20, 8:24].all() and s.sub_edits[0].box == (0, 2, 32, 28)
    again = [planned(0)]
    again[0].sub_edits[0].ground_mask = samples[0].sub_edits[0].ground_mask.copy()
    again[0].sub_edits[0].ground_mask[:] = False
    again[0].sub_edits[0].ground_mask[10:20, 8:24] = True
    handler.run_inference(again, editor)
    assert (again[0].tgt == samples[0].tgt).all()  # seeds from the key: reproducible


# -- judge ---------------------------------------------------------------------------------
def test_judge_scores(models):
    handler = JudgeHandler(models.judge)
    judge = handler.load_model()
    assert isinstance(judge, Judge)
    samples = [planned(i) for i in range(3)]
    for s in samples:
        s.tgt = s.src.copy()
        s.tgt[0:8, 0:8] = 255
        for e in s.sub_edits:
            e.mask = np.zeros((48, 64), bool)
            e.mask[0:8, 0:8] = True
    handler.run_inference(samples, judge)
    for s in samples:
        for e in s.sub_edits:
            assert 0.0 < e.scores["compliance"] < 1.0 and e.executed == (e.scores["compliance"] >= 0.5)
        assert s.scores["bg_l1"] == 0.0 and s.scores["bg_ssim"] == 1.0  # outside the masks: untouched
        assert 0.0 < s.scores["quality"] < 1.0
        assert s.scores["compliance"] == np.mean([e.executed for e in s.sub_edits])


def test_batch_error_fails_only_the_bad_sample(models):
    handler = JudgeHandler(models.judge)
    judge = handler.load_model()
    good, bad = planned(0), planned(1)
    good.tgt = good.src.copy()
    for e in good.sub_edits:
        e.mask = np.zeros((48, 64), bool)
    bad.tgt = None  # cannot be judged
    handler.run_inference([good, bad], judge)
    assert good.status == Status.CANDIDATE and "quality" in good.scores
    assert bad.status == Status.FAILED and bad.reason == "score_error" and "no images" in bad.error


# -- Beam ----------------------------------------------------------------------------------
def test_run_inference_with_grounder_handler(models):
    samples = [planned(i) for i in range(3)]

    def check(out):
        assert sorted(s.key for s in out) == sorted(s.key for s in samples)
        assert all(
            s.sub_edits[0].ground_mask is not None and s.sub_edits[0].ground_mask.shape == (48, 64)
            for s in out
        )

    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(samples) | RunInference(GrounderHandler(models.grounder))
        assert_that(out, check)


def test_dataflow_options_are_checked():
    with pytest.raises(UsageError, match="--project.*--region.*--temp_location.*--sdk_container_image"):
        check_dataflow(RunOptions(runner="DataflowRunner"))
    flags = ("--project=p", "--region=r", "--temp_location=gs://mcie-b/t", "--sdk_container_image=img")
    check_dataflow(RunOptions(runner="DataflowRunner", beam_args=flags))
    with pytest.raises(UsageError, match="max_num_workers"):
        check_dataflow(RunOptions(runner="DataflowRunner", beam_args=flags, workers=4))
    check_dataflow(RunOptions())  # local runner: nothing to check


def test_tiny_dir_has_every_family(tiny_models):
    root = os.path.dirname(tiny_models)
    for d in ("vlm", "vlm-judge", "owlv2", "sam", "inpaint", "instruct-pix2pix"):
        assert os.path.isdir(os.path.join(root, d))
    with open(os.path.join(root, "instruct-pix2pix", "unet", "config.json")) as fh:
        assert json.load(fh)["in_channels"] == 8
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(os.path.join(root, "instruct-pix2pix"))
    pipe.set_progress_bar_config(disable=True)
    from PIL import Image

    out = pipe(
        "make it blue", image=Image.fromarray(photo(0, 32, 32)), num_inference_steps=2, output_type="np"
    )
    assert out.images.shape == (1, 32, 32, 3)


def test_bake_weights_rewrites_hub_names(tmp_path, tiny_models):
    """The worker-image helper: hub names become folders, local folders stay (no download here:
    the downloader is injected)."""
    import importlib.util

    import yaml

    root = os.path.join(os.path.dirname(__file__), "..", "docker", "bake_weights.py")
    spec = importlib.util.spec_from_file_location("bake_weights", root)
    bake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bake)
    src = tmp_path / "models.yaml"
    cfg = yaml.safe_load(pathlib.Path(tiny_models).read_text())
    cfg["planner"]["model"] = cfg["judge"]["model"] = "example-org/vlm-7b-instruct"
    src.write_text(yaml.safe_dump(cfg))
    calls = []
    out = bake.bake(str(src), str(tmp_path / "baked"), download=lambda r, d: calls.append((r, d)))
    assert calls == [
        ("example-org/vlm-7b-instruct", str(tmp_path / "baked" / "example-org--vlm-7b-instruct"))
    ]
    assert out["planner"]["model"] == out["judge"]["model"] == calls[0][1]
    assert out["grounder"]["sam"] == cfg["grounder"]["sam"]  # a local folder is kept
    assert yaml.safe_load((tmp_path / "baked" / "models.yaml").read_text()) == out

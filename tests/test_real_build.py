"""``mcie build --models`` end to end, offline, with the tiny models of ``mcie models tiny``.

Outcome steering, said plainly: a random model cannot be asked for a given outcome, so the
tiny models.yaml sets knobs that make the sample photos split the way a real run does —
short grammar strings and at most 3 edits so plans finish within ``max_new_tokens``; sampling
seeded per image so each photo gets its own plan (the strict parse fails some: a box under
``min_box_area``; failed, raw text kept); and a judge
``yes_bias`` centring the random judge's P(yes) near its ``executed_min`` of 0.5 so some
sub-edits count as executed and some not. Every stage runs for real on every sample.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from awkward import make_awkward_folder
from PIL import Image

from mcie.cli import main
from mcie.transforms.sources.images import sample_photo_paths

FLAGS = ["--image-size", "64", "--shard-size", "4", "--no-progress", "--max-failed-fraction", "1"]


@pytest.fixture(scope="module")
def real_out(tiny_models, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("real") / "out")
    assert main(["build", "--models", tiny_models, "--out", out, *FLAGS]) == 0
    return out


def index(out: str) -> list[dict]:
    return pq.read_table(os.path.join(out, "index.parquet")).to_pylist()


def test_sample_photos_end_to_end(real_out):
    rows = index(real_out)
    assert sorted(r["source_id"] for r in rows) == sorted(sample_photo_paths())
    by = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r)
    assert len(by.get("accepted", [])) >= 1
    assert any(r["reason"] == "sub_edit_not_executed" for r in by.get("rejected", []))
    failed = [r for r in by.get("failed", []) if r["reason"] == "plan_invalid"]
    assert failed and all('raw model text: {"edits":[' in r["error"] for r in failed)
    for r in by["accepted"] + by["rejected"]:
        assert 2 <= r["num_sub_edits"] <= 3 and r["instruction"]
        assert r["bg_l1"] == 0.0  # background is the source's, bit for bit (before JPEG)
        assert all(0 < c < 1 for c in r["sub_compliance"])
    with open(os.path.join(real_out, "run.json")) as fh:
        run = json.load(fh)
    assert run["command"] == "build-real" and run["meta"]["models"]["planner"]["model"].endswith("vlm")


def test_shard_members_match_the_json(real_out):
    rows = {r["key"]: r for r in index(real_out)}
    seen = 0
    for d in ("shards", "rejected"):
        for name in sorted(os.listdir(os.path.join(real_out, d))):
            with tarfile.open(os.path.join(real_out, d, name)) as tf:
                members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
            for key in {n.split(".", 1)[0] for n in members}:
                meta = json.loads(members[f"{key}.json"])
                src = np.asarray(Image.open(io.BytesIO(members[f"{key}.src.jpg"])))
                assert meta["status"] == rows[key]["status"] and meta["width"] == src.shape[1]
                for k, sub in enumerate(meta["sub_edits"]):
                    mask = np.asarray(Image.open(io.BytesIO(members[f"{key}.mask{k}.png"])))
                    assert mask.shape == src.shape[:2] and set(np.unique(mask)) <= {0, 255}
                    assert "seed" in sub["params"]
                assert f"{key}.mask{len(meta['sub_edits'])}.png" not in members
                assert meta["provenance"]["planner"] == "vlm-planner-v1"
                assert meta["provenance"]["editor"] == "inpaint-editor-v1"
                seen += 1
    assert seen == sum(1 for r in rows.values() if r["status"] in ("accepted", "rejected"))


def test_awkward_folder_accounts_for_every_file(tiny_models, tmp_path):
    d = str(tmp_path / "awkward")
    expected = make_awkward_folder(d)
    out = str(tmp_path / "out")
    assert main(["build", "--models", tiny_models, "--images", d, "--out", out, *FLAGS]) == 0
    rows = {r["source_id"]: r for r in index(out)}
    assert sorted(rows) == sorted(expected)  # every input file has its row
    for path, want in expected.items():
        r = rows[path]
        if want == "ok":  # readable: it went through the models (any outcome but a source failure)
            assert not r["reason"].startswith("source_"), (path, r["reason"], r["error"])
        else:
            assert (r["status"], r["reason"]) == ("failed", want), (path, r["status"], r["reason"])
            assert r["error"]


def test_usage_errors(tiny_models, tmp_path):
    out = str(tmp_path / "o")
    assert main(["build", "--models", str(tmp_path / "missing.yaml"), "--out", out]) == 1
    assert main(["build", "--models", tiny_models, "--images", str(tmp_path / "nothing"), "--out", out]) == 1
    dataflow = ["build", "--models", tiny_models, "--out", out, "--runner", "DataflowRunner", "--no-progress"]
    assert main(dataflow) == 1


def _make(tiny_models, paths, models=None):
    """The unit pipeline's steps over ``paths`` as one chunk, outside Beam."""
    from mcie.pipeline.backends import ModelsBackend
    from mcie.pipeline.build import run_steps
    from mcie.transforms.judge import FilterThresholds
    from mcie.transforms.sources.images import ImageSourceConfig

    backend = ModelsBackend(
        models=tiny_models, inputs=tuple(paths), source_config=ImageSourceConfig(short_side=64), parsed=models
    )
    source, steps = backend.source(), backend.steps(FilterThresholds(), "continue")
    for st in steps:
        st.setup()
    return run_steps(steps, [source.run(p, "continue")[0] for p in paths], "continue")


def test_best_of_n_keeps_the_best_candidate(tiny_models):
    """editor.candidates = 2: each sample is edited twice (other seeds) and the candidate the
    judge ranks best is kept, so it never ranks below the single-candidate result."""
    import dataclasses

    from mcie.transforms.models.config import load_models_config
    from mcie.transforms.models.steps import rank

    models = load_models_config(tiny_models)
    paths = sample_photo_paths()
    one = _make(tiny_models, paths, models)
    editor2 = dataclasses.replace(models.editor, options={**models.editor.options, "candidates": 2})
    two = _make(tiny_models, paths, dataclasses.replace(models, editor=editor2))
    assert [s.key for s in one] == [s.key for s in two]
    edited = [(a, b) for a, b in zip(one, two, strict=True) if b.tgt is not None]
    assert edited
    for a, b in edited:
        assert b.provenance["candidates"] == 2 and b.provenance["candidate"] in (0, 1)
        assert rank(b) >= rank(a)
        seeds = [e.params["seed"] for e in b.sub_edits]
        if b.provenance["candidate"] == 1:
            assert seeds != [e.params["seed"] for e in a.sub_edits]


def test_broken_inputs_do_not_fail_the_run_but_model_failures_do(tiny_models, tmp_path):
    """Unusable input files are data outcomes (each in the index with its reason) and leave the
    exit code 0 under the default --max-failed-fraction; plan failures count against it."""
    d = tmp_path / "junk"
    d.mkdir()
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    out = str(tmp_path / "out")
    base = ["build", "--models", tiny_models, "--image-size", "64", "--no-progress"]
    assert main([*base, "--images", str(d), "--out", out]) == 0
    assert sorted(r["reason"] for r in index(out)) == ["source_unreadable", "source_unreadable"]
    # the sample photos: some plans of the random planner fail → over the default 1% budget
    assert main([*base, "--out", str(tmp_path / "out2")]) == 2


def test_same_data_whatever_the_units_and_workers(real_out, tiny_models, tmp_path):
    """Seeds come from each image (planner) and each key (editor), so another shard size and
    two worker processes give the same candidates, outcomes and scores."""
    out = str(tmp_path / "w2")
    flags = [f if f != "4" else "2" for f in FLAGS]  # --shard-size 2
    assert main(["build", "--models", tiny_models, "--out", out, "--workers", "2", *flags]) == 0
    cols = ["key", "status", "reason", "error", "instruction", "sub_compliance", "compliance", "bg_ssim"]
    a = pq.read_table(os.path.join(real_out, "index.parquet"), columns=cols).to_pylist()
    b = pq.read_table(os.path.join(out, "index.parquet"), columns=cols).to_pylist()
    assert a == b


def test_stage_commands_give_the_same_bytes_as_build(real_out, tiny_models, tmp_path):
    """generate | annotate | score | shard over record tables = the fused build, byte for byte."""
    import filecmp

    t = str(tmp_path)
    assert main(["generate", "--models", tiny_models, "--out", f"{t}/t0", *FLAGS]) == 0
    stage_flags = ["--no-progress", "--max-failed-fraction", "1"]
    assert main(["annotate", "--in", f"{t}/t0", "--out", f"{t}/t1", *stage_flags]) == 0
    assert main(["score", "--in", f"{t}/t1", "--out", f"{t}/t2", *stage_flags]) == 0
    assert main(["shard", "--in", f"{t}/t2", "--out", f"{t}/out", *stage_flags]) == 0
    tars = sorted(
        os.path.join(d, n) for d in ("shards", "rejected") for n in os.listdir(os.path.join(real_out, d))
    )
    assert tars
    for rel in ["index.parquet", "shards.json", "rejected.json", "README.md", *tars]:
        assert filecmp.cmp(os.path.join(real_out, rel), os.path.join(t, "out", rel), shallow=False), rel
    assert not os.path.exists(os.path.join(t, "out", "truth.parquet"))  # no truth for real inputs


def test_unit_dofn_on_fnapi_runner(tiny_models):
    """The build's unit DoFn on FnApiRunner, two photos to a unit (the model steps batch a
    unit); the outcomes equal those of the steps run over all three photos at once."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from unit_outcomes import unit_outcomes

    from mcie.pipeline.backends import ModelsBackend
    from mcie.pipeline.options import BuildOptions
    from mcie.transforms.sources.images import ImageSourceConfig

    paths = sample_photo_paths()[:3]
    expected = [(s.key, s.status.value, s.reason) for s in _make(tiny_models, paths)]
    backend = ModelsBackend(
        models=tiny_models, inputs=tuple(paths), source_config=ImageSourceConfig(short_side=64)
    )
    opts = BuildOptions(out="unused", backend=backend)
    with TestPipeline(runner="FnApiRunner") as p:
        out = unit_outcomes(p, opts, backend.units(2)) | beam.Map(lambda r: r[1:4])
        assert_that(out, equal_to(expected))

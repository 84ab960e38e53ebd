"""mcie build end to end through the CLI: shards, index, determinism, stages, audit, exit codes."""

import filecmp
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import wids
from conftest import SMALL, build

from mcie.cli import main
from mcie.transforms.annotate import MaskAnnotator

OUTPUTS = ("index.parquet", "truth.parquet", "shards.json", "rejected.json", "README.md")


def _tars(out):
    return sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "*", "*.tar")))


def _assert_same_bytes(a, b):
    assert _tars(a) == _tars(b) and _tars(a)
    for rel in [*OUTPUTS, *_tars(a)]:
        assert filecmp.cmp(os.path.join(a, rel), os.path.join(b, rel), shallow=False), rel


def test_one_and_two_workers_give_identical_bytes(built, built_two_workers):
    _assert_same_bytes(built, built_two_workers)


def test_index_has_every_candidate_sorted(built):
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    assert len(index) == 60
    keys = [r["key"] for r in index]
    assert keys == sorted(keys) and len(set(keys)) == 60
    assert {r["status"] for r in index} == {"accepted", "rejected"}
    for r in index:
        assert r["num_sub_edits"] == len(r["edit_types"]) and 2 <= r["num_sub_edits"] <= 5
        assert r["shard"].startswith("shards/" if r["status"] == "accepted" else "rejected/")
        assert bool(r["reason"]) == (r["status"] == "rejected")
        assert r["source_id"].startswith("synthetic:5:") and len(r["source_hash"]) == 32
    truth = pq.read_table(os.path.join(built, "truth.parquet"))
    assert sorted(truth.column("key").to_pylist()) == keys  # truth kept apart, same keys
    assert "failure_types" not in pq.read_schema(os.path.join(built, "index.parquet")).names


def _check_sample(src, tgt, meta, masks):
    assert src.size == tgt.size
    assert len(masks) == len(meta["sub_edits"]) >= 2
    for m in masks:
        assert m.size == src.size
        values = set(np.unique(np.asarray(m.convert("L"))))
        assert values == {0, 255}  # binary, and no accepted sample has an empty mask


def test_shards_read_back_with_webdataset(built):
    urls = sorted(glob.glob(os.path.join(built, "shards", "*.tar")))
    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil")
    n = 0
    for sample in ds:
        meta = sample["json"]
        masks = [sample[f"mask{k}.png"] for k in range(len(meta["sub_edits"]))]
        _check_sample(sample["src.jpg"], sample["tgt.jpg"], meta, masks)
        assert meta["key"] == sample["__key__"] and meta["status"] == "accepted"
        n += 1
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    assert n == sum(r["status"] == "accepted" for r in index)


def test_shards_read_back_with_wids(built, tmp_path):
    ds = wids.ShardListDataset(os.path.join(built, "shards.json"), cache_dir=str(tmp_path / "wids"))
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    assert len(ds) == sum(r["status"] == "accepted" for r in index)
    keys = set()
    for i in range(len(ds)):
        s = ds[i]
        meta = json.loads(s[".json"].read()) if hasattr(s[".json"], "read") else s[".json"]
        masks = [s[f".mask{k}.png"] for k in range(len(meta["sub_edits"]))]
        _check_sample(s[".src.jpg"], s[".tgt.jpg"], meta, masks)
        keys.add(s["__key__"])
    assert len(keys) == len(ds)


def test_audit_json_reports_figures(built, capsys):
    assert main(["audit", built, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["candidates"] == 60
    c = report["confusion"]
    assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == 60
    assert report["filter_precision"] == round(c["tp"] / (c["tp"] + c["fp"]), 4)
    assert report["filter_recall"] == round(c["tp"] / (c["tp"] + c["fn"]), 4)
    assert 0.9 <= report["mask_miou"] <= 1.0
    assert report["mask_count"] > 2 * c["tn"]


def test_audit_finds_a_broken_shard(built, tmp_path, capsys):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(built, copy)
    tar = os.path.join(copy, "shards", "mcie-000001.tar")
    with open(tar, "r+b") as fh:
        fh.truncate(os.path.getsize(tar) // 3)
    assert main(["audit", copy, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any("mcie-000001" in p for p in report["problems"])


def test_stages_alone_give_the_same_output_as_build(built, tmp_path):
    t = str(tmp_path)
    assert main(["generate", "--out", f"{t}/t0", *SMALL]) == 0
    assert main(["annotate", "--in", f"{t}/t0", "--out", f"{t}/t1", "--no-progress"]) == 0
    assert main(["score", "--in", f"{t}/t1", "--out", f"{t}/t2", "--no-progress"]) == 0
    assert main(["shard", "--in", f"{t}/t2", "--out", f"{t}/out", "--no-progress"]) == 0
    _assert_same_bytes(built, f"{t}/out")
    # re-scoring with other thresholds needs no regeneration and changes the decisions
    assert (
        main(
            [
                "score",
                "--in",
                f"{t}/t1",
                "--out",
                f"{t}/t2b",
                "--no-progress",
                "--bg-psnr-min",
                "0",
                "--bg-ssim-min",
                "0",
                "--bg-l1-max",
                "1",
                "--bg-changed-max",
                "1",
                "--bg-faint-max",
                "1",
            ]
        )
        == 0
    )
    assert main(["shard", "--in", f"{t}/t2b", "--out", f"{t}/outb", "--no-progress"]) == 0
    before = pq.read_table(f"{t}/out/index.parquet").to_pylist()
    after = pq.read_table(f"{t}/outb/index.parquet").to_pylist()
    assert [r["key"] for r in before] == [r["key"] for r in after]
    assert not any(r["reason"] == "background_changed" for r in after)
    assert sum(r["status"] == "accepted" for r in after) > sum(r["status"] == "accepted" for r in before)


def test_usage_errors_exit_1(built, tmp_path, capsys):
    assert build(built) == 1  # non-empty output refused without --resume
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["build", "--out", str(tmp_path / "x"), "--no-such-flag"])
    assert e.value.code == 1
    assert main(["build", "--out", str(tmp_path / "y"), "--samples", "0"]) == 1
    assert main(["build", "--out", str(tmp_path / "z"), "--image-size", "100", "--no-progress"]) == 1
    assert main(["audit", str(tmp_path / "missing")]) == 1
    assert main(["annotate", "--in", str(tmp_path / "missing"), "--out", str(tmp_path / "w")]) == 1


def test_failures_are_recorded_and_fail_the_run_past_the_budget(tmp_path, monkeypatch):
    def boom(self, sample):
        if sample.provenance["index"] % 3 == 0:
            raise RuntimeError("detector out of memory")
        return real(self, sample)

    real = MaskAnnotator.annotate
    monkeypatch.setattr(MaskAnnotator, "annotate", boom)
    out = str(tmp_path / "f")
    assert build(out, "--workers", "1") == 2  # 20 of 60 failed > 1%
    index = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    failed = [r for r in index if r["status"] == "failed"]
    assert len(index) == 60 and len(failed) == 20
    assert {r["reason"] for r in failed} == {"annotate_error"}
    assert {r["error"] for r in failed} == {"RuntimeError: detector out of memory"}
    assert all(r["shard"] is None for r in failed)
    out2 = str(tmp_path / "g")
    assert build(out2, "--workers", "1", "--max-failed-fraction", "0.5") == 0
    assert build(str(tmp_path / "h"), "--workers", "1", "--error-policy", "raise") == 2


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_bytes(built, tmp_path):
    out = str(tmp_path / "r")
    cmd = [sys.executable, "-m", "mcie.cli", "build", "--out", out, *SMALL, "--workers", "1"]
    killed = subprocess.run([*cmd, "--debug-exit-after-units", "1"], capture_output=True, text=True)
    assert killed.returncode == 9
    assert len(glob.glob(os.path.join(out, "stats", "*.json"))) == 1
    assert not os.path.exists(os.path.join(out, "index.parquet"))
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "units skipped (resumed): 1" in resumed.stdout
    _assert_same_bytes(built, out)
    other = subprocess.run(
        [*cmd[:-2], "--workers", "1", "--seed", "6", "--resume"], capture_output=True, text=True
    )
    assert other.returncode == 1 and "options differ" in other.stderr


def test_preview_contact_sheet_and_card(built, tmp_path):
    from PIL import Image

    png = str(tmp_path / "sheet.png")
    assert main(["preview", built, "--png", png, "--n", "6"]) == 0
    from mcie.report.sheet import GAP, HEADER

    with Image.open(png) as im:
        # 4 columns of (source | target) pairs, 2 rows for 6 samples, each under its headers
        assert im.width == GAP + 4 * (2 * 256 + GAP + 2 * GAP)
        assert im.height > 2 * (HEADER + 256)
    with open(os.path.join(built, "README.md")) as fh:
        card = fh.read()
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    accepted = sum(r["status"] == "accepted" for r in index)
    assert f"| accepted | {accepted} |" in card
    assert "type/token ratio" in card and "sub-instruction templates" in card
    assert main(["preview", str(tmp_path)]) == 1  # no shards there: a usage error


def test_presets_and_explicit_flags():
    from mcie.cli import build_parser
    from mcie.pipeline.cli import build_options

    def opts(*argv):
        return build_options(build_parser().parse_args(["build", "--out", "/tmp/never-written", *argv]))

    def size(*argv):
        o = opts(*argv)
        return o.backend.samples, o.shard_size

    assert size("--preset", "mcie") == (90000, 1000)
    assert size("--preset", "demo") == (1200, 200)
    assert size("--preset", "mcie", "--samples", "10")[0] == 10  # a flag wins over the preset
    assert size() == (1000, 500)


def test_edit_types_restrict_the_plan(tmp_path, capsys):
    out = str(tmp_path / "recolour")
    argv = ["build", "--out", out, "--samples", "24", "--image-size", "64", "--no-progress"]
    assert main([*argv, "--edit-types", "recolour,remove"]) == 0
    types = {t for row in pq.read_table(os.path.join(out, "index.parquet")).column("edit_types").to_pylist()
             for t in row}  # fmt: skip
    assert types == {"recolour", "remove"}
    with open(os.path.join(out, "run.json")) as fh:
        assert json.load(fh)["meta"]["edit_types"] == ["recolour", "remove"]
    assert main(["build", "--out", str(tmp_path / "bad"), "--samples", "2", "--edit-types", "recolor"]) == 1
    assert "unknown or no edit types ['recolor']" in capsys.readouterr().err

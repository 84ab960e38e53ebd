"""CIE-Bench: sets, the exact checker, background metrics, editors, reports, compare."""

import glob
import json
import os

import numpy as np
import pytest

from mcie.bench.metrics import score_set
from mcie.bench.sets import load_bench
from mcie.cli import main
from mcie.metrics import masked_psnr, masked_ssim


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bench") / "b")
    assert main(["bench", "build", "--out", out, "--sets", "28", "--image-size", "128", "--seed", "3"]) == 0
    return out


def _run(bench, editor, tmp):
    out = str(tmp / editor.replace(":", "_"))
    assert main(["bench", "run", "--bench", bench, "--editor", editor, "--out", out]) == 0
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    with open(os.path.join(out, "samples.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    return out, summary, rows


def test_sets_are_stratified(bench):
    rows = load_bench(bench)
    assert [r["set_id"] for r in rows] == list(range(28))
    assert {r["num_sub_edits"] for r in rows} == {2, 3, 4, 5}
    assert sum(r["num_sub_edits"] == 2 for r in rows) == 7
    types = {t for r in rows for t in r["edit_types"]}
    assert types == {"add", "remove", "recolour", "move", "resize", "replace", "pattern"}
    for r in rows:
        assert len(r["regions_png"]) == r["num_sub_edits"] == len(r["sub_instructions"])


def test_identity_oracle_and_corrupt(bench, tmp_path):
    _, ident, _ = _run(bench, "identity", tmp_path)
    assert ident["instruction_compliance"] <= 0.05 and ident["all_executed_rate"] == 0.0
    assert (
        ident["background_ssim"] == 1.0
        and ident["background_psnr"] == 100.0
        and ident["background_l1"] == 0.0
    )
    _, oracle, _ = _run(bench, "oracle", tmp_path)
    assert oracle["instruction_compliance"] == 1.0 and oracle["all_executed_rate"] == 1.0
    assert oracle["background_psnr"] == 100.0 and oracle["l1"] == 0.0
    out, corrupt, rows = _run(bench, "corrupt:0.7", tmp_path)
    known = [e for r in rows for e in r["known_executed"]]
    assert [e for r in rows for e in r["executed_exact"]] == known  # the exact checker: the known outcomes
    assert corrupt["ic_exact"] == pytest.approx(
        np.mean([np.mean(r["known_executed"]) for r in rows]), abs=1e-4
    )
    # the pixel judge (the headline checker): no failed sub-instruction passes, and it agrees
    # with the known outcome on nearly all (one resize under a drifted background differs)
    judged = [e for r in rows for e in r["executed"]]
    assert all(k for j, k in zip(judged, known, strict=True) if j)
    assert np.mean(np.array(judged) == np.array(known)) >= 0.95
    assert {r["checker"] for r in rows} == {"pixel-judge"} and corrupt["checker"] == "pixel-judge"
    assert corrupt["sub_instruction_compliance"] == pytest.approx(np.mean(judged), abs=1e-4)
    assert 0.3 < corrupt["instruction_compliance"] < 1.0
    for name in (
        "summary.md",
        "summary.csv",
        "compliance_by_num_sub_edits.png",
        "compliance_by_edit_type.png",
        "contact.png",
    ):
        assert os.path.getsize(os.path.join(out, name)) > 100
    assert set(corrupt["by_num_sub_edits"]) == {"2", "3", "4", "5"}
    assert corrupt["lpips"] is None  # not available here; never faked
    cmp_dir = str(tmp_path / "cmp")
    assert (
        main(
            ["bench", "compare", str(tmp_path / "identity"), str(tmp_path / "oracle"), out, "--out", cmp_dir]
        )
        == 0
    )
    with open(os.path.join(cmp_dir, "comparison.md")) as fh:
        table = fh.read()
    assert "| identity | 28 | 0.0" in table and "| oracle | 28 | 1.0" in table


def test_background_metrics_ignore_every_pixel_inside_the_regions():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), dtype=bool)
    region[10:30, 20:50] = True
    out = src.copy()
    out[region] = 255 - out[region]  # change only pixels inside the region
    s = score_set(src, out, out, [region])
    assert s["background_ssim"] == 1.0 and s["background_psnr"] == 100.0 and s["background_l1"] == 0.0
    out[0, 0] = 255 - out[0, 0]  # one pixel outside
    assert score_set(src, out, out, [region])["background_psnr"] < 100.0


def _reference_ssim(a, b, bg):
    """Independent SSIM: explicit 7x7 windows, sample covariance, skimage's constants."""

    def y(img):
        return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, z = y(a), y(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    h, w = x.shape
    for i in range(3, h - 3):
        for j in range(3, w - 3):
            if not bg[i - 3 : i + 4, j - 3 : j + 4].all():
                continue
            p, q = x[i - 3 : i + 4, j - 3 : j + 4].ravel(), z[i - 3 : i + 4, j - 3 : j + 4].ravel()
            mp, mq = p.mean(), q.mean()
            vp, vq = p.var(ddof=1), q.var(ddof=1)
            cov = ((p - mp) * (q - mq)).sum() / (len(p) - 1)
            vals.append(((2 * mp * mq + c1) * (2 * cov + c2)) / ((mp**2 + mq**2 + c1) * (vp + vq + c2)))
    return float(np.mean(vals))


def test_ssim_and_psnr_agree_with_independent_implementations():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    bg = np.ones((40, 48), dtype=bool)
    bg[5:15, 10:30] = False
    assert masked_ssim(a, b, bg) == pytest.approx(_reference_ssim(a, b, bg), abs=1e-9)
    mse = ((a[bg].astype(float) - b[bg].astype(float)) ** 2).mean()
    assert masked_psnr(a, b, bg) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)


def test_bench_usage_errors(bench, tmp_path):
    assert (
        main(["bench", "run", "--bench", str(tmp_path), "--editor", "identity", "--out", str(tmp_path / "r")])
        == 1
    )
    assert main(["bench", "run", "--bench", bench, "--editor", "nonsense", "--out", str(tmp_path / "s")]) == 1
    assert main(["bench", "build", "--out", bench]) == 1  # already a benchmark


def test_held_out_split_and_overlap_refusal(built, tmp_path):
    out = str(tmp_path / "real")
    assert main(["bench", "build", "--out", out, "--from", built, "--holdout", "0.5"]) == 0
    rows = load_bench(out)
    # a synthetic build's hold-out says so (it was once labelled "real")
    assert 0 < len(rows) < 60 and {r["kind"] for r in rows} == {"synthetic"}
    with open(os.path.join(out, "bench.json")) as fh:
        assert json.load(fh)["kind"] == "synthetic"
    # no scene graph travels in a shard: the exact checker against the build's target, no judge
    run = str(tmp_path / "run")
    assert main(["bench", "run", out, "--editor", "oracle", "--out", run, "--limit", "2"]) == 0
    with open(os.path.join(run, "samples.jsonl")) as fh:
        scored = [json.loads(line) for line in fh]
    assert {r["checker"] for r in scored} == {"exact"} and all(r["compliance"] == 1.0 for r in scored)
    # the training shards contain the held-out photos: refused
    shards = os.path.join(built, "shards", "*.tar")
    assert (
        main(
            [
                "bench",
                "build",
                "--out",
                str(tmp_path / "real2"),
                "--from",
                built,
                "--holdout",
                "0.5",
                "--train-shards",
                shards,
            ]
        )
        == 1
    )
    # a synthetic benchmark lives in its own seed namespace: no overlap
    assert (
        main(
            [
                "bench",
                "build",
                "--out",
                str(tmp_path / "syn"),
                "--sets",
                "4",
                "--image-size",
                "64",
                "--train-shards",
                shards,
            ]
        )
        == 0
    )


def test_ls_shard_writes_training_shards_without_the_held_out_images(built, tmp_path, capsys):
    """The held-out flow: sets held out of a build by source image, then the build's accepted
    samples as training shards without them (`mcie ls shard --exclude-bench`); the overlap
    check that refuses the build's own shards passes on these."""
    import pyarrow.parquet as pq

    from mcie.shards import read_tar

    bench = str(tmp_path / "held")
    assert main(["bench", "build", "--out", bench, "--from", built, "--holdout", "0.5"]) == 0
    held = {r["source_hash"] for r in load_bench(bench)}
    index = pq.read_table(os.path.join(built, "index.parquet")).to_pylist()
    accepted = [r for r in index if r["status"] == "accepted"]
    train = str(tmp_path / "train")
    argv = ["ls", "shard", built, "--out", train, "--include-unreviewed", "--exclude-bench", bench, "--json"]
    capsys.readouterr()
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    written = {json.loads(m["json"])["source_hash"] for path in sorted(glob.glob(f"{train}/shards/*.tar"))
               for _, m in read_tar(path)}  # fmt: skip
    n_held = sum(r["source_hash"] in held for r in accepted)
    assert (summary["held_out"], summary["samples"]) == (n_held, len(accepted) - n_held)
    sources = {r["source_hash"] for r in accepted}
    assert 0 < n_held < len(accepted) and len(written) == len(sources) - len(held)
    assert written & held == set()  # overlap measured on the written shards: none
    assert main(["bench", "build", "--out", str(tmp_path / "again"), "--from", built, "--holdout", "0.5",
                 "--train-shards", f"{train}/shards/*.tar"]) == 0  # fmt: skip
    assert main(["ls", "shard", built, "--out", str(tmp_path / "x"), "--exclude-bench", str(tmp_path)]) == 1


def _tiny_embedders(root):
    """A tiny random CLIP (in-memory tokenizer) and DINOv2, saved like users' local model dirs."""
    import torch
    from transformers import (
        BitImageProcessorPil,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        Dinov2Config,
        Dinov2Model,
    )

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    small = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=0, eos_token_id=1, **small
        ),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(f"{root}/clip")
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(f"{root}/clip")
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, **small)).save_pretrained(f"{root}/dino")
    BitImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        f"{root}/dino"
    )
    return f"{root}/clip", f"{root}/dino"


@pytest.mark.model
def test_clip_and_dino_metrics_from_local_models(bench, tmp_path):
    clip, dino = _tiny_embedders(str(tmp_path))

    def summary(editor):
        out = str(tmp_path / f"{editor}-clip")
        argv = ["bench", "run", "--bench", bench, "--editor", editor, "--out", out, "--limit", "4"]
        assert main([*argv, "--clip", clip, "--dino", dino]) == 0
        with open(os.path.join(out, "summary.json")) as fh:
            return json.load(fh)

    s = summary("oracle")
    # the oracle's output is the reference: image-image similarities are exactly 1
    assert s["clip_i"] == pytest.approx(1.0, abs=1e-4) and s["dino"] == pytest.approx(1.0, abs=1e-4)
    assert -1.0 <= s["clip_t"] <= 1.0
    s2 = summary("identity")
    assert s2["clip_i"] < 1.0 - 1e-6 and s2["dino"] < 1.0 - 1e-6  # the source is not the target


@pytest.mark.model
def test_bench_runs_a_tiny_mcie_e1_checkpoint(tmp_path):
    from mcie.model.config import MCIEConfig
    from mcie.model.editor import MCIEEditor

    bench = str(tmp_path / "b64")
    assert main(["bench", "build", "--out", bench, "--sets", "4", "--image-size", "64"]) == 0
    ckpt = str(tmp_path / "ckpt")
    MCIEEditor.from_config(MCIEConfig.preset_config("tiny")).save(ckpt)
    for decomposition in ("none", "oracle"):
        out = str(tmp_path / f"e1-{decomposition}")
        assert (
            main(
                [
                    "bench",
                    "run",
                    "--bench",
                    bench,
                    "--editor",
                    f"mcie-e1:{ckpt}",
                    "--out",
                    out,
                    "--decomposition",
                    decomposition,
                    "--steps",
                    "2",
                    "--limit",
                    "2",
                ]
            )
            == 0
        )
        with open(os.path.join(out, "summary.json")) as fh:
            s = json.load(fh)
        assert s["sets"] == 2 and 0.0 <= s["instruction_compliance"] <= 1.0
        assert (
            0.0 < s["background_psnr"] <= 100.0
        )  # a random model's output is a real image of the right size


def test_bench_runs_the_tiny_instruct_pix2pix_of_mcie_models_tiny(tiny_models, tmp_path):
    pipe_dir = os.path.join(os.path.dirname(tiny_models), "instruct-pix2pix")
    bench = str(tmp_path / "b64")
    assert main(["bench", "build", "--out", bench, "--sets", "2", "--image-size", "64"]) == 0
    out = str(tmp_path / "ip2p")
    assert (
        main(
            [
                "bench",
                "run",
                "--bench",
                bench,
                "--editor",
                f"instruct-pix2pix:{pipe_dir}",
                "--out",
                out,
                "--steps",
                "2",
            ]
        )
        == 0
    )
    with open(os.path.join(out, "summary.json")) as fh:
        s = json.load(fh)
    assert s["sets"] == 2 and s["editor"].startswith("instruct-pix2pix:")
    assert 0.0 < s["background_psnr"] < 100.0  # a random pipeline changes the background
    cmp_dir = str(tmp_path / "cmp")
    assert main(["bench", "compare", out, "--out", cmp_dir]) == 0
    assert os.path.exists(os.path.join(cmp_dir, "comparison.csv"))


def test_real_sets_need_and_use_the_vlm_judge(tiny_models, tmp_path):
    built = str(tmp_path / "built")  # real images through the tiny models
    flags = ["--image-size", "64", "--shard-size", "4", "--no-progress", "--max-failed-fraction", "1"]
    assert main(["build", "--models", tiny_models, "--out", built, *flags]) == 0
    bench = str(tmp_path / "real")
    assert main(["bench", "build", "--out", bench, "--from", built, "--holdout", "0.99"]) == 0
    n = len(load_bench(bench))
    assert n > 0 and {r["kind"] for r in load_bench(bench)} == {"real"}
    # no exact target exists for real sets: compliance needs the VLM judge
    assert (
        main(["bench", "run", "--bench", bench, "--editor", "identity", "--out", str(tmp_path / "r0")]) == 1
    )
    out = str(tmp_path / "r1")
    assert (
        main(["bench", "run", "--bench", bench, "--editor", "identity", "--out", out, "--judge", tiny_models])
        == 0
    )
    with open(os.path.join(out, "samples.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    assert len(rows) == n and {r["checker"] for r in rows} == {"vlm"}
    for r in rows:
        assert r["executed"] == r["vlm_executed"] and len(r["executed"]) == r["num_sub_edits"]
        assert r["compliance"] == pytest.approx(np.mean(r["executed"]))


def test_task_ladder_sets_at_the_model_resolution_and_training_shards(tmp_path):
    """``--task mini`` renders 2-recolour scenes at 32 px; the judge scores the oracle ~1 and
    the identity 0 there; ``train-set`` writes fresh shards the trainer's loader reads."""
    from mcie.model.data import shard_loader
    from mcie.model.tokenizer import build_tokenizer

    b = str(tmp_path / "mini")
    assert main(["bench", "build", "--out", b, "--sets", "12", "--image-size", "32", "--task", "mini"]) == 0
    rows = load_bench(b)
    assert {r["num_sub_edits"] for r in rows} == {2}
    assert {t for r in rows for t in r["edit_types"]} == {"recolour"}
    with open(os.path.join(b, "bench.json")) as fh:
        manifest = json.load(fh)
    assert manifest["image_size"] == 32 and manifest["generator"]["object_scale"] == 2.4
    _, oracle, _ = _run(b, "oracle", tmp_path)
    _, ident, _ = _run(b, "identity", tmp_path)
    assert oracle["ic_exact"] == 1.0 and oracle["instruction_compliance"] >= 0.9
    assert ident["instruction_compliance"] == 0.0 and ident["ic_exact"] == 0.0
    # generator options override the rung: 3 sub-edits of add/remove
    b3 = str(tmp_path / "m3")
    argv = ["bench", "build", "--out", b3, "--sets", "4", "--image-size", "64", "--task", "mini-3"]
    assert main(argv + ["--edit-types", "add,remove", "--min-edits", "3"]) == 0
    rows = load_bench(b3)
    assert {r["num_sub_edits"] for r in rows} == {3}
    assert {t for r in rows for t in r["edit_types"]} <= {"add", "remove"}
    assert (
        main(["bench", "build", "--out", str(tmp_path / "bad"), "--task", "mini", "--edit-types", "fly"]) == 1
    )
    t = str(tmp_path / "train")
    assert (
        main(["bench", "train-set", "--out", t, "--task", "mini", "--samples", "5", "--shard-size", "3"]) == 0
    )
    # a deprecated alias of a clean `mcie build`: every candidate accepted or rejected by the judge
    assert sorted(os.listdir(os.path.join(t, "shards"))) == ["mcie-000000.tar", "mcie-000001.tar"]
    every = os.path.join(t, "shards", "*.tar") + "," + os.path.join(t, "rejected", "*.tar")
    batch = next(iter(shard_loader(every, build_tokenizer(64), 32, 5, 5, repeat=False)))
    assert batch["src"].shape == (5, 3, 32, 32) and batch["n_sub"].tolist() == [2] * 5
    assert batch["regions"][:, :2].flatten(1).amax(1).tolist() == [1.0] * 5  # both regions present
    assert main(["bench", "train-set", "--out", t, "--task", "mini", "--samples", "5"]) == 1  # no overwrite
    with open(os.path.join(t, "run.json")) as fh:
        synthetic = json.load(fh)["options"]["synthetic"]
    assert synthetic["failures"]["rate"] == 0.0 and synthetic["plan"]["edit_weights"] == [["recolour", 1.0]]


def test_the_colour_offset_rule_is_the_builds_unless_the_run_widens_it(tmp_path):
    """A recolour painted a few levels off its colour (as an editor paints it) fails the build's
    6-level rule and passes a run's wider ``--colour-offset-tol``; the rule each run used is in
    its summary; an impossible rule is a usage error."""
    from mcie.bench.editors import BenchItem
    from mcie.bench.metrics import judge_executed
    from mcie.bench.sets import plan_from_json, scene_from_json

    b = str(tmp_path / "mini")
    assert main(["bench", "build", "--out", b, "--sets", "6", "--image-size", "64", "--task", "mini"]) == 0
    verdicts = {None: [], 12: []}
    for row in load_bench(b):
        item = BenchItem.from_row(row)
        off = item.expected.astype(np.int16)
        for region in item.regions:  # the new colour, 9 levels brighter in every channel
            off[region] += 9
        off = np.clip(off, 0, 255).astype(np.uint8)
        plan, scene = plan_from_json(item.plan_json), scene_from_json(item.scene_json)
        for tol in verdicts:
            done, _ = judge_executed(item.src, off, plan, scene, item.regions, tol)
            verdicts[tol] += done
    assert len(verdicts[None]) == 12 and sum(verdicts[None]) == 0  # off by 9: the build's rule fails it
    assert sum(verdicts[12]) == 12  # within 12 levels: passed
    for tol, want in ((None, 6), ("12", 12.0)):
        out = str(tmp_path / f"run-{tol}")
        argv = ["bench", "run", "--bench", b, "--editor", "oracle", "--out", out]
        assert main(argv + (["--colour-offset-tol", tol] if tol else [])) == 0
        with open(os.path.join(out, "summary.json")) as fh:
            assert json.load(fh)["colour_offset_tol"] == want
    bad = ["bench", "run", "--bench", b, "--editor", "oracle", "--out", str(tmp_path / "bad")]
    assert main(bad + ["--colour-offset-tol", "-1"]) == 1

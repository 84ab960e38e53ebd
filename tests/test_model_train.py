"""MCIE-E1 end to end on real shards: loader, ``mcie train`` (checkpoints, cap, resume),
``mcie edit`` against diffusers' InstructPix2Pix pipeline, and an 8-sample overfit."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    EulerAncestralDiscreteScheduler,
    StableDiffusionInstructPix2PixPipeline,
    UNet2DConditionModel,
)
from PIL import Image  # noqa: E402

from mcie.cli import main  # noqa: E402
from mcie.images import decode_mask  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.data import shard_loader  # noqa: E402
from mcie.model.editor import MCIEEditor  # noqa: E402
from mcie.model.training import fixed_triple_loss, training_loss  # noqa: E402
from mcie.shards import read_tar  # noqa: E402

INSTRUCTION = "Make the red circle blue and add a small green star in the top-left corner."


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def source_image(shards, tmp_path_factory) -> str:
    key, members = next(read_tar(sorted(glob.glob(shards))[0]))
    path = str(tmp_path_factory.mktemp("img") / "src.png")
    Image.open(__import__("io").BytesIO(members["src.jpg"])).save(path)
    return path


def test_loader_gives_consistent_tensors(shards):
    cfg = MCIEConfig.preset_config("tiny")
    tok = MCIEEditor.from_config(cfg).tokenizer
    batch = next(iter(shard_loader(shards, tok, 32, cfg.max_sub_edits, 4, shuffle_buffer=0, repeat=False)))
    assert batch["src"].shape == batch["tgt"].shape == (4, 3, 32, 32)
    assert batch["regions"].shape == (4, 5, 32, 32) and batch["sub_ids"].shape == (4, 5, cfg.max_length)
    assert batch["src"].min() >= -1 and batch["src"].max() <= 1
    # shuffle_buffer=0 keeps file order: the first sample is the first key of the first shard
    key, members = next(read_tar(sorted(glob.glob(shards))[0]))
    meta = json.loads(members["json"])
    assert batch["key"][0] == key and int(batch["n_sub"][0]) == len(meta["sub_edits"])
    n = len(meta["sub_edits"])
    assert (batch["regions"][0, :n].sum((1, 2)) > 0).all() and batch["regions"][0, n:].sum() == 0
    # a mask resized 64 -> 32 by area keeps every 2x2 block that had any masked pixel
    m = decode_mask(members["mask0.png"]) > 0
    expected = m.reshape(32, 2, 32, 2).any(axis=(1, 3))
    assert np.array_equal(batch["regions"][0, 0].numpy() > 0, expected)
    looping = iter(shard_loader(shards, tok, 32, cfg.max_sub_edits, 8, shuffle_buffer=8, repeat=True))
    seen = [k for _ in range(6) for k in next(looping)["key"]]  # more than one pass over the shards
    n_accepted = sum(1 for p in glob.glob(shards) for _ in read_tar(p))
    assert len(seen) > n_accepted and set(seen) <= {k for p in glob.glob(shards) for k, _ in read_tar(p)}
    words = tok.decode(batch["sub_ids"][0, 0], skip_special_tokens=True)
    assert words.replace(" ", "") == meta["sub_edits"][0]["instruction"].replace(" ", "")


def test_train_checkpoints_resume_and_edit(shards, source_image, tmp_path):
    run = str(tmp_path / "run")
    args = ["train", "--shards", shards, "--out", run, "--preset", "tiny", "--batch-size", "2",
            "--lr", "1e-3", "--checkpoint-every", "4", "--keep-checkpoints", "2",
            "--no-progress"]  # fmt: skip
    assert main([*args, "--max-steps", "12"]) == 0
    assert sorted(os.listdir(run)) == [
        "checkpoint-12",
        "checkpoint-8",
        "log.jsonl",
        "logs",
        "train_config.json",
    ]
    assert main([*args, "--max-steps", "12"]) == 1  # refuses to overwrite without --resume
    assert main([*args, "--max-steps", "14", "--resume"]) == 0
    with open(os.path.join(run, "checkpoint-14", "trainer_state.json")) as fh:
        assert json.load(fh)["step"] == 14
    with open(os.path.join(run, "log.jsonl")) as fh:
        logs = [json.loads(line) for line in fh]
    assert [r["step"] for r in logs] == [10, 12, 14]
    assert all(np.isfinite(r["loss"]) for r in logs)
    trained = MCIEEditor.load(os.path.join(run, "checkpoint-14"))
    assert all(v != 0 for v in trained.gates().values())

    out, masks = str(tmp_path / "edit.png"), str(tmp_path / "masks")
    argv = ["edit", "--checkpoint", run, "--image", source_image, "--instruction", INSTRUCTION,
            "--out", out, "--steps", "3", "--masks-out", masks]  # fmt: skip
    assert main(argv) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (64, 64, 3) and img.std() > 0
    assert os.listdir(masks) == ["mask0.png"]  # the grammar locates the "add" only
    with open(os.path.join(masks, "mask0.png"), "rb") as fh:
        mask = decode_mask(fh.read())
    assert mask[:21, :21].all() and not mask[:, 22:].any()
    assert main([*argv[:-2], "--steps", "0"]) == 1


def test_edit_from_shard_uses_every_region_at_the_model_resolution(shards, tmp_path, capsys):
    """``mcie edit --from-shard``: the sample's image, instruction and one region per
    sub-instruction; sampled at the checkpoint's 32 px and written at the source's 64 px."""
    ckpt = str(tmp_path / "ckpt")
    MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).save(ckpt)
    shard = sorted(glob.glob(shards))[1]
    key, members = list(read_tar(shard))[2]
    n = len(json.loads(members["json"])["sub_edits"])
    out, masks = str(tmp_path / "e.png"), str(tmp_path / "m")
    argv = ["edit", "--checkpoint", ckpt, "--from-shard", os.path.dirname(shard), "--key", key,
            "--out", out, "--steps", "2", "--masks-out", masks]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr()
    assert f"sample {key}" in said.out and "sampled at 32x32); " + f"{n} regions used" in said.out
    assert "no regions" not in said.err
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)
    assert sorted(os.listdir(masks)) == [f"mask{k}.png" for k in range(n)]
    for k in range(n):  # each shard mask is inside the region used (max-pooled to 32 px and back)
        with open(os.path.join(masks, f"mask{k}.png"), "rb") as fh:
            used = decode_mask(fh.read()) > 0
        truth = decode_mask(members[f"mask{k}.png"]) > 0
        assert truth.any() and used[truth].all() and used.sum() <= truth.sum() + 4 * 64
    # native size on request; no regions said plainly
    argv = ["edit", "--checkpoint", ckpt, "--image", out, "--instruction", INSTRUCTION, "--out", out,
            "--steps", "1", "--decomposer", "none", "--resolution", "native"]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "sampled at 64x64); 0 regions used" in said.out and "no regions were used" in said.err
    # usage errors: a key of the wrong shape, --key alone, no image and no shard, a bad resolution
    assert main(["edit", "--checkpoint", ckpt, "--from-shard", shard, "--key", "../x", "--out", out]) == 1
    assert main(["edit", "--checkpoint", ckpt, "--key", key, "--image", out, "--instruction", "x",
                 "--out", out]) == 1  # fmt: skip
    assert main(["edit", "--checkpoint", ckpt, "--out", out]) == 1
    assert main([*argv[:-2], "--resolution", "big"]) == 1


def test_ablation_switches_train_without_the_branches(shards, tmp_path):
    run = str(tmp_path / "abl")
    assert main(["train", "--shards", shards, "--out", run, "--preset", "tiny-pixel", "--max-steps", "2",
                 "--batch-size", "2", "--no-saca", "--no-bcca", "--no-progress"]) == 0  # fmt: skip
    m = MCIEEditor.load(os.path.join(run, "checkpoint-2"))
    assert m.cfg.pixel_space and not m.cfg.saca and not m.cfg.bcca and m.gates() == {}


def _ip2p_checkpoint(path: str) -> None:
    """A tiny checkpoint whose source channels matter (not zero) and whose gates are 0."""
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=3)
    with torch.no_grad():
        model.unet.conv_in.weight[:, 4:] = 0.1 * torch.randn_like(model.unet.conv_in.weight[:, 4:])
    model.save(path)


@pytest.mark.parametrize("decomposer", ["none", "grammar"])
def test_edit_matches_diffusers_instruct_pix2pix(source_image, tmp_path, decomposer):
    ckpt = str(tmp_path / "ckpt")
    _ip2p_checkpoint(ckpt)
    out = str(tmp_path / "ours.png")
    assert main(["edit", "--checkpoint", ckpt, "--image", source_image, "--instruction", INSTRUCTION,
                 "--out", out, "--steps", "4", "--seed", "7", "--decomposer", decomposer,
                 "--resolution", "native"]) == 0  # fmt: skip
    # the checkpoint's model_index.json: it loads as a plain diffusers pipeline, SACA/BCCA aside
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        ckpt, scheduler=EulerAncestralDiscreteScheduler.from_pretrained(ckpt, subfolder="scheduler")
    )
    assert isinstance(pipe.unet, UNet2DConditionModel) and pipe.unet.config.in_channels == 8
    assert pipe.safety_checker is None and pipe.tokenizer.model_max_length == 128
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        INSTRUCTION,
        image=Image.open(source_image),
        num_inference_steps=4,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7),
    ).images[0]
    ours = np.asarray(Image.open(out))
    assert ours.std() > 0
    assert np.array_equal(ours, np.asarray(ref))


def test_overfit_eight_samples(shards):
    """Loss on fixed (sample, timestep, noise) triples falls at least 5x in 30 steps (7.0x measured;
    benchmarks/experiments/overfit_mcie_e1.py prints the curve)."""
    torch.manual_seed(0)
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0)
    loader = shard_loader(shards, model.tokenizer, 32, 5, 8, shuffle_buffer=0, repeat=False)
    batch = next(iter(loader))
    g = torch.Generator().manual_seed(1)
    fixed_loss = fixed_triple_loss(model, batch, g)  # the triples come first; training then goes on with g

    before = fixed_loss()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    for _ in range(30):  # fresh random timesteps and noise each step, not the measured triples
        opt.zero_grad()
        training_loss(model, batch, g, dropout=0.0).backward()
        opt.step()
    after = fixed_loss()
    assert before / after >= 5, (before, after)


def test_edit_with_json_decomposition_uses_both_branches(source_image, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=3)
    for p in model.processors.values():
        p.saca_gate.data.fill_(1.0)
        p.bcca_gate.data.fill_(1.0)
    model.save(ckpt)
    spec = {"sub_instructions": [
        {"instruction": "make the red circle blue", "box": [0, 0, 32, 32]},
        {"instruction": "remove the star", "box": [40, 40, 64, 56]}]}  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(spec))
    base = [
        "edit",
        "--checkpoint",
        ckpt,
        "--image",
        source_image,
        "--instruction",
        INSTRUCTION,
        "--steps",
        "3",
    ]
    assert main([*base, "--out", str(tmp_path / "a.png"), "--decomposition", str(tmp_path / "d.json"),
                 "--masks-out", str(tmp_path / "m")]) == 0  # fmt: skip
    assert sorted(os.listdir(tmp_path / "m")) == ["mask0.png", "mask1.png"]
    assert main([*base, "--out", str(tmp_path / "b.png"), "--decomposer", "none"]) == 0
    a = np.asarray(Image.open(tmp_path / "a.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b.png")).astype(int)
    assert np.abs(a - b).max() > 0  # regions and source tokens change the result
    (tmp_path / "bad.json").write_text("{not json")
    assert main([*base, "--out", str(tmp_path / "c.png"), "--decomposition", str(tmp_path / "bad.json")]) == 1

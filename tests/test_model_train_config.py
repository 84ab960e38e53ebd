"""``TrainConfig``: presets carry their recipes, the ``train`` parser is generated from the
fields, every run records its configuration and ``--config`` reruns it; training curves in
TensorBoard event files (read back), ``log.jsonl``'s clock across ``--resume``, and ``mcie
edit --side-by-side``."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from mcie import storage  # noqa: E402
from mcie.cli import build_parser, main  # noqa: E402
from mcie.exitcodes import UsageError  # noqa: E402
from mcie.model.editor import MCIEEditor  # noqa: E402
from mcie.model.train_cli import train_options  # noqa: E402
from mcie.model.train_config import RECORD_FILE, TrainConfig, load_run_record  # noqa: E402
from mcie.report.sheet import GAP, HEADER  # noqa: E402
from mcie.shards import read_tar  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

BASE = {"shards": "s/*.tar", "out": "run", "max_steps": 5}


def _record(run: str) -> dict:
    with open(os.path.join(run, RECORD_FILE)) as fh:
        return json.load(fh)


def test_presets_carry_their_recipes_and_given_values_win():
    pixel = TrainConfig(**BASE, preset="tiny-pixel")
    measured = {"batch_size": 16, "lr": 2e-3, "lr_schedule": "constant", "warmup_steps": 0, "gate_init": 1.0,
                "gate_lr_mult": 10.0, "edit_loss_weight": 4.0, "conditioning_dropout": 0.0, "ema": True,
                "resolution": 32, "train_text_encoder": True}  # fmt: skip
    assert {k: getattr(pixel, k) for k in measured} == measured
    assert pixel.model_config().gate_init == 1.0 and pixel.model_config().pixel_space
    sd = TrainConfig(**BASE, preset="sd15")
    assert (sd.gate_init, sd.ema, sd.conditioning_dropout, sd.resolution) == (0.0, False, 0.05, 512)
    tiny = TrainConfig(**BASE)
    assert (tiny.preset, tiny.gate_init, tiny.lr, tiny.batch_size) == ("tiny", 0.0, 1e-4, 4)
    # a given value wins over the recipe; 0 and False are given values, not "unset"
    mine = TrainConfig(**BASE, preset="tiny-pixel", lr=5e-4, ema=False, edit_loss_weight=0.0)
    assert (mine.lr, mine.ema, mine.edit_loss_weight, mine.gate_init) == (5e-4, False, 0.0, 1.0)
    # fine-tuning a pretrained backbone starts at the plain UNet unless told otherwise
    assert TrainConfig(**BASE, preset="tiny-pixel", init_from="/m").gate_init == 0.0
    assert TrainConfig(**BASE, preset="tiny-pixel", init_from="/m", gate_init=0.5).gate_init == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        pixel.lr = 1.0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"preset": "huge"}, "--preset 'huge' is not one of: tiny, tiny-pixel, sd15"),
        ({"lr_schedule": "step"}, "--lr-schedule 'step' is not one of: constant, cosine, linear"),
        ({"mixed_precision": "fp16"}, "--mixed-precision 'fp16' is not one of: no, bf16"),
        ({"report_to": "comet"}, "--report-to 'comet' is not one of: tensorboard, wandb, none"),
        ({"max_steps": 0}, "--max-steps must be >= 1, got 0"),
        ({"workers": -1}, "--loader-workers must be >= 0, got -1"),
        ({"conditioning_dropout": 0.4}, "--conditioning-dropout must be in [0, 1/3), got 0.4"),
        ({"ema_decay": 1.0}, "--ema-decay must be in [0, 1), got 1.0"),
    ],
)
def test_invalid_values_are_usage_errors_that_list_what_is_allowed(change, message):
    with pytest.raises(UsageError) as e:
        TrainConfig(**{**BASE, **change})
    assert str(e.value) == message


def test_wandb_without_its_package_is_a_usage_error(tmp_path, capsys):
    assert (
        main(["train", "s/*.tar", "--out", str(tmp_path / "r"), "--max-steps", "1", "--report-to", "wandb"])
        == 1
    )
    err = capsys.readouterr().err
    assert "--report-to wandb needs the wandb package" in err and not os.path.exists(tmp_path / "r")


def test_the_parser_is_generated_from_the_fields(capsys):
    train = next(
        a.choices["train"] for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    flags = {s for a in train._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        assert flag in flags, flag
    assert all(a.help for a in train._actions)
    # flags set fields, the rest come from the preset; --no-ema turns the recipe's EMA off
    argv = ["train", "s/*.tar", "--out", "r", "--max-steps", "7", "--preset", "tiny-pixel", "--no-ema",
            "--loader-workers", "2", "--no-progress", "--gate-init", "0.5"]  # fmt: skip
    cfg = train_options(build_parser().parse_args(argv))
    assert cfg == TrainConfig(shards="s/*.tar", out="r", max_steps=7, preset="tiny-pixel", ema=False,
                              workers=2, progress=False, gate_init=0.5)  # fmt: skip
    assert cfg.lr == 2e-3 and cfg.edit_loss_weight == 4.0
    with pytest.raises(UsageError, match="required: --out, --max-steps"):
        train_options(build_parser().parse_args(["train", "s/*.tar"]))


def test_tiny_pixel_with_no_other_flag_trains_the_measured_recipe(shards, tmp_path):
    run = str(tmp_path / "px")
    assert (
        main(["train", shards, "--out", run, "--preset", "tiny-pixel", "--max-steps", "2", "--no-progress"])
        == 0
    )
    rec = _record(run)
    cfg = rec["config"]
    assert (cfg["lr"], cfg["batch_size"], cfg["gate_init"], cfg["edit_loss_weight"]) == (2e-3, 16, 1.0, 4.0)
    assert (cfg["conditioning_dropout"], cfg["ema"], cfg["lr_schedule"]) == (0.0, True, "constant")
    with open(os.path.join(run, "checkpoint-2", "trainer_state.json")) as fh:
        state = json.load(fh)
    assert state["weights"] == "ema"
    gates = MCIEEditor.load(os.path.join(run, "checkpoint-2")).gates()
    assert gates and all(0.5 < v < 1.5 for v in gates.values())  # opened at 1, not shut at 0
    with open(os.path.join(run, "checkpoint-2", "optimizer.json")) as fh:
        assert sorted(g["lr"] for g in json.load(fh)["param_groups"]) == pytest.approx([2e-3, 2e-2, 2e-2])


def test_a_run_records_its_config_and_config_reruns_it(shards, tmp_path, monkeypatch):
    first, again, other = (str(tmp_path / n) for n in ("first", "again", "other"))
    argv = ["train", shards, "--out", first, "--max-steps", "3", "--batch-size", "2", "--lr", "1e-3",
            "--seed", "4", "--no-progress", "--report-to", "none"]  # fmt: skip
    assert main(argv) == 0
    rec = _record(first)
    paths = sorted(glob.glob(shards))
    assert rec["data"]["shards"] == [
        {"path": os.path.abspath(p), **storage.digest(p).to_json()} for p in paths
    ]
    assert rec["seed"] == 4 and rec["mcie_version"] and rec["start_step"] == 0
    assert rec["config"]["shards"] == os.path.abspath(shards) and rec["config"]["out"] == os.path.abspath(
        first
    )
    assert set(rec["config"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert rec["config"]["report_to"] == "none" and not os.path.exists(os.path.join(first, "logs"))

    # from another folder: the record is complete, its paths absolute
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", os.path.join(first, RECORD_FILE), "--out", again, "--no-progress"]) == 0
    rerun = _record(again)
    assert {**rerun["config"], "out": None} == {**rec["config"], "out": None}
    assert rerun["data"] == rec["data"]
    a, b = (load_file(os.path.join(r, "checkpoint-3", "unet", "diffusion_pytorch_model.safetensors"))
            for r in (first, again))  # fmt: skip
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run, bit for bit
    assert main(["train", "--config", first]) == 1  # its own folder holds checkpoints: no overwrite

    # a flag beside --config overrides that field only (a run folder names its record too)
    assert (
        main(
            ["train", "--config", first, "--out", other, "--max-steps", "2", "--lr", "5e-4", "--no-progress"]
        )
        == 0
    )
    changed = _record(other)["config"]
    assert (changed["max_steps"], changed["lr"]) == (2, 5e-4)
    assert {k: v for k, v in changed.items() if k not in ("out", "max_steps", "lr")} == {
        k: v for k, v in rec["config"].items() if k not in ("out", "max_steps", "lr")
    }
    (tmp_path / "bad.json").write_text(json.dumps({"config": {"shards": shards, "colour": "red"}}))
    assert main(["train", "--config", str(tmp_path / "bad.json")]) == 1
    (tmp_path / "bad.json").write_text(json.dumps({"config": {**rec["config"], "lr": "fast"}}))
    with pytest.raises(UsageError, match="training option lr: 'fast' is not of type"):
        TrainConfig.from_dict(load_run_record(str(tmp_path / "bad.json")))
    assert TrainConfig.from_dict({**rec["config"], "lr": 1}).lr == 1  # an int is a float here


def test_tensorboard_events_hold_the_curves_and_the_clock_goes_on_across_resume(shards, tmp_path):
    run = str(tmp_path / "tb")
    argv = ["train", shards, "--out", run, "--batch-size", "2", "--lr", "1e-3", "--gate-init", "0.25",
            "--log-every", "1", "--checkpoint-every", "2", "--validate-every", "2",
            "--validation-samples", "2", "--validation-steps", "1", "--no-progress"]  # fmt: skip
    assert main([*argv, "--max-steps", "2"]) == 0
    # TensorBoard reads a folder's event files in name order, and a name holds the creation
    # second then a per-process writer count: two writers of one process in the same second can
    # sort backwards once the count passes 9 (a resume is never that quick outside a test)
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    assert main([*argv, "--max-steps", "3", "--resume"]) == 0
    with open(os.path.join(run, "log.jsonl")) as fh:
        logs = [json.loads(line) for line in fh]
    train_logs = [r for r in logs if "loss" in r]
    assert [r["step"] for r in train_logs] == [1, 2, 3]
    with open(os.path.join(run, "checkpoint-2", "trainer_state.json")) as fh:
        state = json.load(fh)
    assert train_logs[2]["elapsed_s"] > state["elapsed_s"] >= train_logs[1]["elapsed_s"] > 0  # not from 0

    acc = EventAccumulator(os.path.join(run, "logs"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "gates/saca_mean_abs", "gates/bcca_mean_abs", "val/region_l1",
            "val/background_l1"} <= set(tags["scalars"])  # fmt: skip
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert loss == pytest.approx({r["step"]: r["loss"] for r in train_logs}, rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([1e-3] * 3)
    ckpt = MCIEEditor.load(os.path.join(run, "checkpoint-3")).gates()
    saca = np.mean([abs(v) for k, v in ckpt.items() if k.endswith("saca_gate")])
    last = acc.Scalars("gates/saca_mean_abs")[-1]
    assert last.step == 3 and last.value == pytest.approx(saca, rel=1e-5)
    assert acc.Scalars("gates/bcca_mean_abs")[0].value == pytest.approx(0.25, abs=0.05)  # near its start
    val = {e.step: e.value for e in acc.Scalars("val/region_l1")}
    assert val == pytest.approx({r["step"]: r["val_region_l1"] for r in logs if "val_region_l1" in r})
    image = acc.Images("val/edits")[-1]
    assert image.step == 3 and (image.width, image.height) == (3 * 32, 2 * 32)
    texts = [e for e in acc.Tensors("val/instructions/text_summary")]
    first_key, members = next(read_tar(sorted(glob.glob(shards))[0]))
    instruction = json.loads(members["json"])["instruction"]
    assert instruction in texts[-1].tensor_proto.string_val[0].decode()


def test_edit_writes_a_labelled_side_by_side(shards, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    from mcie.model.config import MCIEConfig

    MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).save(ckpt)
    shard = sorted(glob.glob(shards))[0]
    key, members = next(read_tar(shard))
    out, sbs = str(tmp_path / "e.png"), str(tmp_path / "sbs.png")
    argv = ["edit", "--checkpoint", ckpt, "--from-shard", shard, "--out", out, "--steps", "1",
            "--side-by-side", sbs, "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    sheet = np.asarray(Image.open(sbs).convert("RGB"))
    tile = 256
    assert sheet.shape[1] == GAP + 3 * tile + 2 * GAP + 2 * GAP
    y0, x = GAP + HEADER, GAP
    src = Image.open(__import__("io").BytesIO(members["src.jpg"])).convert("RGB")
    expected = np.asarray(src.resize((tile, tile), Image.LANCZOS))
    assert np.array_equal(sheet[y0 : y0 + tile, x : x + tile], expected)  # source
    edited = np.asarray(Image.open(out).convert("RGB").resize((tile, tile), Image.LANCZOS))
    x1 = x + tile + GAP
    assert np.array_equal(sheet[y0 : y0 + tile, x1 : x1 + tile], edited)  # output
    x2 = x1 + tile + GAP
    regions = sheet[y0 : y0 + tile, x2 : x2 + tile].astype(int)
    assert np.abs(regions - expected.astype(int)).max() > 50  # the masks tinted over the source
    assert sheet.shape[0] > y0 + tile + 16 * 2  # the instruction and sub-instructions below
    assert main([*argv[:-3], "--side-by-side", str(tmp_path), "--no-progress"]) == 1  # a folder: usage error

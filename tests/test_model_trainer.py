"""``mcie train`` on accelerate: EMA (formula, checkpoints, resume), validation images and scores,
and a real two-process ``accelerate launch`` run over gloo (each rank its own shard)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from mcie.cli import build_parser, main  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.editor import MCIEEditor  # noqa: E402
from mcie.model.ema import EMAWeights  # noqa: E402
from mcie.model.train_cli import train_options  # noqa: E402
from mcie.model.trainer import RAW_FILE, _setup_model, make_accelerator  # noqa: E402
from mcie.model.validation import ValidationSet  # noqa: E402
from mcie.shards import read_tar  # noqa: E402

GATE = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.bcca_gate"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _train_argv(shards: str, run: str, *extra: str) -> list[str]:
    return ["train", "--shards", shards, "--out", run, "--preset", "tiny", "--batch-size", "2",
            "--lr", "1e-3", "--no-progress", *extra]  # fmt: skip


def _weights(ckpt: str) -> tuple[dict, dict]:
    """(model-folder weights = what ``mcie edit`` loads, raw weights) of a checkpoint, by trained-
    parameter name ("unet.<name>", SACA/BCCA included)."""
    model = load_file(os.path.join(ckpt, "unet", "diffusion_pytorch_model.safetensors"))
    model.update(load_file(os.path.join(ckpt, "mcie", "attn_processors.safetensors")))
    return {f"unet.{n}": v for n, v in model.items()}, load_file(os.path.join(ckpt, RAW_FILE))


def test_ema_update_follows_the_warmed_up_formula():
    lin = torch.nn.Linear(3, 2)
    w0 = lin.weight.detach().clone()
    ema = EMAWeights(lin.named_parameters(), decay=0.9999)
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update(step=1)  # warm-up: d = min(0.9999, 2 / 11)
    assert torch.allclose(ema.shadow["weight"], 2 / 11 * w0 + 9 / 11 * (w0 + 1), atol=1e-6)
    assert ema.decay_at(10**6) == 0.9999
    with ema.applied():  # swapped in (the shadow holds the raw weights meanwhile), and back out
        assert torch.allclose(lin.weight, 2 / 11 * w0 + 9 / 11 * (w0 + 1), atol=1e-6)
        assert torch.equal(ema.shadow["weight"], w0 + 1)
    assert torch.equal(lin.weight, w0 + 1)


def test_ema_checkpoints_hold_the_average_and_resume_restores_it(shards, tmp_path):
    run = str(tmp_path / "ema")
    argv = _train_argv(shards, run, "--ema", "--ema-decay", "0.1", "--checkpoint-every", "1",
                       "--keep-checkpoints", "3")  # fmt: skip
    assert main([*argv, "--max-steps", "3"]) == 0
    ema2, _ = _weights(os.path.join(run, "checkpoint-2"))
    ema3, raw3 = _weights(os.path.join(run, "checkpoint-3"))
    assert set(ema3) == set(raw3)
    # d_s = min(0.1, (1 + s) / (10 + s)) = 0.1 from s = 1 on
    for name in ("unet.conv_in.weight", GATE):
        assert not torch.equal(ema3[name], raw3[name])
        assert torch.allclose(ema3[name], 0.1 * ema2[name] + 0.9 * raw3[name], atol=1e-7)
    with open(os.path.join(run, "checkpoint-3", "trainer_state.json")) as fh:
        state = json.load(fh)
    assert state["weights"] == "ema" and state["ema_decay"] == 0.1 and state["step"] == 3
    loaded = MCIEEditor.load(os.path.join(run, "checkpoint-3"))  # what `mcie edit` uses: the EMA
    assert torch.equal(loaded.unet.conv_in.weight.detach(), ema3["unet.conv_in.weight"])

    # resuming puts the raw weights in the model and the checkpoint's average in the EMA
    cfg = train_options(build_parser().parse_args([*argv, "--max-steps", "4", "--resume"]))
    model, start, ema, path = _setup_model(cfg, make_accelerator(cfg))
    assert start["step"] == 3 and start["elapsed_s"] > 0 and path.endswith("checkpoint-3")
    params = dict(model.named_trainable_parameters())
    assert all(torch.equal(params[n].detach(), raw3[n]) for n in raw3)
    assert all(torch.equal(ema.shadow[n], ema3[n]) for n in ema3)

    assert main([*argv, "--max-steps", "4", "--resume"]) == 0
    ema4, raw4 = _weights(os.path.join(run, "checkpoint-4"))
    for name in ("unet.conv_in.weight", GATE):
        assert torch.allclose(ema4[name], 0.1 * ema3[name] + 0.9 * raw4[name], atol=1e-7)


def test_validation_writes_grids_and_scores(shards, tmp_path):
    run = str(tmp_path / "val")
    argv = _train_argv(shards, run, "--max-steps", "3", "--validate-every", "2", "--validation-samples", "2",
                       "--validation-steps", "2", "--ema")  # fmt: skip
    assert main(argv) == 0
    assert sorted(os.listdir(os.path.join(run, "validation"))) == ["step-2.png", "step-3.png"]
    grid = np.asarray(Image.open(os.path.join(run, "validation", "step-2.png")))
    assert grid.shape == (2 * 32, 3 * 32, 3)  # K = 2 rows of source | edited | target at 32 px
    val = ValidationSet.from_shards(shards, 32, 2)
    assert [s.key for s in val.samples] == [k for k, _ in list(read_tar(sorted(glob.glob(shards))[0]))[:2]]
    for row, s in enumerate(val.samples):
        assert np.array_equal(grid[32 * row : 32 * (row + 1), :32], s.src)
        assert np.array_equal(grid[32 * row : 32 * (row + 1), 64:], s.tgt)
    with open(os.path.join(run, "log.jsonl")) as fh:
        vals = [r for r in map(json.loads, fh) if "val_region_l1" in r]
    assert [r["step"] for r in vals] == [2, 3]
    assert all(np.isfinite(r["val_region_l1"]) and np.isfinite(r["val_background_l1"]) for r in vals)
    assert all(0 < r["val_region_l1"] <= 255 for r in vals)


def test_train_usage_errors(shards, tmp_path):
    base = _train_argv(shards, str(tmp_path / "bad"), "--max-steps", "1")
    assert main([*base, "--ema-decay", "1"]) == 1
    assert main([*base, "--validation-samples", "0"]) == 1
    assert main([*base, "--validate-every", "1", "--validation-shards", str(tmp_path / "none*.tar")]) == 1
    assert main([*base, "--workers", "3"]) == 1  # 2 shards cannot feed 3 loader workers
    assert not os.path.exists(os.path.join(tmp_path, "bad", "checkpoint-1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_launch(shards, tmp_path):
    """Two gloo processes on the CPU (accelerate's torchrun launcher; its ``--cpu`` launcher
    needs MPI): each rank reads its own shard, one checkpoint and one log are written."""
    run = str(tmp_path / "ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "--num_cpu_threads_per_process", "1",
           "-m", "mcie.cli", *_train_argv(shards, run, "--max-steps", "3", "--grad-accum", "2",
           "--checkpoint-every", "3", "--log-every", "1", "--log-keys", "--ema",
           "--device", "cpu")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        raise
    assert proc.returncode == 0, stderr[-3000:]
    assert sorted(os.listdir(run)) == [
        "checkpoint-3", "keys-rank0.jsonl", "keys-rank1.jsonl", "log.jsonl", "logs", "train_config.json",
    ]  # fmt: skip
    shard_keys = [{k for k, _ in read_tar(p)} for p in sorted(glob.glob(shards))]
    seen = []
    for rank in (0, 1):
        with open(os.path.join(run, f"keys-rank{rank}.jsonl")) as fh:
            steps = [json.loads(line) for line in fh]
        assert [s["step"] for s in steps] == [1, 2, 3] and all(len(s["keys"]) == 4 for s in steps)
        keys = {k for s in steps for k in s["keys"]}
        assert keys <= shard_keys[rank]  # split_by_node: rank r reads shard r of 2
        seen.append(keys)
    assert not seen[0] & seen[1]
    with open(os.path.join(run, "log.jsonl")) as fh:
        assert [json.loads(line)["step"] for line in fh] == [1, 2, 3]  # the main process alone logs
    assert stdout.count("trained 3 steps") == 1 and "on 2 process(es)" in stdout
    with open(os.path.join(run, "checkpoint-3", "trainer_state.json")) as fh:
        assert json.load(fh)["processes"] == 2
    assert all(v != 0 for v in MCIEEditor.load(os.path.join(run, "checkpoint-3")).gates().values())


@pytest.mark.parametrize("flag", ["--train-text-encoder", "--no-train-text-encoder"])
def test_text_encoder_is_trained_only_when_asked(shards, tmp_path, flag):
    run = str(tmp_path / "te")
    assert main(_train_argv(shards, run, "--max-steps", "2", flag)) == 0
    start = MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).text_encoder.state_dict()
    ckpt = os.path.join(run, "checkpoint-2")
    saved = load_file(os.path.join(ckpt, "text_encoder", "model.safetensors"))
    emb = "embeddings.token_embedding.weight"
    loaded = MCIEEditor.load(ckpt)
    assert torch.equal(loaded.text_encoder.state_dict()[emb], saved[emb])
    if flag == "--train-text-encoder":
        assert not torch.equal(saved[emb], start[emb])
        assert loaded.cfg.train_text_encoder is True
    else:
        assert all(torch.equal(saved[k], start[k]) for k in saved)
        assert loaded.cfg.train_text_encoder is False


def test_tiny_pixel_trains_its_text_encoder_by_default():
    cfg = MCIEConfig.preset_config("tiny-pixel")
    assert cfg.train_text_encoder and cfg.norm_num_groups == 8
    model = MCIEEditor.from_config(cfg)
    names = [n for n, _ in model.named_trainable_parameters()]
    assert any(n.startswith("text_encoder.") for n in names)
    assert not MCIEConfig.preset_config("sd15").train_text_encoder


def test_attention_levels_pick_the_cross_attention_blocks():
    pixel = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel")).unet.config
    assert list(pixel.down_block_types) == ["DownBlock2D", "CrossAttnDownBlock2D"]  # level 0 plain
    assert list(pixel.up_block_types) == ["CrossAttnUpBlock2D", "UpBlock2D"]
    tiny = MCIEEditor.from_config(MCIEConfig.preset_config("tiny")).unet.config  # SD1.5's layout
    assert list(tiny.down_block_types) == ["CrossAttnDownBlock2D", "DownBlock2D"]
    assert list(tiny.up_block_types) == ["UpBlock2D", "CrossAttnUpBlock2D"]
    cfg = MCIEConfig.preset_config("tiny-pixel")
    assert MCIEConfig.from_json(cfg.to_json()) == cfg  # the tuple survives the JSON round trip
    with pytest.raises(ValueError, match="attention_levels"):
        MCIEConfig.preset_config("tiny", attention_levels=(2,))


def test_lr_schedule_resumes_on_the_same_curve(shards, tmp_path):
    """A cosine run interrupted after step 2 and resumed ends at the learning rate of the run
    that was not (the schedule's base is --lr, not the checkpoint's decayed rate)."""

    def lr_at(run: str, step: int) -> list[float]:
        with open(os.path.join(run, f"checkpoint-{step}", "optimizer.json")) as fh:
            return [g["lr"] for g in json.load(fh)["param_groups"]]

    run = str(tmp_path / "run")
    argv = _train_argv(shards, run, "--lr-schedule", "cosine", "--warmup-steps", "1",
                       "--checkpoint-every", "2", "--max-steps", "4")  # fmt: skip
    assert main(argv) == 0
    straight = lr_at(run, 4)
    assert lr_at(run, 2)[0] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 1 / 3)))  # 1 warm-up step
    assert straight[0] == pytest.approx(0.0)  # decayed to 0 at --max-steps
    shutil.rmtree(os.path.join(run, "checkpoint-4"))  # as if it had stopped after step 2
    assert main([*argv, "--resume"]) == 0
    assert lr_at(run, 4) == pytest.approx(straight)

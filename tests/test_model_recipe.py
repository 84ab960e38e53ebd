"""The training recipe's switches: region-weighted loss, gate initialisation, gate learning rate."""

import numpy as np
import pytest
import torch

from mcie.model.config import MCIEConfig
from mcie.model.editor import MCIEEditor
from mcie.model.trainer import param_groups
from mcie.model.training import edit_weights

pytestmark = pytest.mark.model


def test_edit_weights_favour_the_regions_and_keep_mean_one():
    regions = torch.zeros(2, 3, 4, 4)
    regions[0, 0, :2, :2] = 1  # 4 of 16 cells
    regions[0, 2, 3, 3] = 1  # 1 more: the union counts
    w = edit_weights(regions, 4.0)
    assert w.shape == (2, 1, 4, 4)
    assert torch.allclose(w.mean(dim=(-2, -1)), torch.ones(2, 1))
    # inside 5 cells of weight 5, outside 11 of weight 1, divided by the mean (25 + 11) / 16
    assert torch.isclose(w[0, 0, 0, 0], torch.tensor(5 * 16 / 36)) and torch.isclose(
        w[0, 0, 3, 2], torch.tensor(16 / 36)
    )
    assert torch.equal(w[1], torch.ones(1, 4, 4))  # no region: plain MSE


def test_gate_init_and_param_groups():
    cfg = MCIEConfig.preset_config("tiny", gate_init=1.0)
    model = MCIEEditor.from_config(cfg, seed=0)
    assert set(model.gates().values()) == {1.0}
    groups = param_groups(model, 1e-3, 0.01, gate_lr_mult=10)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2, 1e-2]
    assert groups[2]["weight_decay"] == 0.0 and len(groups[2]["params"]) == 2 * len(model.processors)
    assert len(groups[1]["params"]) == 2 * len(model.processors)  # to_k_src, to_v_src
    n = sum(len(g["params"]) for g in groups)
    assert n == len(model.trainable_parameters())
    assert set(MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).gates().values()) == {0.0}


def test_long_complex_instruction_is_read_to_its_last_sub_instruction(caplog):
    """The full demo mix writes complex instructions of up to ~102 tokens: all of it reaches the
    text encoder, so changing only the last sub-instruction changes the encoding."""
    from mcie.transforms.synthetic.generator import SyntheticSource
    from mcie.transforms.synthetic.ladder import task_config

    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel"), seed=0)
    assert model.tokenizer.model_max_length == model.cfg.max_length == 128
    head = (
        "Replace the triangle with a pentagon. Also change the pattern of the striped cross to a "
        "single solid colour, turn the brown star lime, add a large dotted brown hexagon in the "
        "top-left corner and finally turn the small blue circle "
    )
    texts = [head + "red.", head + "green."]
    n = len(model.tokenizer(texts[0]).input_ids)
    assert 32 < n <= 128  # past the old 32-token limit
    ids = model.tokenize(texts)  # (2, 128)
    with torch.no_grad():
        enc = model.encode_ids(ids)  # (2, 128, D)
    assert ids.shape == (2, 128) and not torch.equal(ids[0], ids[1])
    assert (enc[0] - enc[1]).abs().amax() > 1e-4
    # every complex instruction the generator writes fits (300 of the full mix, the longest rung)
    src = SyntheticSource(task_config("full", 64))
    longest = max(len(model.tokenizer(src.generate(0, i)[0].instruction).input_ids) for i in range(300))
    assert 64 < longest <= 128
    # what does not fit is cut with a warning that names its length, never silently
    short = MCIEEditor.from_config(MCIEConfig.preset_config("tiny", max_length=32), seed=0)
    with caplog.at_level("WARNING", logger="mcie.model.tokenizer"):
        cut = short.tokenize(texts[:1])
    assert cut.shape == (1, 32) and f"instruction of {n} tokens truncated" in caplog.text


def test_default_threads_rule():
    from mcie.threads import default_threads

    assert [default_threads(c) for c in (1, 2, 4, 6, 8, 16, 64)] == [1, 1, 1, 3, 4, 8, 8]


def test_late_timestep_bias_draws_the_noisier_half_more_often():
    from mcie.model.training import sample_timesteps

    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(4, 1000, g)
    assert torch.equal(uniform, torch.randint(0, 1000, (4,), generator=torch.Generator().manual_seed(0)))
    t = sample_timesteps(40_000, 1000, torch.Generator().manual_seed(1), late_bias=3.0)
    assert t.min() >= 0 and t.max() <= 999
    assert abs(float((t >= 500).float().mean()) - 0.75) < 0.01  # 3 : 1
    assert abs(float((t[t >= 500]).float().mean()) - 749.5) < 5  # uniform inside each half


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from mcie.model.trainer import lr_schedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-2)
    sched = lr_schedule(opt, "cosine", 2, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(5e-3) and lrs[2] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))  # then only down
    assert lrs[-1] == pytest.approx(1e-2 * 0.5 * (1 + np.cos(np.pi * 7 / 8)))
    # constant without warm-up: the old behaviour
    opt = torch.optim.AdamW([p], lr=1e-2)
    sched = lr_schedule(opt, "constant", 0, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 1e-2

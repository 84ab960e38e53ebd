"""The training recipe's switches: region-weighted loss, gate initialisation, gate learning rate."""

import torch

from mcie.model.config import MCIEConfig
from mcie.model.editor import MCIEEditor
from mcie.model.trainer import param_groups
from mcie.model.training import edit_weights


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

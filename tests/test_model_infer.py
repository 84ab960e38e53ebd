"""MCIE-E1 inference on images whose sides are not multiples of the model's size step."""

import numpy as np
import pytest
import torch
from PIL import Image

from mcie.model.config import MCIEConfig
from mcie.model.decompose import Decomposition, SubInstruction
from mcie.model.editor import MCIEEditor
from mcie.model.infer import edit_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def test_regions_follow_the_resize_to_the_size_multiple():
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (28, 36, 3), dtype=np.uint8))  # W 36, H 28: not x8
    mask = np.zeros((28, 36), np.uint8)
    mask[:, :18] = 1  # left half, in the caller's pixels
    d = Decomposition(
        "make the left half red and the top right blue",
        [
            SubInstruction("make the left half red", mask=mask),
            SubInstruction("make the top right blue", box=(18, 0, 36, 14)),
        ],
    )
    out, regions = edit_image(model, image, d.instruction, d, steps=2, seed=0)
    assert out.size == (32, 24)  # fitted to multiples of 8, as diffusers' pipeline does
    assert regions.shape == (2, 24, 32)
    np.testing.assert_array_equal(regions[0][:, :16], 1.0)
    np.testing.assert_array_equal(regions[0][:, 16:], 0.0)
    np.testing.assert_array_equal(regions[1][:12, 16:], 1.0)
    assert regions[1][12:].sum() == 0 and regions[1][:, :16].sum() == 0
    assert np.isfinite(np.asarray(out, dtype=float)).all()


def test_ddim_samples_from_the_last_training_timestep(monkeypatch):
    """DDIM's steps trail from t = 999 (few-step sampling starts from pure noise, not t = 500)."""
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel"), seed=0)
    seen, forward = [], model.unet_forward

    def spy(x, t, cond):
        seen.append(int(t))
        return forward(x, t, cond)

    monkeypatch.setattr(model, "unet_forward", spy)
    image = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    edit_image(model, image, "make it red", steps=2, scheduler="ddim")
    assert seen == [999, 499]
    seen.clear()
    edit_image(model, image, "make it red", steps=1, scheduler="ddim")
    assert seen == [999]


def test_average_draws_in_one_batch_and_skips_guidance_blocks_at_one(monkeypatch):
    """``average`` K: K draws in one batch, their mean written; the first draw is the single
    sample's. Guidance 1 / 1 runs the text-and-image block alone (3 blocks otherwise)."""
    model = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel"), seed=0)
    batches, decoded = [], []
    forward, decode = model.unet_forward, model.decode

    def spy_forward(x, t, cond):
        batches.append(x.shape[0])
        return forward(x, t, cond)

    def spy_decode(z):
        decoded.append(z.clone())
        return decode(z)

    monkeypatch.setattr(model, "unet_forward", spy_forward)
    monkeypatch.setattr(model, "decode", spy_decode)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 1
    d = Decomposition("make it red", [SubInstruction("make it red", mask=mask)])
    kw = dict(steps=2, scheduler="ddim", guidance_scale=1.0, image_guidance_scale=1.0, seed=3)
    one, _ = edit_image(model, image, d.instruction, d, average=1, **kw)
    four, _ = edit_image(model, image, d.instruction, d, average=4, **kw)
    assert batches == [1, 1, 4, 4]
    assert decoded[1].shape[0] == 4 and torch.allclose(decoded[1][0], decoded[0][0], atol=1e-5)
    mean = ((decoded[1].clamp(-1, 1) + 1) * 127.5).mean(0).permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(four, dtype=float) - mean).max() <= 1.0  # the mean, rounded to 8 bits
    assert not np.array_equal(np.asarray(one), np.asarray(four))
    batches.clear()
    guided = dict(guidance_scale=3.0, image_guidance_scale=1.5)
    edit_image(model, image, d.instruction, d, steps=1, average=2, **guided)
    assert batches == [6]  # 3 guidance blocks x 2 draws
    # the preset's own sampling: 2 DDIM steps, no guidance, 8 draws
    batches.clear()
    edit_image(model, image, d.instruction, d)
    assert batches == [8, 8]

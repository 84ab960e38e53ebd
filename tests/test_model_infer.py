"""MCIE-E1 inference on images whose sides are not multiples of the model's size step."""

import numpy as np
import pytest
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

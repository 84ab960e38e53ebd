"""The per-sample fast paths give exactly what their plain numpy definitions give (the build's
bytes depend on it)."""

import numpy as np
import pytest
from PIL import Image

from mcie.metrics import any_channel, box_sum, dilate, erode, max_channel
from mcie.transforms.synthetic.scene import SUPERSAMPLE, _box_mean


def test_box_mean_is_the_float_mean_bit_for_bit():
    rng = np.random.default_rng(0)
    s = SUPERSAMPLE
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        img = np.asarray(Image.fromarray(rng.integers(0, 256, (h * s, w * s), dtype=np.uint8)))
        want = np.asarray(img, dtype=np.float32).reshape(h, s, w, s).mean(axis=(1, 3))
        got = _box_mean(img)
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("r", [1, 2, 4, 5, 9])
def test_dilate_and_erode_match_the_window_sum(r):
    rng = np.random.default_rng(r)
    for _ in range(200):
        h, w = rng.integers(1, 30, 2)
        m = rng.random((h, w)) < rng.random()
        assert np.array_equal(dilate(m, r), box_sum(m, r) > 0)
        assert np.array_equal(erode(m, r), box_sum(m, r) == (2 * r + 1) ** 2)  # outside is out


def test_channel_reductions_match_numpy():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    b = a.copy()
    b[rng.random((17, 23)) < 0.3, 1] += 1
    assert np.array_equal(any_channel(a != b), (a != b).any(axis=-1))
    d = np.abs(a.astype(np.int16) - 200).astype(np.float32) / 3
    assert np.array_equal(max_channel(d), d.max(axis=-1))
    assert np.array_equal(max_channel(d.reshape(-1, 3)), d.reshape(-1, 3).max(axis=-1))

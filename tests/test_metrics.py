import numpy as np
import pytest

from mcie import metrics as M


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return a, a.copy()


def test_identical_images_score_perfectly(pair):
    a, b = pair
    bg = np.ones(a.shape[:2], dtype=bool)
    assert M.masked_ssim(a, b, bg) == 1.0
    assert M.masked_psnr(a, b, bg) == M.PSNR_CAP == 100.0
    assert M.masked_l1(a, b, bg) == 0.0
    assert M.changed_fraction(a, b, bg) == 0.0


def test_psnr_and_l1_of_a_constant_shift(pair):
    a, _ = pair
    a = np.clip(a, 20, 230).astype(np.uint8)
    b = a + np.uint8(8)
    bg = np.ones(a.shape[:2], dtype=bool)
    assert M.masked_psnr(a, b, bg) == pytest.approx(20 * np.log10(255 / 8), abs=1e-9)
    assert M.masked_l1(a, b, bg) == pytest.approx(8 / 255)
    assert M.changed_fraction(a, b, bg, tol=7) == 1.0
    assert M.changed_fraction(a, b, bg, tol=8) == 0.0


def test_changes_inside_the_mask_do_not_count(pair):
    a, b = pair
    b[10:20, 10:20] = 0
    bg = np.ones(a.shape[:2], dtype=bool)
    bg[10:20, 10:20] = False
    assert M.masked_psnr(a, b, bg) == 100.0
    assert M.masked_l1(a, b, bg) == 0.0
    # SSIM erodes the background by the window radius, so windows touching the region are out
    assert M.masked_ssim(a, b, bg) == 1.0
    assert M.masked_ssim(a, b, np.ones_like(bg)) < 0.95


def test_cropped_ssim_equals_full_map(pair):
    a, b = pair
    b[30:36, 40:44] = 255 - b[30:36, 40:44]
    bg = np.ones(a.shape[:2], dtype=bool)
    bg[0:10, 0:20] = False
    full = float(M.ssim_map(a, b)[M.background_for_ssim(bg)].mean())
    assert M.masked_ssim(a, b, bg) == pytest.approx(full, abs=1e-12)
    assert full < 1.0


def test_box_sum_erode_dilate():
    x = np.arange(35, dtype=float).reshape(5, 7)
    assert M.box_sum(x, 1)[2, 3] == x[1:4, 2:5].sum()
    assert M.box_sum(x, 1)[0, 0] == x[0:2, 0:2].sum()
    m = np.zeros((9, 9), dtype=bool)
    m[2:7, 2:7] = True
    assert M.erode(m, 1).sum() == 9 and M.dilate(m, 1).sum() == 49
    assert M.erode(np.ones((4, 4), dtype=bool), 1).sum() == 4  # the border counts as outside


def test_iou():
    a = np.zeros((4, 4), dtype=bool)
    assert M.iou(a, a) == 1.0  # empty against empty
    b = a.copy()
    b[0, :2] = True
    assert M.iou(a, b) == 0.0
    c = b.copy()
    c[1, :2] = True
    assert M.iou(b, c) == 0.5


def test_background_metrics_keys(pair):
    a, b = pair
    out = M.background_metrics(a, b, np.ones(a.shape[:2], dtype=bool))
    assert out == {"bg_ssim": 1.0, "bg_psnr": 100.0, "bg_l1": 0.0, "bg_changed": 0.0}


def test_background_metrics_equal_the_individual_functions(pair):
    a, b = pair
    b[5:15, 5:25] = np.clip(b[5:15, 5:25].astype(int) + 37, 0, 255)
    b[40:44, 60:64] = 0
    bg = np.ones(a.shape[:2], dtype=bool)
    bg[0:12, 0:12] = False
    got = M.background_metrics(a, b, bg)
    assert got["bg_ssim"] == pytest.approx(M.masked_ssim(a, b, bg), abs=1e-12)
    assert got["bg_psnr"] == pytest.approx(M.masked_psnr(a, b, bg), abs=1e-9)
    assert got["bg_l1"] == pytest.approx(M.masked_l1(a, b, bg), abs=1e-12)
    assert got["bg_changed"] == pytest.approx(M.changed_fraction(a, b, bg), abs=1e-12)

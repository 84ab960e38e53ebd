"""The real-image source: every awkward file is accounted for with the right outcome."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from awkward import make_awkward_folder
from PIL import Image

from mcie.exitcodes import UsageError
from mcie.transforms.sources.images import (
    ImageLoader,
    ImageSourceConfig,
    list_inputs,
    sample_photo_paths,
    to_rgb,
)


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("awkward"))
    return d, make_awkward_folder(d)


def test_listing_folder_glob_and_lists(awkward, tmp_path):
    d, expected = awkward
    assert list_inputs(d) == sorted(expected)
    assert list_inputs(os.path.join(d, "*.png")) == sorted(p for p in expected if p.endswith(".png"))
    rel = ["good.jpg", "sub/nested.webp"]
    csv = tmp_path / "list.csv"
    csv.write_text("url\n" + "\n".join(os.path.join(d, r) for r in rel) + "\n")
    assert list_inputs(str(csv)) == [os.path.join(d, r) for r in rel]
    lst = os.path.join(d, "l.parquet")
    pq.write_table(pa.table({"path": rel}), lst)
    assert list_inputs(lst) == [os.path.join(d, r) for r in rel]
    os.remove(lst)
    with pytest.raises(UsageError):
        list_inputs(str(tmp_path / "nope"))


def test_every_awkward_file_has_its_outcome(awkward):
    _, expected = awkward
    loader = ImageLoader(ImageSourceConfig(short_side=48, min_side=32))
    got = {}
    for path in sorted(expected):
        li = loader.load(path)
        got[path] = "ok" if li.ok else li.reason.value
        if li.ok:
            h, w, c = li.pixels.shape
            assert c == 3 and li.pixels.dtype == np.uint8
            assert h % 8 == 0 and w % 8 == 0 and min(h, w) <= 48
            assert len(li.source_hash) == 32
        else:
            assert li.error
    assert got == expected


def test_normalisation_values(awkward):
    d, _ = awkward
    loader = ImageLoader(ImageSourceConfig(short_side=512, min_side=8))
    rot = loader.load(os.path.join(d, "exif_rotated.jpg"))
    assert rot.pixels.shape == (96, 64, 3)  # stored 96x64 landscape, viewed portrait
    assert rot.info["exif_orientation"] == 6
    # 16-bit ramp 0..65535 scales to 0..255, not clipped to white
    sixteen = loader.load(os.path.join(d, "sixteen_bit.png")).pixels
    assert sixteen[0, 0, 0] == 0 and sixteen[-1, -1, 0] == 255 and 100 < sixteen[24, 40, 0] < 160
    pal = loader.load(os.path.join(d, "palette_alpha.png"))
    assert pal.info["mode"] == "P"
    anim = loader.load(os.path.join(d, "animated.gif"))
    assert anim.info["frames"] == 3 and anim.pixels.max() == 0  # first frame (black)
    cmyk = loader.load(os.path.join(d, "cmyk.jpg"))
    good = loader.load(os.path.join(d, "good.jpg"))
    assert np.abs(cmyk.pixels.astype(int) - good.pixels.astype(int)).mean() < 12


def test_resize_policy_and_rgba():
    loader = ImageLoader(ImageSourceConfig(short_side=40, multiple=8, min_side=16))
    arr = np.zeros((100, 203, 3), np.uint8)
    out = loader._resize(Image.fromarray(arr))
    assert out.shape == (40, 80, 3)  # 100x203 → 40x81 → cropped to 40x80
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]


def test_byte_limit_refuses(awkward):
    d, _ = awkward
    li = ImageLoader(ImageSourceConfig(max_bytes=100)).load(os.path.join(d, "good.jpg"))
    assert li.reason.value == "source_refused" and "max_bytes" in li.error


def test_sample_photos_are_real_photos():
    paths = sample_photo_paths()
    assert len(paths) == 6
    loader = ImageLoader(ImageSourceConfig(short_side=64))
    for p in paths:
        li = loader.load(p)
        assert li.ok and min(li.pixels.shape[:2]) == 64
        assert li.pixels.std() > 20  # a photograph, not a flat fill

"""``mcie edit`` refuses what it cannot sample, with exit 1 and one line, before it samples:
a thin strip (30000 x 1 was scaled to 960,000 pixels wide and ran without end), a sampling
size over its cap, an instruction that is not UTF-8 (the tokenizer crashed), a FIFO as the
image (it blocked for ever), a decomposition whose masks are not the image's size, that is
nested 50,000 deep, that has more regions than the model takes, or whose mask is no image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from mcie.cli import main  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.editor import MCIEEditor  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

INSTRUCTION = "Make the red circle blue and remove the star."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("ckpt") / "ckpt")
    MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).save(path)
    return path


def _png(path, w: int, h: int) -> str:
    grey = np.full((h, w, 3), 128, np.uint8)
    grey[: h // 2, : w // 2] = (200, 40, 40)  # something to edit; flat elsewhere (fast to encode)
    Image.fromarray(grey).save(path)
    return str(path)


def _edit(checkpoint, tmp_path, image, *extra, instruction=INSTRUCTION) -> list[str]:
    return ["edit", "--checkpoint", checkpoint, "--image", image, "--instruction", instruction,
            "--out", str(tmp_path / "out.png"), "--steps", "1", "--no-progress", *extra]  # fmt: skip


def _refused(argv, tmp_path, capsys, *words: str) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mcie: error: "), err
    for w in words:
        assert w in err, err
    assert not os.path.exists(tmp_path / "out.png")
    return err


@pytest.mark.parametrize("resolution", ["model", "native", "64"])
def test_a_thin_strip_is_refused_before_sampling(checkpoint, tmp_path, capsys, resolution):
    strip = _png(tmp_path / "strip.png", 30000, 1)
    argv = _edit(checkpoint, tmp_path, strip, "--resolution", resolution)
    _refused(argv, tmp_path, capsys, "30000x1, an aspect ratio over 8:1", "crop or pad it first")


def test_a_sampling_size_over_the_cap_is_refused(checkpoint, tmp_path, capsys):
    big = _png(tmp_path / "big.png", 2100, 2100)
    argv = _edit(checkpoint, tmp_path, big, "--resolution", "native")
    _refused(argv, tmp_path, capsys, "at 2100x2100 = 4410000 pixels, over mcie edit's cap of 4194304")
    # the same image at a --resolution under the cap is edited (and resized back)
    assert main(_edit(checkpoint, tmp_path, big, "--resolution", "32")) == 0
    assert Image.open(tmp_path / "out.png").size == (2100, 2100)


def test_an_image_over_the_pixel_cap_is_refused_unread(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MCIE_MAX_IMAGE_PIXELS", "1000")
    image = _png(tmp_path / "in.png", 40, 40)
    _refused(
        _edit(checkpoint, tmp_path, image), tmp_path, capsys, "40x40 = 1600 pixels, over the cap of 1000"
    )


def test_an_instruction_that_is_not_utf8_is_a_usage_error(checkpoint, tmp_path):
    """The bytes as a shell passes them: Latin-1 "café" (0xe9), which Python hands on as a
    surrogate escape."""
    image = _png(tmp_path / "in.png", 32, 32)
    argv = [os.fsencode(a) for a in _edit(checkpoint, tmp_path, image)]
    argv[argv.index(b"--instruction") + 1] = b"Make the caf\xe9 blue."
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"mcie.cli", *argv], capture_output=True, env=env
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    want = "--instruction is not valid UTF-8 text (byte 0xe9 at character 12); write it in UTF-8"
    assert err == f"mcie: error: {want}\n"
    assert not os.path.exists(tmp_path / "out.png")


def test_a_fifo_as_the_image_is_refused_unopened(checkpoint, tmp_path, capsys):
    fifo = str(tmp_path / "in.png")
    os.mkfifo(fifo)
    result = []
    t = threading.Thread(target=lambda: result.append(main(_edit(checkpoint, tmp_path, fifo))), daemon=True)
    t.start()
    t.join(120)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the blocked reader
        t.join(30)
        pytest.fail("mcie edit blocked on a FIFO named as --image")
    assert result == [1]
    assert "in.png is a FIFO, not a regular file" in capsys.readouterr().err


def _decomposition(tmp_path, data) -> str:
    path = tmp_path / "subs.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_a_decomposition_mask_of_another_size_is_a_usage_error(checkpoint, tmp_path, capsys):
    image = _png(tmp_path / "in.png", 32, 32)
    Image.fromarray(np.full((16, 24), 255, np.uint8)).save(tmp_path / "m0.png")
    subs = _decomposition(tmp_path, {"sub_instructions": [{"instruction": "make it blue", "mask": "m0.png"}]})
    _refused(_edit(checkpoint, tmp_path, image, "--decomposition", subs), tmp_path, capsys,
             "sub_instructions[0].mask is 24x16, the image 32x32")  # fmt: skip


def test_a_decomposition_nested_50000_deep_is_a_usage_error(checkpoint, tmp_path, capsys):
    image = _png(tmp_path / "in.png", 32, 32)
    subs = _decomposition(tmp_path, '{"sub_instructions": ' + "[" * 50_000 + "]" * 50_000 + "}")
    _refused(_edit(checkpoint, tmp_path, image, "--decomposition", subs), tmp_path, capsys,
             "subs.json: not a decomposition: JSON nested too deeply")  # fmt: skip


def test_more_regions_than_the_model_takes_are_said(checkpoint, tmp_path, capsys):
    image = _png(tmp_path / "in.png", 32, 32)
    items = [{"instruction": f"make part {k} blue", "box": [k * 4, 0, k * 4 + 4, 8]} for k in range(7)]
    subs = _decomposition(tmp_path, {"sub_instructions": items})
    said = "7 sub-instructions with regions; this checkpoint takes at most 5: merge or drop some"
    _refused(_edit(checkpoint, tmp_path, image, "--decomposition", subs), tmp_path, capsys, said)
    # five are edited
    subs = _decomposition(tmp_path, {"sub_instructions": items[:5]})
    assert main(_edit(checkpoint, tmp_path, image, "--decomposition", subs, "--resolution", "native")) == 0
    assert "5 regions used" in capsys.readouterr().out


@pytest.mark.parametrize(
    "item, words",
    [
        (
            {"instruction": "x", "mask": "m0.png"},
            "sub_instructions[0].mask {folder}/m0.png: not a mask image",
        ),
        ({"instruction": "x", "mask": 3}, "sub_instructions[0].mask must be a file name, got 3"),
        (
            {"instruction": "x", "box": [0, 0, 1e999, 4]},
            "sub_instructions[0].box must be [x0, y0, x1, y1] numbers",
        ),
        ({"instruction": "caf\udce9"}, "sub_instructions[0].instruction is not valid UTF-8 text (byte 0xe9"),
    ],
)
def test_a_bad_decomposition_names_what_is_wrong(checkpoint, tmp_path, capsys, item, words):
    image = _png(tmp_path / "in.png", 32, 32)
    (tmp_path / "m0.png").write_text('{"not": "an image"}')
    path = tmp_path / "subs.json"
    text = json.dumps({"sub_instructions": [item]}).replace("Infinity", "1e999")
    path.write_text(text)
    _refused(_edit(checkpoint, tmp_path, image, "--decomposition", str(path)), tmp_path, capsys,
             words.format(folder=tmp_path))  # fmt: skip

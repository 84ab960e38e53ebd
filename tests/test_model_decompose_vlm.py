"""The MLLM decomposer on a real VLM: the tiny random LLaVA of ``mcie models tiny`` (built offline
from configs, loaded from its folder by the same code as real weights), constrained decoding,
models-file sections, and ``mcie edit --decomposer mllm`` end to end."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
regex = pytest.importorskip("regex")

from PIL import Image  # noqa: E402

from mcie.cli import main  # noqa: E402
from mcie.exitcodes import UsageError  # noqa: E402
from mcie.images import decode_mask  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.decompose_vlm import (  # noqa: E402
    DecompositionVLM,
    VLMDecomposerConfig,
    decomposition_pattern,
    load_mllm_decomposer,
)
from mcie.model.editor import MCIEEditor  # noqa: E402

INSTRUCTION = "Make the red circle blue and add a small green star in the top-left corner."
W, H = 64, 48  # non-square, so a box checked against the wrong side shows up


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def vlm_dir(tiny_models) -> str:
    """The session's tiny VLM (``build_vlm`` with seed 0), read only."""
    return os.path.join(os.path.dirname(tiny_models), "vlm")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def image_file(image, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("img") / "src.png")
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("ckpt") / "ckpt")
    MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0).save(path)
    return path


def _models_file(path, vlm_dir: str, decomposer: dict | None) -> str:
    """A models file naming the tiny VLM for every stage (only its VLM sections are loaded)."""
    data = {s: {"model": vlm_dir} for s in ("planner", "editor", "judge")}
    data["grounder"] = {"detector": vlm_dir, "sam": vlm_dir}
    if decomposer is not None:
        data["decomposer"] = decomposer
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_tiny_vlm_reply_parses_into_boxes_inside_the_image(vlm_dir, image):
    dec = load_mllm_decomposer(vlm_dir)
    d = dec.decompose(INSTRUCTION, image)
    assert d.instruction == INSTRUCTION and 1 <= len(d.subs) <= 5 and d.all_located
    for s in d.subs:
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, s.box
        assert s.text[0].isalpha() and s.region(H, W).sum() == (x1 - x0) * (y1 - y0)
    # seeded: the same attempts give the same decomposition
    again = load_mllm_decomposer(vlm_dir).decompose(INSTRUCTION, image)
    assert [(s.text, s.box) for s in again.subs] == [(s.text, s.box) for s in d.subs]

    # every reply, greedy or sampled, is in the grammar (even a random model cannot leave it)
    vlm = dec.vlm
    assert isinstance(vlm, DecompositionVLM)
    pattern = regex.compile(decomposition_pattern(vlm.config))
    for attempt in range(3):
        reply = vlm(image, "Split: " + INSTRUCTION, attempt)
        assert pattern.fullmatch(reply), reply


def test_models_file_sections(vlm_dir, image, tmp_path):
    section = {"model": "vlm", "max_subs": 2, "max_text": 10, "retries": 4, "seed": 3}
    os.symlink(vlm_dir, tmp_path / "vlm")  # a relative path resolves against the file's folder
    dec = load_mllm_decomposer(_models_file(tmp_path / "m.yaml", "vlm", section))
    assert dec.retries == 4 and dec.vlm.config.max_subs == 2 and dec.vlm.config.seed == 3
    d = dec.decompose(INSTRUCTION, image)
    assert 1 <= len(d.subs) <= 2 and all(len(s.text) <= 10 for s in d.subs)
    # no decomposer section: the planner's model, default options; --vlm-retries overrides
    dec = load_mllm_decomposer(_models_file(tmp_path / "p.yaml", vlm_dir, None), retries=0)
    assert dec.retries == 0 and dec.vlm.config == VLMDecomposerConfig(retries=0)
    bad = _models_file(tmp_path / "b.yaml", vlm_dir, {"model": vlm_dir, "max_subz": 2})
    with pytest.raises(UsageError, match="unknown options.*max_subs"):
        load_mllm_decomposer(bad)
    with pytest.raises(UsageError, match="neither a model folder nor a models file"):
        load_mllm_decomposer(str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="cannot load a VLM"):
        load_mllm_decomposer(str(tmp_path))  # a folder without a model


def test_edit_with_the_mllm_decomposer(vlm_dir, image, image_file, checkpoint, tmp_path, capsys):
    expected = load_mllm_decomposer(vlm_dir).decompose(INSTRUCTION, image)
    out, masks = str(tmp_path / "out.png"), tmp_path / "masks"
    # native size: the masks written are then exactly the boxes (at the model's size they are
    # the boxes max-pooled to it and back)
    base = ["edit", "--checkpoint", checkpoint, "--image", image_file, "--instruction", INSTRUCTION,
            "--steps", "2", "--resolution", "native"]  # fmt: skip
    assert (
        main([*base, "--out", out, "--decomposer", "mllm", "--vlm", vlm_dir, "--masks-out", str(masks)]) == 0
    )
    assert f"{len(expected.subs)} sub-instructions" in capsys.readouterr().out
    img = np.asarray(Image.open(out))
    assert img.shape == (H, W, 3) and img.std() > 0
    assert sorted(os.listdir(masks)) == [f"mask{k}.png" for k in range(len(expected.subs))]
    for k, s in enumerate(expected.subs):
        mask = decode_mask((masks / f"mask{k}.png").read_bytes())
        assert np.array_equal(mask > 0, s.region(H, W) > 0)

    # a VLM that never finishes its JSON: every attempt fails → exit 2, or the grammar's decomposition
    cut = _models_file(tmp_path / "cut.yaml", vlm_dir, {"model": vlm_dir, "max_new_tokens": 5, "retries": 1})
    argv = [*base, "--out", str(tmp_path / "cut.png"), "--decomposer", "mllm", "--vlm", cut]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no valid decomposition in 2 VLM attempt(s)" in err and "Traceback" not in err
    assert main([*argv, "--fallback", "grammar", "--masks-out", str(tmp_path / "gm")]) == 0
    assert "using the grammar decomposer" in capsys.readouterr().err
    assert os.listdir(tmp_path / "gm") == ["mask0.png"]  # the grammar locates the "add" only

    # usage errors (exit 1): missing --vlm, --vlm without mllm, both --decomposition and --decomposer
    assert main([*base, "--out", out, "--decomposer", "mllm"]) == 1
    assert main([*base, "--out", out, "--vlm", vlm_dir]) == 1
    assert main([*base, "--out", out, "--fallback", "grammar"]) == 1
    assert main([*base, "--out", out, "--decomposer", "mllm", "--vlm", vlm_dir, "--vlm-retries", "-1"]) == 1
    assert main([*base, "--out", out, "--decomposition", cut, "--decomposer", "none"]) == 1

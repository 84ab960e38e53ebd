"""Safetensors only (issue 14): a model folder whose weights are pickled (``.bin``) is refused
with an error naming the folder, by every loader of a user-given model: the models.yaml
stages, the InstructPix2Pix bench editor and the CLIP / DINO scorers. Unpatched, diffusers
and transformers load such a folder (unpickling it)."""

from __future__ import annotations

import os
import shutil

import pytest

from mcie.weights import UnsafeWeightsError, pickled_only_folders

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the pickled file name each library looks for in place of its safetensors file
_PICKLED_NAME = {
    "model.safetensors": "pytorch_model.bin",
    "diffusion_pytorch_model.safetensors": "diffusion_pytorch_model.bin",
}


def pickle_only(src: str, dst: str) -> str:
    """A copy of the model folder ``src`` at ``dst`` with every safetensors file replaced by
    the pickled file (``torch.save`` of the same tensors) the libraries fall back to."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    for root, _, files in os.walk(dst):
        for f in files:
            if f.endswith(".safetensors"):
                path = os.path.join(root, f)
                torch.save(
                    load_file(path),
                    os.path.join(root, _PICKLED_NAME.get(f, f[: -len(".safetensors")] + ".bin")),
                )
                os.remove(path)
    assert pickled_only_folders(dst)
    return dst


@pytest.fixture(scope="module")
def tiny_root(tiny_models) -> str:
    return os.path.dirname(tiny_models)


def test_bench_editor_refuses_a_bin_only_pipeline(tiny_root, tmp_path, capsys):
    from mcie.bench.editors import InstructPix2PixEditor
    from mcie.cli import main

    bad = pickle_only(os.path.join(tiny_root, "instruct-pix2pix"), str(tmp_path / "ip2p-bin"))
    with pytest.raises(UnsafeWeightsError, match=f"instruct-pix2pix: '{bad}.*' holds pickled weights only"):
        InstructPix2PixEditor(bad)
    bench = str(tmp_path / "bench")
    assert main(["bench", "build", "--out", bench, "--sets", "2", "--image-size", "32"]) == 0
    run = [
        "bench",
        "run",
        "--bench",
        bench,
        "--editor",
        f"instruct-pix2pix:{bad}",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(run) == 1
    err = capsys.readouterr().err
    assert bad in err and "safetensors" in err
    # the safetensors original still loads, its weights those of the file
    import torch
    from safetensors.torch import load_file

    good = os.path.join(tiny_root, "instruct-pix2pix")
    saved = load_file(os.path.join(good, "unet", "diffusion_pytorch_model.safetensors"))
    loaded = InstructPix2PixEditor(good).pipe.unet.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


@pytest.mark.parametrize("stage", ["vlm", "owlv2", "sam", "inpaint", "vlm-judge"])
def test_models_file_with_a_bin_only_stage_is_refused_before_the_build(tiny_root, tmp_path, capsys, stage):
    from mcie.cli import main

    root = str(tmp_path / "models")
    os.makedirs(root)
    for name in ("vlm", "vlm-judge", "owlv2", "sam", "inpaint", "instruct-pix2pix"):
        src = os.path.join(tiny_root, name)
        if name == stage:
            pickle_only(src, os.path.join(root, name))
        else:
            os.symlink(src, os.path.join(root, name))
    with open(os.path.join(tiny_root, "models.yaml")) as fh:
        text = fh.read().replace(tiny_root, root)
    models = os.path.join(root, "models.yaml")
    with open(models, "w") as fh:
        fh.write(text)
    out = str(tmp_path / "out")
    assert main(["build", "--models", models, "--out", out, "--image-size", "64", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert os.path.join(root, stage) in err and "pickled weights only" in err
    assert not os.path.exists(out)


def test_model_loaders_refuse_bin_only_folders_on_the_worker(tiny_root, tmp_path):
    """The loaders a worker calls refuse too (a worker may see folders the launcher does not)."""
    from mcie.transforms.models.grounder import load_grounder
    from mcie.transforms.models.inpaint_editor import load_inpaint
    from mcie.transforms.models.vlm import load_vlm

    bad = {
        n: pickle_only(os.path.join(tiny_root, n), str(tmp_path / n))
        for n in ("vlm", "owlv2", "sam", "inpaint")
    }
    with pytest.raises(UnsafeWeightsError, match=bad["vlm"]):
        load_vlm(bad["vlm"])
    with pytest.raises(UnsafeWeightsError, match=bad["owlv2"]):
        load_grounder(bad["owlv2"], os.path.join(tiny_root, "sam"))
    with pytest.raises(UnsafeWeightsError, match=bad["sam"]):
        load_grounder(os.path.join(tiny_root, "owlv2"), bad["sam"])
    with pytest.raises(UnsafeWeightsError, match=bad["inpaint"]):
        load_inpaint(bad["inpaint"])


def _tiny_clip(path: str) -> str:
    from transformers import CLIPConfig, CLIPModel

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    cfg = CLIPConfig(
        text_config={
            **small,
            "vocab_size": 99,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    CLIPModel(cfg).save_pretrained(path)
    return path


def _tiny_dino(path: str) -> str:
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       image_size=32, patch_size=8)  # fmt: skip
    Dinov2Model(cfg).save_pretrained(path)
    return path


def test_clip_and_dino_scorers_refuse_bin_only_folders(tmp_path):
    from mcie.bench.embed import ClipScorer, DinoScorer

    clip = pickle_only(_tiny_clip(str(tmp_path / "clip")), str(tmp_path / "clip-bin"))
    dino = pickle_only(_tiny_dino(str(tmp_path / "dino")), str(tmp_path / "dino-bin"))
    with pytest.raises(UnsafeWeightsError, match=f"CLIP: '{clip}' holds pickled weights only"):
        ClipScorer(clip)
    with pytest.raises(UnsafeWeightsError, match=f"DINO: '{dino}' holds pickled weights only"):
        DinoScorer(dino)


def test_a_folder_with_safetensors_beside_a_bin_loads_the_safetensors(tmp_path):
    """A folder with both (hub snapshots often have both) passes: only safetensors is read."""
    import torch
    from transformers import AutoModel

    from mcie import weights

    path = _tiny_dino(str(tmp_path / "dino"))
    torch.save({"bogus": torch.zeros(1)}, os.path.join(path, "pytorch_model.bin"))  # never read
    assert pickled_only_folders(path) == []
    model = weights.from_pretrained(AutoModel.from_pretrained, path, "DINO")
    assert model.config.hidden_size == 16

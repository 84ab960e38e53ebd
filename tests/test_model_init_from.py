"""``--init-from``: MCIE-E1 started from a local Stable Diffusion or InstructPix2Pix folder.

The folders are tiny and random, built offline from configs and saved with diffusers' own
``save_pretrained`` (``model_index.json`` included), so they load through the same code path as
real SD1.5 / InstructPix2Pix weights. The SD folder's sizes differ from every preset's, so a
size taken from the preset instead of the folder shows up."""

from __future__ import annotations

import os
import shutil

import pytest

torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from mcie.cli import main  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.editor import Conditioning, MCIEEditor  # noqa: E402
from mcie.model.tokenizer import build_tokenizer  # noqa: E402
from mcie.transforms.models.tiny import build_instruct_pix2pix  # noqa: E402

#: what the tiny SD folder holds (none equal to the tiny preset's, see MCIEConfig)
SD_SIZES = dict(
    block_out_channels=(16, 32),
    norm_num_groups=8,
    cross_attention_dim=24,
    vae_block_out_channels=(16, 32, 32),  # VAE factor 4: size multiple 4 * max(2, src_patch 4) = 16
    text_layers=1,
    text_heads=2,
    text_intermediate_size=48,
    max_length=20,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _build_sd(path: str, seed: int = 0) -> str:
    """A tiny SD1.5-layout text-to-image folder: 4-channel UNet, VAE, CLIP text encoder, an
    in-memory CLIP tokenizer, a PNDM scheduler (v-prediction, own betas) and model_index.json."""
    s = SD_SIZES
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=s["block_out_channels"],
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),  # SD1.5's order, shortened
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=s["cross_attention_dim"],
        attention_head_dim=4,
        norm_num_groups=s["norm_num_groups"],
    )
    n = len(s["vae_block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=s["vae_block_out_channels"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    tok = build_tokenizer(s["max_length"])
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=s["cross_attention_dim"],
            intermediate_size=s["text_intermediate_size"],
            num_hidden_layers=s["text_layers"],
            num_attention_heads=s["text_heads"],
            max_position_embeddings=s["max_length"],
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    sched = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.014,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        prediction_type="v_prediction",
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory) -> str:
    return _build_sd(str(tmp_path_factory.mktemp("sd") / "sd15"))


@pytest.fixture(scope="module")
def ip2p_dir(tmp_path_factory) -> str:
    return build_instruct_pix2pix(str(tmp_path_factory.mktemp("ip2p") / "ip2p"), seed=1)


def _backbone(model: MCIEEditor) -> dict:
    """The UNet's own weights (the SACA/BCCA processors are submodules too: left out)."""
    return {k: v for k, v in model.unet.state_dict().items() if ".processor." not in k}


def _gated_inputs(model: MCIEEditor, seed: int = 0):
    """A noisy latent, timesteps and a conditioning that exercises SACA and BCCA (regions,
    sub-instructions, a background mask, a non-zero source latent)."""
    g = torch.Generator().manual_seed(seed)
    c, d, L = model.cfg.image_channels, model.cfg.cross_attention_dim, model.cfg.max_length
    noisy = torch.randn(2, c, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    regions = torch.zeros(2, 2, 8, 8)
    regions[:, 0, :4, :4] = 1
    regions[:, 1, 5:, 2:7] = 1
    cond = Conditioning(
        text=torch.randn(2, L, d, generator=g),
        src=torch.randn(2, c, 8, 8, generator=g),
        sub_text=torch.randn(2, 2, L, d, generator=g),
        regions=regions,
        bg_mask=1.0 - regions.amax(1, keepdim=True),
    )
    return noisy, t, cond


def test_sd_folder_is_widened_with_zero_source_channels(sd_dir):
    model = MCIEEditor.from_pretrained_sd(sd_dir, MCIEConfig.preset_config("tiny"))
    ref = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet").eval()
    w = model.unet.conv_in.weight
    assert w.shape[1] == 8 and model.unet.config.in_channels == 8
    assert torch.equal(w[:, :4], ref.conv_in.weight) and torch.equal(w[:, 4:], torch.zeros_like(w[:, 4:]))
    assert torch.equal(model.unet.conv_in.bias, ref.conv_in.bias)
    ours, theirs = _backbone(model), ref.state_dict()
    assert ours.keys() == theirs.keys() and all(
        torch.equal(ours[k], theirs[k]) for k in ours if k[:8] != "conv_in."
    )

    # the config describes the folder, not the preset; the scheduler is the folder's
    cfg = model.cfg
    assert {k: getattr(cfg, k) for k in SD_SIZES} == SD_SIZES
    assert cfg.text_hidden_size == 24 and cfg.vae_factor == 4 and cfg.size_multiple == 16
    assert cfg.prediction_type == "v_prediction" and model.scheduler.config.beta_end == 0.014
    assert type(model.scheduler).__name__ == "DDPMScheduler"
    assert model.tokenizer.model_max_length == 20
    again = MCIEEditor.from_pretrained_sd(sd_dir, MCIEConfig.preset_config("tiny"))
    state = again.mcie_state_dict()  # the new BCCA projections are seeded
    assert all(torch.equal(v, state[k]) for k, v in model.mcie_state_dict().items())

    # gates at 0: the MCIE-E1 UNet computes what the pretrained one does, whatever the source
    # latent, the regions and the sub-instructions
    assert set(model.gates().values()) == {0.0}
    model.eval()
    noisy, t, cond = _gated_inputs(model)
    with torch.no_grad():
        out = model.unet_forward(noisy, t, cond)
        expected = ref(noisy, t, encoder_hidden_states=cond.text, return_dict=False)[0]
    assert out.shape == expected.shape == noisy.shape
    # equal bits on our CPUs; a tolerance because the widened conv_in sums over 8 channels, not 4
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_instruct_pix2pix_folder_is_used_as_is(ip2p_dir):
    model = MCIEEditor.from_pretrained_sd(ip2p_dir, MCIEConfig.preset_config("tiny"))
    ref = UNet2DConditionModel.from_pretrained(ip2p_dir, subfolder="unet").eval()
    assert model.unet.config.in_channels == 8
    ours, theirs = _backbone(model), ref.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert model.tokenizer.model_max_length == model.cfg.max_length == 16
    model.eval()
    noisy, t, cond = _gated_inputs(model, seed=1)
    with torch.no_grad():
        out = model.unet_forward(noisy, t, cond)
        x = torch.cat([noisy, cond.src], dim=1)  # InstructPix2Pix: source latent concatenated
        expected = ref(x, t, encoder_hidden_states=cond.text, return_dict=False)[0]
    assert torch.equal(out, expected)  # same convolution, processors step for step as stock: same bits


def test_bad_folders_give_clear_errors(sd_dir, tmp_path):
    bad = str(tmp_path / "no-unet")
    shutil.copytree(sd_dir, bad, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(FileNotFoundError, match=r"lacks unet/"):
        MCIEEditor.from_pretrained_sd(bad, MCIEConfig.preset_config("tiny"))
    with pytest.raises(ValueError, match="multiple of 16"):
        MCIEEditor.from_pretrained_sd(sd_dir, MCIEConfig.preset_config("tiny", resolution=40))
    with pytest.raises(ValueError, match="pixel-space"):
        MCIEEditor.from_pretrained_sd(sd_dir, MCIEConfig.preset_config("tiny-pixel"))
    pickled = str(tmp_path / "bin-only")  # weights as .bin only: refused, never unpickled
    shutil.copytree(sd_dir, pickled)
    os.remove(os.path.join(pickled, "vae", "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match=r"cannot load vae/.*safetensors"):
        MCIEEditor.from_pretrained_sd(pickled, MCIEConfig.preset_config("tiny"))


def test_train_init_from_writes_a_loadable_checkpoint(sd_dir, tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert main(["build", "--out", out, "--samples", "16", "--image-size", "64", "--shard-size", "8",
                 "--no-progress"]) == 0  # fmt: skip
    shards = os.path.join(out, "shards", "*.tar")
    run = str(tmp_path / "run")
    args = ["train", "--shards", shards, "--out", run, "--preset", "tiny", "--max-steps", "2",
            "--batch-size", "2", "--no-progress"]  # fmt: skip
    assert main([*args, "--init-from", sd_dir]) == 0
    ckpt = os.path.join(run, "checkpoint-2")
    model = MCIEEditor.load(ckpt)
    assert {k: getattr(model.cfg, k) for k in SD_SIZES} == SD_SIZES
    assert model.unet.config.in_channels == 8 and model.cfg.prediction_type == "v_prediction"
    assert model.scheduler.config.beta_end == 0.014 and model.tokenizer.model_max_length == 20
    # the frozen parts are the pretrained ones, bit for bit
    ref_vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae")
    assert all(torch.equal(v, ref_vae.state_dict()[k]) for k, v in model.vae.state_dict().items())

    capsys.readouterr()
    bad = str(tmp_path / "no-unet")
    shutil.copytree(sd_dir, bad, ignore=shutil.ignore_patterns("unet"))
    assert main([*args[:4], str(tmp_path / "run2"), *args[5:], "--init-from", bad]) == 1
    err = capsys.readouterr().err
    assert "lacks unet/" in err and "Traceback" not in err

"""MCIE-E1's SACA/BCCA processors on a tiny seeded UNet (32/64 channels, 16x24 latents)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

torch = pytest.importorskip("torch")

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from mcie.model.attention import MCIEAttnProcessor  # noqa: E402
from mcie.model.config import MCIEConfig  # noqa: E402
from mcie.model.editor import Conditioning, MCIEEditor, background_from_regions  # noqa: E402
from mcie.model.regions import (  # noqa: E402
    RegionCache,
    background_to_grid,
    layer_grid,
    regions_to_grid,
    saca_visibility,
)
from mcie.model.training import training_loss  # noqa: E402

H, W = 16, 24  # non-square latent on purpose


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model() -> MCIEEditor:
    return MCIEEditor.from_config(MCIEConfig.preset_config("tiny"), seed=0)


def _cond(
    model: MCIEEditor, regions: torch.Tensor, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
    g = torch.Generator().manual_seed(seed)
    b, k = regions.shape[:2]
    noisy, src = torch.randn(b, 4, H, W, generator=g), torch.randn(b, 4, H, W, generator=g)
    text = model.encode_ids(model.tokenize(["make the red circle blue and remove the star"] * b))
    subs = ["make the red circle blue", "remove the star", "add a small green star at the top"][:k]
    sub_text = model.encode_ids(torch.stack([model.tokenize(subs)] * b))
    cond = Conditioning(text, src, sub_text, regions, background_from_regions(regions))
    return noisy, torch.tensor([10, 700][:b]), cond


def _regions(b: int = 2) -> torch.Tensor:
    r = torch.zeros(b, 3, H, W)
    r[:, 0, 2:6, 3:9] = 1
    r[:, 1, 9:11, 15:16] = 1  # a 2x1 region: must survive max-pooling to the 4x6 grid
    r[:, 2, 4:12, 6:20] = 1  # overlaps region 0
    return r


def _set_gates(model: MCIEEditor, value: float) -> None:
    for p in model.processors.values():
        p.saca_gate.data.fill_(value)
        p.bcca_gate.data.fill_(value)


def test_gates_at_zero_equal_plain_unet(model):
    noisy, t, cond = _cond(model, _regions())
    plain = copy.deepcopy(model.unet)
    plain.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        ours = model.unet_forward(noisy, t, cond)
        ref = plain(torch.cat([noisy, cond.src], 1), t, encoder_hidden_states=cond.text).sample
    assert ours.shape == (2, 4, H, W)
    assert torch.equal(ours, ref)  # bit for bit, not merely close
    # the extra branches are live: non-zero gates change the output, finitely
    m2 = copy.deepcopy(model)
    _set_gates(m2, 1.0)
    with torch.no_grad():
        gated = m2.unet_forward(noisy, t, cond)
    assert torch.isfinite(gated).all()
    assert (gated - ref).abs().max() > 1e-3


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_no_nan_when_regions_cover_nothing_or_everything(model, fill):
    m2 = copy.deepcopy(model)
    _set_gates(m2, 1.0)
    regions = torch.full((2, 3, H, W), fill)
    noisy, t, cond = _cond(m2, regions)
    with torch.no_grad():
        out = m2.unet_forward(noisy, t, cond)
    assert torch.isfinite(out).all()
    if fill == 0.0:  # nobody is inside a region: SACA sees only the global tokens, BCCA everything
        m3 = copy.deepcopy(m2)
        m3.set_switches(saca=False)
        with torch.no_grad():
            assert torch.allclose(out, m3.unet_forward(noisy, t, cond), atol=1e-5)


def _attention_layer() -> tuple[Attention, MCIEAttnProcessor]:
    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=32, heads=4, dim_head=8)
    proc = MCIEAttnProcessor(32, src_token_dim=8, saca=True, bcca=False)
    proc.saca_gate.data.fill_(1.0)  # the regional branch alone
    attn.set_processor(proc)
    return attn, proc


def test_query_outside_region_gives_zero_weight_to_its_tokens():
    attn, _ = _attention_layer()
    hw = (4, 6)
    regions = torch.zeros(1, 2, *hw)
    regions[0, 0, :, :3] = 1  # left half
    regions[0, 1, :2, 2:] = 1  # top right, overlapping region 0 in column 2
    hidden = torch.randn(1, 24, 32)
    text, subs = torch.randn(1, 5, 32), torch.randn(1, 2, 5, 32)
    # the mask itself: no query outside region 1 sees a token of sub-instruction 1
    vis = saca_visibility(regions, 5, 5)[0]  # (24, 5 + 2*5)
    outside1 = ~regions[0, 1].flatten().bool()
    assert not vis[outside1][:, 10:15].any()
    assert vis[~outside1][:, 10:15].all()
    assert vis.any(dim=-1).all()  # every query keeps a visible token
    # and in the layer: changing sub-instruction 1's tokens leaves those queries bit-identical
    kw = {"latent_hw": hw, "regions": regions}
    with torch.no_grad():
        a = attn(hidden, text, sub_tokens=subs, **kw)
        subs2 = subs.clone()
        subs2[:, 1] = 100 * torch.randn(5, 32)
        b = attn(hidden, text, sub_tokens=subs2, **kw)
    assert torch.equal(a[0, outside1], b[0, outside1])
    assert (a[0, ~outside1] - b[0, ~outside1]).abs().amax(-1).min() > 0
    # queries in no region attend to the complex instruction only
    neither = ~regions[0].bool().any(0).flatten()
    assert neither.any()
    assert vis[neither][:, :5].all() and not vis[neither][:, 5:].any()


def _per_region_reference(attn, proc, hidden, text, subs, regions, latent_hw, src=None, bg=None):
    """The MCIE layer computed the slow, obvious way, in float64: per sample, the queries of
    each distinct set of regions attend (plain softmax) to the tokens of exactly those
    sub-instructions; queries in no region keep the global attention."""
    b, n, _ = hidden.shape
    heads = attn.heads

    def split(x):  # (B, L, C) -> (B, heads, L, d)
        return x.view(x.shape[0], -1, heads, x.shape[-1] // heads).transpose(1, 2).double()

    def attend(q, k, v):  # (heads, n, d), (heads, L, d) -> (heads, n, d)
        return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v

    n_sub = subs.shape[2]
    q, kg, vg = split(attn.to_q(hidden)), split(attn.to_k(text)), split(attn.to_v(text))
    ks, vs = split(attn.to_k(subs.flatten(1, 2))), split(attn.to_v(subs.flatten(1, 2)))
    grid = layer_grid(latent_hw, n)
    inside = regions_to_grid(regions, grid).flatten(2).transpose(1, 2) > 0.5  # (B, N, K)
    saca_gate = proc.saca_gate.double()
    outs = []
    for i in range(b):
        a = attend(q[i], kg[i], vg[i])  # the stock layer
        parts = [a[:, j : j + 1] for j in range(n)]
        for pattern in {tuple(row.tolist()) for row in inside[i] if row.any()}:
            rows = [j for j in range(n) if tuple(inside[i, j].tolist()) == pattern]
            tok = [t for k, on in enumerate(pattern) if on for t in range(k * n_sub, (k + 1) * n_sub)]
            regional = attend(q[i][:, rows], ks[i][:, tok], vs[i][:, tok])
            for r, j in enumerate(rows):
                parts[j] = a[:, j : j + 1] + saca_gate * (regional[:, r : r + 1] - a[:, j : j + 1])
        out = torch.cat(parts, dim=1)  # (heads, N, d)
        if src is not None:
            k_src = split(proc.to_k_src(src[i : i + 1]))[0]
            v_src = split(proc.to_v_src(src[i : i + 1]))[0]
            bg_i = background_to_grid(bg[i : i + 1], grid).flatten().double()[None, :, None]  # (1, N, 1)
            out = out + proc.bcca_gate.double() * bg_i * attend(q[i], k_src, v_src)
        outs.append(out)
    out = torch.stack(outs).transpose(1, 2).reshape(b, n, -1).float()  # (B, N, C)
    return attn.to_out[1](attn.to_out[0](out))


def _layouts() -> dict[str, torch.Tensor]:
    """Region layouts at latent (8, 12), seen by a layer on the (4, 6) grid."""
    base = torch.zeros(2, 3, 8, 12)
    base[:, 0, 1:5, 2:7] = 1
    base[:, 1, 5, 9] = 1  # one latent cell: must survive max-pooling
    base[:, 2, 3:8, 5:12] = 1  # overlaps region 0
    base[1] = base[1].flip(-1)  # the samples differ
    empty = base.clone()
    empty[:, 2] = 0  # a sub-instruction with no region anywhere
    empty[0, 1] = 0  # and one with a region in sample 1 only
    lonely = base.clone()
    lonely[1] = 0  # a sample with no region: padding rows in the fused call
    everything = torch.ones(2, 3, 8, 12)
    everything[:, 1:] = 0
    return {
        "overlapping": base,
        "empty-region": empty,
        "sample-without-regions": lonely,
        "whole-image": everything,
        "no-region": torch.zeros(2, 3, 8, 12),
        "guidance-3x": torch.cat([empty] * 3),  # InstructPix2Pix guidance blocks
    }


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("bcca", [False, True])
def test_fused_regional_attention_equals_per_region_attention(layout, bcca):
    torch.manual_seed(0)
    regions = _layouts()[layout]
    b, latent_hw = regions.shape[0], (8, 12)
    attn = Attention(query_dim=32, cross_attention_dim=32, heads=4, dim_head=8)
    proc = MCIEAttnProcessor(32, src_token_dim=8, saca=True, bcca=bcca)
    proc.saca_gate.data.fill_(0.7)
    if bcca:
        proc.bcca_gate.data.fill_(0.4)
    attn.set_processor(proc)
    hidden = torch.randn(b, 24, 32, requires_grad=True)  # the (4, 6) grid
    text, subs = torch.randn(b, 7, 32), torch.randn(b, 3, 5, 32)
    extra = {}
    if bcca:
        src, bg = torch.randn(b, 6, 8), background_from_regions(regions)
        bg[-1] = 0  # a dropped image: no BCCA for that sample
        extra = {"src_tokens": src, "bg_mask": bg}
    weights = torch.randn(b, 24, 32)  # a fixed projection of the output, to compare gradients

    def run(fn):
        attn.zero_grad()
        proc.zero_grad()
        hidden.grad = None
        out = fn()
        (out * weights).sum().backward()
        gate = proc.saca_gate.grad  # None where no query is inside a region
        gate = torch.zeros(()) if gate is None else gate.clone()
        return out.detach(), hidden.grad.clone(), gate, attn.to_k.weight.grad.clone()

    fused = run(lambda: attn(hidden, text, sub_tokens=subs, regions=regions, latent_hw=latent_hw, **extra))
    ref = run(
        lambda: _per_region_reference(
            attn, proc, hidden, text, subs, regions, latent_hw, extra.get("src_tokens"), extra.get("bg_mask")
        )
    )
    for got, want, what in zip(
        fused, ref, ("output", "grad hidden", "grad saca gate", "grad to_k"), strict=True
    ):
        assert torch.allclose(got, want, atol=2e-5, rtol=1e-4), (what, (got - want).abs().max())
    if layout == "no-region":  # SACA then changes nothing: its gate gets no gradient
        assert fused[2] == 0
    else:
        assert fused[2].abs() > 1e-4


def test_attention_runs_an_efficient_sdpa_kernel_not_the_math_fallback():
    """On a CPU, SDPA's flash kernel serves the global, regional (masked) and BCCA calls,
    forward and backward."""
    attn = Attention(query_dim=32, cross_attention_dim=32, heads=4, dim_head=8)
    proc = MCIEAttnProcessor(32, src_token_dim=8, gate_init=1.0)
    attn.set_processor(proc)
    regions = _layouts()["overlapping"]
    hidden = torch.randn(2, 24, 32, requires_grad=True)
    kw = dict(sub_tokens=torch.randn(2, 3, 5, 32), regions=regions, latent_hw=(8, 12))
    kw.update(src_tokens=torch.randn(2, 6, 8), bg_mask=background_from_regions(regions))
    with torch.profiler.profile() as prof:
        attn(hidden, torch.randn(2, 7, 32), **kw).sum().backward()
    names = [e.key for e in prof.key_averages()]
    flash = [n for n in names if "scaled_dot_product_flash_attention" in n]
    assert sum(e.count for e in prof.key_averages() if e.key in flash) >= 3 * 2  # 3 calls, fwd + bwd
    assert not [n for n in names if "math" in n], names


def test_region_cache_builds_once_and_notices_changes():
    cache, grid = RegionCache(), (4, 6)
    regions = _layouts()["overlapping"]
    plan = cache.region_plan(regions, grid, 5, torch.float32)
    assert plan.rows is not None and plan.mask.shape[:2] == (2, 1) and plan.mask.shape[-1] == 3 * 5
    assert cache.region_plan(regions, grid, 5, torch.float32) is plan  # the next layer: same plan
    assert cache.region_plan(regions.clone(), grid, 5, torch.float32) is plan  # equal values
    assert cache.region_plan(regions, (8, 12), 5, torch.float32) is not plan  # another grid
    regions[:, 2] = 0  # changed in place: rebuilt, without sub-instruction 2's tokens
    changed = cache.region_plan(regions, grid, 5, torch.float32)
    assert changed is not plan and changed.keep.tolist() == [0, 1] and changed.mask.shape[-1] == 2 * 5
    with torch.inference_mode():  # no version counter: compared by value
        frozen = _layouts()["overlapping"]
        first = cache.region_plan(frozen, grid, 5, torch.float32)
        frozen.zero_()
        assert cache.region_plan(frozen, grid, 5, torch.float32).rows is None
        assert first.rows is not None
    bg = background_from_regions(_layouts()["overlapping"])
    assert cache.background(bg, grid, torch.float32) is cache.background(bg, grid, torch.float32)
    assert cache.background(bg, grid, torch.float32).shape == (2, 24, 1)


def test_layer_grid_and_max_pooled_regions():
    assert layer_grid((16, 24), 16 * 24) == (16, 24)
    assert layer_grid((16, 24), 8 * 12) == (8, 12)
    assert layer_grid((10, 6), 6) == (3, 2)  # odd sides round up, as stride-2 convs do
    with pytest.raises(ValueError):
        layer_grid((16, 24), 50)
    r = torch.zeros(1, 1, 16, 16)
    r[0, 0, 5, 9] = 1  # one latent cell
    small = regions_to_grid(r, (2, 2))
    assert small.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


def test_one_optimiser_step_moves_the_gates(model):
    m2 = copy.deepcopy(model)
    assert set(m2.gates().values()) == {0.0}
    g = torch.Generator().manual_seed(0)
    batch = {
        "src": torch.rand(2, 3, 32, 48, generator=g) * 2 - 1,
        "tgt": torch.rand(2, 3, 32, 48, generator=g) * 2 - 1,
        "regions": torch.nn.functional.interpolate(_regions(), size=(32, 48)),
        "input_ids": m2.tokenize(["make the red circle blue"] * 2),
        "sub_ids": torch.stack([m2.tokenize(["make the red circle blue", "remove the star", ""])] * 2),
    }
    opt = torch.optim.AdamW(m2.trainable_parameters(), lr=1e-3)
    loss = training_loss(m2, batch, g, dropout=0.0)
    loss.backward()
    opt.step()
    gates = m2.gates()
    assert len(gates) == 2 * len(m2.processors) == 2 * 4  # down, mid and 2 up cross-attention layers
    assert all(v != 0.0 for v in gates.values()), gates


def test_checkpoint_keeps_mcie_weights_out_of_the_unet(model, tmp_path):
    m2 = copy.deepcopy(model)
    _set_gates(m2, 0.5)
    m2.save(str(tmp_path))
    unet = UNet2DConditionModel.from_pretrained(str(tmp_path), subfolder="unet")
    assert unet.config.in_channels == 8
    assert not [k for k in unet.state_dict() if "processor" in k or "_src" in k]
    extra = load_file(str(tmp_path / "mcie" / "attn_processors.safetensors"))
    assert len(extra) == 4 * 4 and all(v.item() == 0.5 for k, v in extra.items() if k.endswith("_gate"))
    back = MCIEEditor.load(str(tmp_path))
    noisy, t, cond = _cond(m2, _regions())
    with torch.no_grad():
        assert torch.equal(back.unet_forward(noisy, t, cond), m2.unet_forward(noisy, t, cond))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="allowed"):
        MCIEConfig.preset_config("huge")
    with pytest.raises(ValueError, match="multiple"):
        MCIEConfig.preset_config("tiny", resolution=36)
    sd = MCIEConfig.preset_config("sd15")
    assert sd.block_out_channels == (320, 640, 1280, 1280) and sd.cross_attention_dim == 768
    assert MCIEConfig.from_json(sd.to_json()) == sd


def test_guidance_blocks_line_up_per_sample(model):
    """Under guidance the batch is [text+image, image only, neither] in blocks of B: block 0 must
    give what a plain B-batch gives (per-sample regions stay with their sample)."""
    m2 = copy.deepcopy(model)
    _set_gates(m2, 1.0)
    regions = _regions()
    regions[1] = regions[1].flip(-1)  # the two samples differ
    noisy, t, cond = _cond(m2, regions)
    empty = m2.encode_ids(m2.tokenize([""] * 2))
    empty_sub = empty[:, None].expand_as(cond.sub_text)
    zeros = torch.zeros_like(cond.src)
    three = Conditioning(
        torch.cat([cond.text, empty, empty]),
        torch.cat([cond.src, cond.src, zeros]),
        torch.cat([cond.sub_text, empty_sub, empty_sub]),
        torch.cat([cond.regions] * 3),
        torch.cat([cond.bg_mask, cond.bg_mask, torch.zeros_like(cond.bg_mask)]),
    )
    neither = Conditioning(empty, zeros, empty_sub, cond.regions, torch.zeros_like(cond.bg_mask))
    with torch.no_grad():
        out3 = m2.unet_forward(torch.cat([noisy] * 3), torch.cat([t] * 3), three).chunk(3)
        single = m2.unet_forward(noisy, t, cond)
        alone = m2.unet_forward(noisy, t, neither)
    assert torch.allclose(out3[0], single, atol=1e-5)
    assert torch.allclose(out3[2], alone, atol=1e-5)
    assert not torch.allclose(out3[0], out3[2], atol=1e-3)


def test_tiny_pixel_trains_on_velocity():
    m = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel"), seed=0)
    assert m.scheduler.config.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(0)
    regions = torch.zeros(2, 5, 32, 32)
    regions[:, 0, 4:12, 4:12] = 1
    batch = {
        "src": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
        "tgt": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
        "regions": regions,
        "input_ids": m.tokenize(["make the red circle blue"] * 2),
        "sub_ids": torch.stack([m.tokenize(["make the red circle blue", "", "", "", ""])] * 2),
    }
    noise, t = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([100, 900])
    from mcie.model.training import batch_conditioning, diffusion_loss

    with torch.no_grad():
        loss = diffusion_loss(m, batch, noise, t)
        x0 = batch["tgt"]
        pred = m.unet_forward(
            m.scheduler.add_noise(x0, noise, t), t, batch_conditioning(m, batch, batch["src"])
        )
        expected = torch.nn.functional.mse_loss(pred, m.scheduler.get_velocity(x0, noise, t))
    assert torch.allclose(loss, expected)
    with pytest.raises(ValueError, match="prediction_type"):
        MCIEConfig.preset_config("tiny", prediction_type="sample")


def test_only_slots_with_a_region_are_encoded_and_the_prediction_is_unchanged():
    """batch_conditioning encodes the sub-instruction slots with a region in the batch only;
    the UNet's prediction equals the one from every slot encoded (SACA reads no other slot)."""
    from mcie.model.training import batch_conditioning

    m = MCIEEditor.from_config(MCIEConfig.preset_config("tiny-pixel"), seed=0)
    _set_gates(m, 1.0)
    g = torch.Generator().manual_seed(1)
    regions = torch.zeros(2, 5, 32, 32)
    regions[0, 0, 4:12, 4:12] = 1
    regions[1, 2, 16:28, 8:20] = 1  # slots 0 and 2 used somewhere, 1, 3, 4 nowhere
    subs = ["make the red circle blue", "remove the star", "add a green square", "", ""]
    batch = {
        "src": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
        "regions": regions,
        "input_ids": m.tokenize(["make the red circle blue and add a green square"] * 2),
        "sub_ids": torch.stack([m.tokenize(subs, m.cfg.sub_length)] * 2),
    }
    noisy, t = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([100, 900])
    with torch.no_grad():
        cond = batch_conditioning(m, batch, batch["src"])
        assert cond.sub_text[:, [1, 3, 4]].abs().sum() == 0  # never encoded
        full = dataclasses.replace(cond, sub_text=m.encode_ids(batch["sub_ids"]))
        assert torch.equal(cond.sub_text[:, [0, 2]], full.sub_text[:, [0, 2]])
        assert torch.allclose(m.unet_forward(noisy, t, cond), m.unet_forward(noisy, t, full), atol=1e-6)

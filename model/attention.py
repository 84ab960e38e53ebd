"""SACA and BCCA: the two attention additions of MCIE-E1, as diffusers attention processors.

Both live in one processor, :class:`MCIEAttnProcessor`, installed on every cross-attention
layer (``attn2``) of the UNet; a layer has exactly one processor, and the switches ``saca`` /
``bcca`` turn each addition off for ablations. Self-attention layers get
:class:`SelfAttnProcessor`, the stock processor that merely accepts (and ignores) MCIE's named
inputs, since diffusers hands every ``cross_attention_kwargs`` key to every attention layer.

Inputs arrive through ``cross_attention_kwargs`` as explicitly named parameters (diffusers drops
keys a processor's ``__call__`` does not name):

- ``latent_hw``: (h, w) of the UNet input. The processor cannot recover them from
  (B, h*w, C) for non-square images; each layer's grid is derived from them.
- ``sub_tokens``: (B, K, L, D) text-encoder states of each sub-instruction.
- ``regions``: (B, K, h, w) in {0, 1}, sub-instruction k's region at latent resolution.
- ``src_tokens``: (B, S, Ds) tokens of the source image (see :mod:`mcie.model.source`).
- ``bg_mask``: (B, 1, h, w) in [0, 1], where BCCA may act (background); 0 for a sample whose
  image conditioning is dropped, which removes its source tokens' effect.

Under InstructPix2Pix guidance the batch is 3*B in blocks ``[text+image, image only, neither]``;
callers repeat per-sample tensors with ``torch.cat([m] * 3)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


def layer_grid(latent_hw: tuple[int, int], n: int) -> tuple[int, int]:
    """The (h, w) grid of a layer with ``n`` queries: the latent grid halved (rounding up, as
    diffusers' stride-2 convolutions do) until its size is ``n``."""
    h, w = int(latent_hw[0]), int(latent_hw[1])
    while h * w > n:
        h, w = -(-h // 2), -(-w // 2)
    if h * w != n:
        raise ValueError(f"no grid of latent {latent_hw} has {n} positions")
    return h, w


def regions_to_grid(regions: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, K, h, w) regions → (B, K, gh, gw) with max-pooling, so a small region still covers at
    least one cell of a coarse grid."""
    if tuple(regions.shape[-2:]) == tuple(grid):
        return regions
    return F.adaptive_max_pool2d(regions.float(), grid)


def saca_visibility(regions: torch.Tensor, n_global: int, n_sub: int) -> torch.Tensor:
    """Which key tokens each query may see in the regional branch.

    ``regions``: (B, K, gh, gw) in {0, 1} on the layer grid. Keys are the global instruction's
    ``n_global`` tokens followed by K blocks of ``n_sub`` tokens. A query inside region k sees
    k's tokens (several regions: their union); a query in no region sees the global tokens.
    Every row therefore has at least one visible token. Returns bool (B, gh*gw, n_global + K*n_sub).
    """
    inside = (regions > 0.5).flatten(2).transpose(1, 2)  # (B, N, K)
    outside_all = ~inside.any(dim=-1, keepdim=True)  # (B, N, 1)
    vis_global = outside_all.expand(-1, -1, n_global)  # (B, N, Lg)
    vis_sub = inside.repeat_interleave(n_sub, dim=-1)  # (B, N, K*L): token j belongs to sub j // L
    return torch.cat([vis_global, vis_sub], dim=-1)


def _heads(x: torch.Tensor, attn: Attention) -> torch.Tensor:
    b, n, inner = x.shape
    return x.view(b, n, attn.heads, inner // attn.heads).transpose(1, 2)  # (B, heads, n, d)


class SelfAttnProcessor(AttnProcessor2_0):
    """diffusers' default processor, quietly accepting MCIE's named inputs (self-attention
    layers have no use for them)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        latent_hw: tuple[int, int] | None = None,
        sub_tokens: torch.Tensor | None = None,
        regions: torch.Tensor | None = None,
        src_tokens: torch.Tensor | None = None,
        bg_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class MCIEAttnProcessor(nn.Module):
    """Cross-attention with Spatial-Aware (SACA) and Background-Consistent (BCCA) branches.

    Output before ``to_out`` (per query, per head)::

        a   = attention(q, global instruction tokens)                 # the stock layer
        a  += saca_gate * (regional(q) - a)                            # SACA
        a  += bcca_gate * background * attention(q, source tokens)     # BCCA

    ``regional`` attends over [global tokens, sub-instruction tokens] with the visibility of
    :func:`saca_visibility` (masked keys get exactly zero weight). BCCA follows diffusers'
    ``IPAdapterAttnProcessor2_0``: new ``to_k_src`` / ``to_v_src`` projections (randomly
    initialised, so gradients flow) and a gate that starts at zero. With both gates at 0 the
    layer computes exactly what ``AttnProcessor2_0`` computes.
    """

    def __init__(
        self,
        hidden_size: int,
        src_token_dim: int,
        saca: bool = True,
        bcca: bool = True,
        gate_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.saca, self.bcca = saca, bcca
        if saca:
            self.saca_gate = nn.Parameter(torch.full((), float(gate_init)))
        if bcca:
            self.to_k_src = nn.Linear(src_token_dim, hidden_size, bias=False)
            self.to_v_src = nn.Linear(src_token_dim, hidden_size, bias=False)
            self.bcca_gate = nn.Parameter(torch.full((), float(gate_init)))

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        latent_hw: tuple[int, int] | None = None,
        sub_tokens: torch.Tensor | None = None,
        regions: torch.Tensor | None = None,
        src_tokens: torch.Tensor | None = None,
        bg_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # The stock path, step for step as AttnProcessor2_0, so gates at 0 give identical bits.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, N, d)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B, heads, Lg, d)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )  # (B, heads, N, d)

        n_queries = query.shape[2]
        if self.saca and sub_tokens is not None and regions is not None:
            hidden_states = self._saca(attn, query, key, value, hidden_states, sub_tokens, regions, latent_hw)
        if self.bcca and src_tokens is not None and bg_mask is not None:
            if latent_hw is None:
                raise ValueError("BCCA needs latent_hw=(h, w) to place the background mask")
            grid = layer_grid(latent_hw, n_queries)
            # background on the layer grid: 1 only where every covered latent cell is background
            # (min-pooling), so the edit regions keep their max-pooled size
            bg = (
                -F.adaptive_max_pool2d(-bg_mask.float(), grid)
                if tuple(bg_mask.shape[-2:]) != grid
                else bg_mask
            )
            bg = bg.flatten(2).transpose(1, 2)[:, None].to(query.dtype)  # (B, 1, N, 1)
            k_src = _heads(self.to_k_src(src_tokens.to(query.dtype)), attn)  # (B, heads, S, d)
            v_src = _heads(self.to_v_src(src_tokens.to(query.dtype)), attn)
            src_out = F.scaled_dot_product_attention(query, k_src, v_src)  # (B, heads, N, d)
            hidden_states = hidden_states + self.bcca_gate.to(query.dtype) * bg * src_out

        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states

    def _saca(self, attn, query, key, value, global_out, sub_tokens, regions, latent_hw) -> torch.Tensor:
        if latent_hw is None:
            raise ValueError("SACA needs latent_hw=(h, w): (B, h*w, C) alone cannot tell h from w")
        b, k, n_sub, _ = sub_tokens.shape
        if regions.shape[:2] != (b, k):
            raise ValueError(
                f"regions {tuple(regions.shape)} do not match sub_tokens {tuple(sub_tokens.shape)}"
            )
        sub = sub_tokens.flatten(1, 2).to(query.dtype)  # (B, K*L, D)
        if attn.norm_cross:
            sub = attn.norm_encoder_hidden_states(sub)
        k_sub, v_sub = _heads(attn.to_k(sub), attn), _heads(attn.to_v(sub), attn)  # (B, heads, K*L, d)
        if attn.norm_k is not None:
            k_sub = attn.norm_k(k_sub)
        keys = torch.cat([key, k_sub], dim=2)  # (B, heads, Lg + K*L, d)
        values = torch.cat([value, v_sub], dim=2)
        grid = layer_grid(latent_hw, query.shape[2])
        visible = saca_visibility(regions_to_grid(regions, grid), key.shape[2], n_sub)  # (B, N, Lg+K*L)
        regional = F.scaled_dot_product_attention(query, keys, values, attn_mask=visible[:, None])
        return global_out + self.saca_gate.to(query.dtype) * (regional - global_out)


def install_processors(
    unet, src_token_dim: int, saca: bool = True, bcca: bool = True, gate_init: float = 0.0
) -> dict[str, nn.Module]:
    """Put :class:`MCIEAttnProcessor` on every cross-attention layer of ``unet`` and
    :class:`SelfAttnProcessor` on the others (gates start at ``gate_init``). Returns the MCIE
    processors by layer name."""
    procs: dict = {}
    mcie: dict[str, nn.Module] = {}
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = _hidden_size(unet, name)
            mcie[name] = procs[name] = MCIEAttnProcessor(
                hidden, src_token_dim, saca=saca, bcca=bcca, gate_init=gate_init
            )
        else:
            procs[name] = SelfAttnProcessor()
    unet.set_attn_processor(procs)
    return mcie


def _hidden_size(unet, name: str) -> int:
    """Inner width of the attention layer named ``name`` (diffusers' naming)."""
    module = unet.get_submodule(name.removesuffix(".processor"))
    return module.to_q.out_features

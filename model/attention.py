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

from mcie.model.regions import RegionCache, layer_grid


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
    :func:`~mcie.model.regions.saca_visibility` (masked keys get exactly zero weight): a query
    in no region sees the global tokens only, so ``regional(q) = a`` there, and the branch is
    computed as one masked attention call on the queries inside a region against the tokens
    of the sub-instructions that have one (:class:`~mcie.model.regions.RegionPlan`).
    BCCA follows diffusers' ``IPAdapterAttnProcessor2_0``: new ``to_k_src`` / ``to_v_src``
    projections (randomly initialised, so gradients flow) and a gate that starts at zero. With
    both gates at 0 the layer computes exactly what ``AttnProcessor2_0`` computes.

    ``cache`` holds what every layer derives alike from ``regions`` and ``bg_mask``; give all
    processors of a UNet the same one (:func:`install_processors` does).
    """

    def __init__(
        self,
        hidden_size: int,
        src_token_dim: int,
        saca: bool = True,
        bcca: bool = True,
        gate_init: float = 0.0,
        cache: RegionCache | None = None,
    ) -> None:
        super().__init__()
        self.saca, self.bcca = saca, bcca
        self.cache = cache if cache is not None else RegionCache()
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
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)  # (B, N, C)
        if self.saca and sub_tokens is not None and regions is not None:
            hidden_states = self._saca(attn, query, hidden_states, sub_tokens, regions, latent_hw)
        if self.bcca and src_tokens is not None and bg_mask is not None:
            if latent_hw is None:
                raise ValueError("BCCA needs latent_hw=(h, w) to place the background mask")
            bg = self.cache.background(bg_mask, layer_grid(latent_hw, n_queries), query.dtype)  # (B, N, 1)
            k_src = _heads(self.to_k_src(src_tokens.to(query.dtype)), attn)  # (B, heads, S, d)
            v_src = _heads(self.to_v_src(src_tokens.to(query.dtype)), attn)
            src_out = F.scaled_dot_product_attention(query, k_src, v_src)  # (B, heads, N, d)
            src_out = src_out.transpose(1, 2).reshape(hidden_states.shape)  # (B, N, C)
            hidden_states = hidden_states + self.bcca_gate.to(query.dtype) * bg * src_out

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states

    def _saca(self, attn, query, global_out, sub_tokens, regions, latent_hw) -> torch.Tensor:
        if latent_hw is None:
            raise ValueError("SACA needs latent_hw=(h, w): (B, h*w, C) alone cannot tell h from w")
        b, k, n_sub, _ = sub_tokens.shape
        if regions.shape[:2] != (b, k):
            raise ValueError(
                f"regions {tuple(regions.shape)} do not match sub_tokens {tuple(sub_tokens.shape)}"
            )
        plan = self.cache.region_plan(regions, layer_grid(latent_hw, query.shape[2]), n_sub, query.dtype)
        if plan.rows is None:  # no query inside a region: the branch equals the stock attention
            return global_out
        sub = sub_tokens[:, plan.keep].flatten(1, 2).to(query.dtype)  # (B, K'*L, D)
        if attn.norm_cross:
            sub = attn.norm_encoder_hidden_states(sub)
        k_sub, v_sub = _heads(attn.to_k(sub), attn), _heads(attn.to_v(sub), attn)  # (B, heads, K'*L, d)
        if attn.norm_k is not None:
            k_sub = attn.norm_k(k_sub)
        # whole rows of 'C' values are gathered and added back (index_select / index_add, whose
        # backward passes are each other), which is far cheaper on a CPU than a strided gather
        b, heads, _, head_dim = query.shape
        channels = heads * head_dim
        q_rows = query.transpose(1, 2).reshape(-1, channels)  # (B*N, C)
        q_in = q_rows.index_select(0, plan.rows).view(b, -1, heads, head_dim)  # (B, M, heads, d)
        q_in = q_in.transpose(1, 2)  # (B, heads, M, d)
        regional = F.scaled_dot_product_attention(q_in, k_sub, v_sub, attn_mask=plan.mask)  # (B, heads, M, d)
        regional = regional.transpose(1, 2).reshape(-1, channels)  # (B*M, C)
        out_rows = global_out.reshape(-1, channels)  # (B*N, C)
        change = (regional - out_rows.index_select(0, plan.rows)) * plan.valid  # 0 on padding rows
        # rows are distinct positions, so each change is added once
        out_rows = out_rows.index_add(0, plan.rows, self.saca_gate.to(query.dtype) * change)
        return out_rows.view(global_out.shape)  # (B, N, C)


def install_processors(
    unet, src_token_dim: int, saca: bool = True, bcca: bool = True, gate_init: float = 0.0
) -> dict[str, nn.Module]:
    """Put :class:`MCIEAttnProcessor` on every cross-attention layer of ``unet`` and
    :class:`SelfAttnProcessor` on the others (gates start at ``gate_init``). Returns the MCIE
    processors by layer name."""
    procs: dict = {}
    mcie: dict[str, nn.Module] = {}
    cache = RegionCache()  # one per UNet: its layers share what they derive from the regions
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = _hidden_size(unet, name)
            mcie[name] = procs[name] = MCIEAttnProcessor(
                hidden, src_token_dim, saca=saca, bcca=bcca, gate_init=gate_init, cache=cache
            )
        else:
            procs[name] = SelfAttnProcessor()
    unet.set_attn_processor(procs)
    return mcie


def _hidden_size(unet, name: str) -> int:
    """Inner width of the attention layer named ``name`` (diffusers' naming)."""
    module = unet.get_submodule(name.removesuffix(".processor"))
    return module.to_q.out_features

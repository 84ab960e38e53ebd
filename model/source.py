"""BCCA's source-image tokens: the source latent (or pixels) cut into patches, plus positions.

Why this and not an image encoder: the source latent is already what the UNet is conditioned
on, costs nothing to compute, and keeps every background detail the branch is meant to copy
(a CLIP image embedding keeps semantics, not pixels). Patches keep the token count small
(p=4: 256 tokens for a 64x64 SD latent). A fixed 2-D sin-cos position code is appended so
that a background query can find the source patch at its own place; the per-layer
``to_k_src`` / ``to_v_src`` projections of :class:`~mcie.model.attention.MCIEAttnProcessor`
learn the rest.
"""

from __future__ import annotations

import math

import torch


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h*w, dim) sin-cos positions, half the features for y and half for x, in row-major order."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys = torch.linspace(0, 1, h, device=device)[:, None] * freqs * math.pi * h  # (h, dim/4)
    xs = torch.linspace(0, 1, w, device=device)[:, None] * freqs * math.pi * w  # (w, dim/4)
    py = torch.cat([ys.sin(), ys.cos()], dim=-1)[:, None, :].expand(h, w, dim // 2)  # (h, w, dim/2)
    px = torch.cat([xs.sin(), xs.cos()], dim=-1)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([py, px], dim=-1).reshape(h * w, dim).to(dtype)


def source_tokens(src: torch.Tensor, patch: int, pos_dim: int) -> torch.Tensor:
    """(B, C, h, w) source latent → (B, (h/p)*(w/p), C*p*p + pos_dim) tokens."""
    b, c, h, w = src.shape
    if h % patch or w % patch:
        raise ValueError(f"source grid {h}x{w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = src.reshape(b, c, gh, patch, gw, patch)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * patch * patch)  # (B, S, C*p*p)
    pos = sincos_2d(gh, gw, pos_dim, device=src.device, dtype=src.dtype)  # (S, pos_dim)
    return torch.cat([x, pos[None].expand(b, -1, -1)], dim=-1)  # (B, S, C*p*p + pos_dim)

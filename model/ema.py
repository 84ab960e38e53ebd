"""An exponential moving average (EMA) of MCIE-E1's trainable weights.

After optimiser step ``s`` (1-based, counted over the whole run, so a resumed run continues the
warm-up where it stopped)::

    ema = d_s * ema + (1 - d_s) * weights,   d_s = min(decay, (1 + s) / (10 + s))

The warm-up term is the one of diffusers' ``EMAModel`` (without ``use_ema_warmup``): early on
the average follows the weights closely, so a short run or a run started from pretrained
weights is not dominated by its first steps. We keep our own small class rather than
``EMAModel`` because checkpoints here are safetensors only, keyed by parameter name, and
swapping the averaged weights in and out of the live parameters (for saving and validation)
must not copy a second UNet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMAWeights:
    """Shadow copies of named parameters, updated with :meth:`update` after each optimiser step."""

    def __init__(self, named_parameters: Iterable[tuple[str, nn.Parameter]], decay: float = 0.9999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.params = dict(named_parameters)
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    def decay_at(self, step: int) -> float:
        """The decay used for the update after optimiser step ``step`` (1-based)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the current weights (call after optimiser step ``step``)."""
        w = 1.0 - self.decay_at(step)
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach(), w)  # ema + w * (p - ema)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the averaged weights (swapped in, not copied)."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def _swap(self) -> None:
        for name, p in self.params.items():
            p.data, self.shadow[name] = self.shadow[name], p.data

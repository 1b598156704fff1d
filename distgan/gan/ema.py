"""Exponential moving average of the generator (Karras et al.'s G_ema).

The average lives in a plain fp32 copy of G, outside any DeepSpeed engine, so
that sampling and export never touch ZeRO partitions. The caller hands
``update`` a module whose parameters are whole (gathered under ZeRO-3).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class GeneratorEMA:
    def __init__(self, module: nn.Module, half_life_kimg: float, rampup: Optional[float]):
        self.module = module.float().eval().requires_grad_(False)
        self.half_life_kimg = half_life_kimg
        self.rampup = rampup

    def beta(self, images_seen: int, batch: int) -> float:
        """Decay per update for a global batch of ``batch`` images after ``images_seen``."""
        half_life = self.half_life_kimg * 1000.0
        if self.rampup is not None:
            # Early on the average would be dominated by the random init; shorten it.
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    @torch.no_grad()
    def copy_from(self, source: nn.Module) -> None:
        for dst, src in zip(self.module.parameters(), source.parameters()):
            dst.copy_(src.detach().float())
        self._copy_buffers(source)

    @torch.no_grad()
    def update(self, source: nn.Module, images_seen: int, batch: int) -> None:
        beta = self.beta(images_seen, batch)
        # One fused op over all tensors (per-tensor kernels on CPU, a multi-tensor kernel on CUDA).
        torch._foreach_lerp_(list(self.module.parameters()), [p.detach().float() for p in source.parameters()],
                             1.0 - beta)
        self._copy_buffers(source)

    def _copy_buffers(self, source: nn.Module) -> None:
        # BatchNorm statistics are not averaged: G_ema uses G's current ones.
        for dst, src in zip(self.module.buffers(), source.buffers()):
            dst.copy_(src.detach().to(dst.dtype))

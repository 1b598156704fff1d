"""Differentiable augmentation of D's inputs (DiffAugment, Zhao et al. 2020) for small data sets.

Reals and fakes go through the same random transformations before D, in the D
steps and in the G step alike; every operation is differentiable in its input,
so G's gradient passes through it. The policy is a comma-separated list of
registered operations, applied in order, e.g. ``augment.policy=color,translation,cutout``.
Randomness comes from torch's global generator on the samples' device, which
the checkpoint saves, so a resumed run draws the same augmentations.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from distgan.core.registry import Registry

Augment = Callable[[torch.Tensor], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augmentation")


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise shaped [N, 1, 1, 1] to broadcast over one image each."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


@AUGMENTS.register("color")
def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness shift in [-0.5, 0.5), saturation scale in [0, 2), contrast scale in [0.5, 1.5)."""
    x = x + (_per_sample(x) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (_per_sample(x) * 2) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_sample(x) + 0.5) + mean


@AUGMENTS.register("translation")
def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in whole pixels, filling with zeros."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shift_y = torch.randint(-max_y, max_y + 1, (n, 1, 1), device=x.device)
    shift_x = torch.randint(-max_x, max_x + 1, (n, 1, 1), device=x.device)
    grid_y, grid_x = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                                    indexing="ij")
    # Index into a one-pixel zero border; clamping sends everything shifted out onto it.
    rows = (grid_y + shift_y + 1).clamp(0, h + 1)
    cols = (grid_x + shift_x + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


@AUGMENTS.register("cutout")
def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image size per image, centred anywhere (clipped at the edges)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    centre_y = torch.randint(0, h + (1 - size_y % 2), (n, 1, 1), device=x.device)
    centre_x = torch.randint(0, w + (1 - size_x % 2), (n, 1, 1), device=x.device)
    grid_y, grid_x = torch.meshgrid(torch.arange(size_y, device=x.device), torch.arange(size_x, device=x.device),
                                    indexing="ij")
    rows = (grid_y + centre_y - size_y // 2).clamp(0, h - 1)
    cols = (grid_x + centre_x - size_x // 2).clamp(0, w - 1)
    mask = torch.ones(n, h, w, device=x.device, dtype=x.dtype)
    mask[torch.arange(n, device=x.device).view(n, 1, 1), rows, cols] = 0
    return x * mask.unsqueeze(1)


def parse_policy(policy: str) -> list[str]:
    return [name.strip() for name in policy.split(",") if name.strip()]


def build_augment(policy: str) -> Augment:
    """The composed augmentation for a policy string; the identity for an empty policy."""
    ops = [AUGMENTS.get(name, key="augment.policy") for name in parse_policy(policy)]

    def apply(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x

    return apply

"""Mode coverage on a mixture of Gaussians: the standard mode-collapse benchmark (ring8).

A sample is *near* a mode when it lies within ``k`` standard deviations of the
mode's centre (k = 3, as in VEEGAN and PacGAN); a mode is *covered* when at least
``min_share`` of the samples are near it, so a handful of stray points does not
count as capturing a mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModeCoverage:
    modes_covered: int
    """Modes with at least ``min_share`` of the samples near them."""
    near_share: float
    """Share of samples within ``k`` standard deviations of some mode (the 'high-quality' share)."""
    per_mode: tuple[int, ...]
    """Samples near each mode."""


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float, k: float = 3.0,
                  min_share: float = 0.01) -> ModeCoverage:
    """``samples`` [N, D] against mode ``centres`` [M, D] of an isotropic mixture with ``std``."""
    distances = torch.cdist(samples.double(), centres.double())
    nearest, which = distances.min(dim=1)
    near = nearest <= k * std
    per_mode = torch.bincount(which[near], minlength=len(centres))
    covered = int((per_mode >= min_share * len(samples)).sum())
    return ModeCoverage(covered, float(near.double().mean()), tuple(int(c) for c in per_mode))

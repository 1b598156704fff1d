"""Built-in data sets that need no download: real handwritten digits and the 2-D ring of Gaussians."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distgan.config import DataConfig
from distgan.data import DATASETS, Dataset, Source, require_resolution

DIGIT_RESOLUTIONS = (8, 16, 32, 64)
RING_RADIUS, RING_STD, RING_MODES = 2.0, 0.02, 8


def load_digits(cfg: DataConfig) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 16 grey levels), upsampled bilinearly."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    x = torch.from_numpy(raw.images).float().div_(16.0).unsqueeze(1)
    if cfg.resolution != 8:
        x = F.interpolate(x, size=(cfg.resolution, cfg.resolution), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)
    return Dataset(x=x.contiguous(), labels=torch.from_numpy(raw.target).long(), kind="image", name="digits")


def ring8_modes() -> torch.Tensor:
    angles = torch.arange(RING_MODES, dtype=torch.float64) * (2 * math.pi / RING_MODES)
    return (RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def load_ring8(cfg: DataConfig) -> Dataset:
    """A mixture of 8 Gaussians (std 0.02) on a circle of radius 2: the classic mode-collapse test."""
    # A fixed seed, not train.seed: the data set must be the same for every run and every rank.
    gen = torch.Generator().manual_seed(8)
    labels = torch.randint(RING_MODES, (cfg.num_samples,), generator=gen)
    x = ring8_modes()[labels] + RING_STD * torch.randn(cfg.num_samples, 2, generator=gen)
    return Dataset(x=x, labels=labels, kind="points", name="ring8")


def _no_check(cfg: DataConfig) -> None:
    pass


DATASETS.register("digits")(Source(
    shape=lambda cfg: (1, cfg.resolution, cfg.resolution),
    load=load_digits,
    check=lambda cfg: require_resolution(cfg, DIGIT_RESOLUTIONS),
))
DATASETS.register("ring8")(Source(shape=lambda cfg: (2,), load=load_ring8, check=_no_check))

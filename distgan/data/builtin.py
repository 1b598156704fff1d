"""Built-in data sets that need no download: real handwritten digits and the 2-D ring of Gaussians."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distgan.config import DataConfig
from distgan.data.packaged import sklearn_digits
from distgan.data.source import DATASETS, Dataset, Source, require_resolution

DIGIT_RESOLUTIONS = (8, 16, 32, 64)
RING_MODES, RING_RADIUS, RING_STD = 8, 2.0, 0.02
RING_SEED = 8
"""Fixed rather than ``train.seed``: every run and every rank must see the same points."""


def load_digits(cfg: DataConfig) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), upsampled bilinearly to R."""
    images, labels = sklearn_digits()
    x = torch.from_numpy(images).float().div_(16.0).unsqueeze(1)
    if cfg.resolution != 8:
        x = F.interpolate(x, size=(cfg.resolution, cfg.resolution), mode="bilinear", align_corners=False)
    # Bilinear weights are convex, so x stays in [0, 1]; the clamp only guards float rounding.
    x = x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)
    return Dataset(x=x.contiguous(), labels=torch.from_numpy(labels), kind="image", name="digits")


def ring8_modes() -> torch.Tensor:
    """The 8 mode centres [8, 2], evenly spaced on a circle of radius 2, mode 0 at (2, 0)."""
    angles = torch.arange(RING_MODES, dtype=torch.float64) * (2 * math.pi / RING_MODES)
    return (RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def load_ring8(cfg: DataConfig) -> Dataset:
    """A mixture of 8 Gaussians (std 0.02) on a circle of radius 2, the classic mode-collapse test."""
    gen = torch.Generator().manual_seed(RING_SEED)
    labels = torch.randint(RING_MODES, (cfg.num_samples,), generator=gen)
    x = ring8_modes()[labels] + RING_STD * torch.randn(cfg.num_samples, 2, generator=gen)
    return Dataset(x=x, labels=labels, kind="points", name="ring8")


def _any_config(cfg: DataConfig) -> None:
    """ring8 has no resolution; ``num_samples`` is range-checked by the config itself."""


DATASETS.register("digits")(Source(
    shape=lambda cfg: (1, cfg.resolution, cfg.resolution),
    check=lambda cfg: require_resolution(cfg, DIGIT_RESOLUTIONS),
    load=load_digits,
    classes=lambda cfg: tuple(str(d) for d in range(10)),
))
DATASETS.register("ring8")(Source(shape=lambda cfg: (2,), check=_any_config, load=load_ring8,
                                  classes=lambda cfg: tuple(f"mode{m}" for m in range(RING_MODES))))

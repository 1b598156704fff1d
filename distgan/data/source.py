"""What a data source is: a registry entry that knows a sample's shape, checks its config and loads itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch

from distgan.config import ConfigError, DataConfig
from distgan.core.registry import Registry


@dataclass
class Dataset:
    x: torch.Tensor
    """float32 samples, N x *shape; images scaled to [-1, 1]."""
    labels: Optional[torch.Tensor]
    """int64 class labels (N), when the source has them."""
    kind: Literal["image", "points"]
    """``image`` (C x H x W in [-1, 1]) or ``points`` (unbounded vectors)."""
    name: str
    """The data set's name, or the folder's name."""
    skipped: int = 0
    """Unreadable files skipped under ``data.skip_corrupt``."""

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class Source:
    shape: Callable[[DataConfig], tuple[int, ...]]
    """Shape of one sample, without loading the data."""
    check: Callable[[DataConfig], None]
    """Raises ConfigError, naming the key, when the data cannot be loaded as configured."""
    load: Callable[[DataConfig], Dataset]
    classes: Callable[[DataConfig], tuple[str, ...]] = lambda cfg: ()
    """Class names, label i naming class i; empty when the samples carry no labels."""


DATASETS: Registry[Source] = Registry("data set")


def require_resolution(cfg: DataConfig, allowed: tuple[int, ...]) -> None:
    if cfg.resolution not in allowed:
        raise ConfigError(f"data.resolution: {cfg.name} is available at {', '.join(map(str, allowed))} px, "
                          f"got {cfg.resolution}")

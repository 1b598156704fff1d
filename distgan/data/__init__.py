"""Training data behind one interface: built-in sets by ``data.name``, image folders by ``data.path``.

Every source yields a ``Dataset`` held in memory on each worker, and
``ShardedBatches`` deals each rank its own slice of every global batch. The
built-in sets are tiny; image folders at cluster scale will stream through
Ray Data behind this same interface instead of being copied to every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch

from distgan.config import Config, ConfigError, DataConfig
from distgan.data.sampler import ShardedBatches
from distgan.registry import Registry

__all__ = ["Dataset", "DATASETS", "ShardedBatches", "check", "data_shape", "load_dataset"]


@dataclass
class Dataset:
    x: torch.Tensor
    """float32 samples, N x *shape; images scaled to [-1, 1]."""
    labels: Optional[torch.Tensor]
    """int64 class labels (N), when the source has them."""
    kind: Literal["image", "points"]
    name: str
    skipped: int = 0
    """Unreadable files skipped (``data.skip_corrupt``)."""


@dataclass(frozen=True)
class Source:
    shape: Callable[[DataConfig], tuple[int, ...]]
    load: Callable[[DataConfig], Dataset]
    check: Callable[[DataConfig], None]


DATASETS: Registry[Source] = Registry("data set")


def _source(cfg: DataConfig) -> Source:
    if cfg.path is not None:
        from distgan.data import folder

        return folder.SOURCE
    return DATASETS.get(cfg.name, key="data.name")


def data_shape(cfg: DataConfig) -> tuple[int, ...]:
    """The shape of one sample, without loading the data."""
    return _source(cfg).shape(cfg)


def check(cfg: Config) -> None:
    """Fail early (before Ray starts) on a data set that cannot be loaded."""
    _source(cfg.data).check(cfg.data)


def load_dataset(cfg: DataConfig) -> Dataset:
    return _source(cfg).load(cfg)


def require_resolution(cfg: DataConfig, allowed: tuple[int, ...]) -> None:
    if cfg.resolution not in allowed:
        raise ConfigError(f"data.resolution: {cfg.name} is available at {', '.join(map(str, allowed))} px, "
                          f"got {cfg.resolution}")


from distgan.data import builtin  # noqa: E402,F401  (registers the built-in sets)

"""Training data behind one interface: built-in sets by ``data.name``, image folders by ``data.path``.

Every source knows three things: the shape of one sample (answered without
loading anything, so models can be checked and built first), a cheap check
run by the driver before any Ray work and again by each worker, and how to
load itself into a ``Dataset`` held in memory on each worker. ``ShardedBatches``
then deals each rank its own slice of every global batch.

The built-in sets are tiny, and so are the folders this targets today. Image
folders at cluster scale will stream through Ray Data (``read_images`` plus
``ray.train.get_dataset_shard``) behind this same ``Source`` interface instead
of being decoded in full on every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch

from distgan.config import Config, ConfigError, DataConfig
from distgan.data.sampler import ShardedBatches
from distgan.registry import Registry

__all__ = ["DATASETS", "Dataset", "ShardedBatches", "Source", "check", "class_names", "data_shape",
           "load_dataset"]


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


def _source(cfg: DataConfig) -> Source:
    if cfg.path is not None:
        from distgan.data import folder  # PIL is only needed for folders

        return folder.SOURCE
    return DATASETS.get(cfg.name, key="data.name")


def data_shape(cfg: DataConfig) -> tuple[int, ...]:
    """The shape of one sample: (C, R, R) for images, (D,) for points."""
    return _source(cfg).shape(cfg)


def class_names(cfg: DataConfig) -> tuple[str, ...]:
    """The data set's classes (empty when unlabelled), answered without loading it."""
    return _source(cfg).classes(cfg)


def check(cfg: Config) -> None:
    """Fail early (before Ray starts) on data that cannot be loaded as configured."""
    from distgan import models

    if models.is_super_resolution(cfg.model):
        from distgan.data.sr import check_sr

        check_sr(cfg.data, cfg.model.scale)
        return
    _source(cfg.data).check(cfg.data)


def load_dataset(cfg: DataConfig) -> Dataset:
    return _source(cfg).load(cfg)


def require_resolution(cfg: DataConfig, allowed: tuple[int, ...]) -> None:
    if cfg.resolution not in allowed:
        raise ConfigError(f"data.resolution: {cfg.name} is available at {', '.join(map(str, allowed))} px, "
                          f"got {cfg.resolution}")


from distgan.data import builtin, sr  # noqa: E402,F401  (registers the built-in sets; needs DATASETS above)

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

from distgan.config import DataConfig
from distgan.data import builtin, photos  # noqa: F401  (the built-in sets register themselves on import)
from distgan.data.sampler import ShardedBatches
from distgan.data.source import DATASETS, Dataset, Source, require_resolution

__all__ = ["DATASETS", "Dataset", "ShardedBatches", "Source", "check", "class_names", "data_shape",
           "load_dataset", "require_resolution"]


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


def check(cfg: DataConfig) -> None:
    """Fail early (before Ray starts) on data that cannot be loaded as configured."""
    _source(cfg).check(cfg)


def load_dataset(cfg: DataConfig) -> Dataset:
    return _source(cfg).load(cfg)



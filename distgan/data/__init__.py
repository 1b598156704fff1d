"""Training data behind one interface: built-in sets by ``data.name``, image folders by ``data.path``.

Every source knows three things: the shape of one sample (answered without
loading anything, so models can be checked and built first), a cheap check
run by the driver before any Ray work and again by each worker, and how to
load itself into a ``Dataset`` held in memory on each worker. ``ShardedBatches``
then deals each rank its own slice of every global batch.

The built-in sets are tiny and stay in memory. Image folders stream by
default (``data.stream``): listed, not read, before the first step, then
decoded ahead of the step by a ``Streamer`` (Ray tasks under Ray) in the order
``ShardedBatches`` fixes (``distgan.data.stream``). ``open_feed`` hides which.
"""

from __future__ import annotations

from typing import Optional

import torch

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, is_uri, local_path
from distgan.data import builtin, photos  # noqa: F401  (the built-in sets register themselves on import)
from distgan.data import shards
from distgan.data.feed import Feed, MemoryFeed, data_seed, streams
from distgan.data.sampler import ShardedBatches
from distgan.data.stream import ImageStream, Streamer, ThreadStreamer, reference_images
from distgan.data.source import DATASETS, Dataset, Source, require_resolution

__all__ = ["DATASETS", "Dataset", "Feed", "ShardedBatches", "Source", "Streamer", "ThreadStreamer", "check",
           "class_names", "data_seed", "data_shape", "load_dataset", "open_feed", "reference_set",
           "require_resolution", "streams"]


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
    if streams(cfg):
        from distgan.data.catalog import catalog  # PIL is only needed for folders

        return catalog(cfg).classes
    return _source(cfg).classes(cfg)


def check(cfg: DataConfig) -> None:
    """Fail early (before Ray starts) on data that cannot be loaded as configured. Streamed data is only
    listed: its files are read (and a bad one named) when their turn comes, so the check costs the same
    for a thousand files as for a million."""
    if streams(cfg):
        from distgan.data.catalog import catalog  # PIL is only needed for folders

        catalog(cfg)
        return
    if cfg.path is not None and (is_uri(cfg.path) or (local_path(cfg.path) / shards.INDEX).is_file()):
        raise ConfigError(f"data.path {display(cfg.path)!r}: a URI or a shard set is read while streaming; "
                          f"data.stream=false holds a local folder in memory: set data.stream to auto or true")
    _source(cfg).check(cfg)


def load_dataset(cfg: DataConfig) -> Dataset:
    return _source(cfg).load(cfg)




def open_feed(cfg: DataConfig, batch_size: int, rank: int, world: int, seed: int, streamer: Streamer,
              device: torch.device = torch.device("cpu")) -> Feed:
    """This rank's training batches of ``cfg``'s data, streamed or from memory (``data.stream``); the order is
    seeded by ``data.seed``, else by ``seed`` (``train.seed``)."""
    seed = data_seed(cfg, seed)
    if streams(cfg):
        from distgan.data.catalog import catalog  # PIL is only needed for folders

        return ImageStream(catalog(cfg), cfg, batch_size, rank, world, seed, streamer, device)
    return MemoryFeed(load_dataset(cfg), batch_size, rank, world, seed, cfg.shuffle)


def reference_set(cfg: DataConfig, n: int, seed: int, streamer: Streamer, feed: Optional[Feed] = None
                  ) -> tuple[torch.Tensor, Optional[torch.Tensor], str]:
    """Real samples evaluation compares with, and their kind: a subset of ``n`` chosen by ``seed`` when the
    data streams, else the whole set held in memory (``feed``'s, or loaded)."""
    if streams(cfg):
        from distgan.data.catalog import catalog  # PIL is only needed for folders

        x, labels = reference_images(catalog(cfg), cfg, n, seed, streamer)
        return x, labels, "image"
    dataset = feed.dataset if isinstance(feed, MemoryFeed) else load_dataset(cfg)
    return dataset.x, dataset.labels, dataset.kind

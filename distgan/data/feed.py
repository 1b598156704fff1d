"""A rank's training batches behind one interface, whether the data set is held in memory or streamed.

``distgan.data.open_feed`` picks by ``data.stream``: the small built-in sets (and folders with ``stream: false``)
are decoded once into memory and dealt by ``ShardedBatches``; image folders stream through
``distgan.data.stream.ImageStream``. Both give the same batches for the same seed (tested), so a
config does not change its meaning when its data starts streaming.
"""

from __future__ import annotations

import time
from typing import Optional, Protocol

import torch

from distgan.config import ConfigError, DataConfig
from distgan.data.sampler import ShardedBatches
from distgan.data.source import Dataset


class Feed(Protocol):
    skipped: set[int]
    """Unreadable samples met so far (streaming under ``data.skip_corrupt``)."""

    def next_batch(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]: ...

    def pop_wait(self) -> float:
        """Seconds spent waiting for batches since the last call."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class MemoryFeed:
    """A data set held in memory, dealt by ``ShardedBatches``."""

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, world: int, seed: int, shuffle: bool = True):
        self.dataset = dataset
        self.sampler = ShardedBatches(len(dataset), batch_size, rank, world, seed, shuffle)
        self.skipped: set[int] = set()
        self.wait_s = 0.0

    def next_batch(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        started = time.perf_counter()
        index = self.sampler.next_indices()
        batch = self.dataset.x[index], self.dataset.labels[index] if self.dataset.labels is not None else None
        self.wait_s += time.perf_counter() - started
        return batch

    def pop_wait(self) -> float:
        wait, self.wait_s = self.wait_s, 0.0
        return wait

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def streams(cfg: DataConfig) -> bool:
    """Whether ``data.stream`` (``auto``: image folders stream, built-in sets do not) streams this data."""
    if cfg.stream == "auto":
        return cfg.path is not None
    if cfg.stream and cfg.path is None:
        raise ConfigError(f"data.stream: true streams an image folder (data.path); the built-in data set "
                          f"{cfg.name!r} is held in memory: set data.stream to auto or false")
    return bool(cfg.stream)


def data_seed(cfg: DataConfig, train_seed: int) -> int:
    """What seeds the data order: ``data.seed``, else ``train.seed``."""
    return train_seed if cfg.seed is None else cfg.seed

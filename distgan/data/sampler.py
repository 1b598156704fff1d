"""Deals each rank its own slice of every global batch, reproducibly and resumably."""

from __future__ import annotations

import torch


class ShardedBatches:
    """Epochs of a seeded permutation shared by all ranks; rank r takes slice r of each global batch.

    Every rank gets the same number of full batches (the epoch's tail that
    would not fill a global batch is dropped), so no rank runs out of data
    while others still wait for it in a collective. The position is two
    integers, which is all a checkpoint needs for an exact resume.
    """

    def __init__(self, num_items: int, batch_size: int, rank: int, world_size: int, seed: int):
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(f"the data set has {num_items} items, fewer than one global batch of {global_batch} "
                             f"(train.batch_size={batch_size} x {world_size} workers); lower train.batch_size")
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.epoch, self.batch = 0, 0
        self._order = self._permutation(0)

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=gen)

    def next_indices(self) -> torch.Tensor:
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        start = (self.batch * self.world_size + self.rank) * self.batch_size
        self.batch += 1
        return self._order[start:start + self.batch_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._order = self._permutation(self.epoch)

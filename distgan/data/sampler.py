"""Deals each rank its own slice of every global batch, reproducibly and resumably."""

from __future__ import annotations

import numpy as np
import torch


class ShardedBatches:
    """Epochs of a seeded permutation shared by all ranks; rank r takes slice r of each global batch.

    Every rank draws the same permutation, so no indices need to be exchanged,
    and within a step the ranks' slices are disjoint. The tail of each epoch
    that would not fill a whole global batch is dropped: every rank then has
    the same number of batches, and none runs out while the others wait for
    it in a collective. The position is two integers, all a checkpoint needs
    for a bit-exact resume.
    """

    def __init__(self, num_items: int, batch_size: int, rank: int, world_size: int, seed: int, shuffle: bool = True):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got batch_size={batch_size}, "
                             f"rank={rank}, world_size={world_size}")
        global_batch = batch_size * world_size
        if num_items < global_batch:
            raise ValueError(f"the data set has {num_items} items, fewer than one global batch of {global_batch} "
                             f"(train.batch_size={batch_size} x {world_size} workers); use a train.batch_size "
                             f"of at most {num_items // world_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self._batches_per_epoch = num_items // global_batch
        self.epoch, self.batch = 0, 0
        self._order = self._permutation(0)

    @property
    def batches_per_epoch(self) -> int:
        """Batches each rank gets per epoch (the same on every rank)."""
        return self._batches_per_epoch

    def _permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        # torch's CPU generator keeps only the low 32 bits of a seed, so (seed, epoch) is hashed into
        # them rather than packed side by side, where the seed would be cut off.
        mixed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(mixed)
        return torch.randperm(self.num_items, generator=gen)

    def next_indices(self) -> torch.Tensor:
        """This rank's item indices (int64, ``batch_size``) for the next step."""
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        start = (self.batch * self.world_size + self.rank) * self.batch_size
        self.batch += 1
        return self._order[start:start + self.batch_size].clone()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch, "global_batch": self.batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        saved_global = int(state.get("global_batch", self.batch_size * self.world_size))
        if saved_global != self.batch_size * self.world_size:
            # Saved with another worker count (a resharded resume): the epoch goes on after the items it had
            # consumed, rounded up to whole global batches of ours so that none is seen twice in the epoch.
            consumed = batch * saved_global
            batch = min(-(-consumed // (self.batch_size * self.world_size)), self.batches_per_epoch)
        # A position past the end means the batch size or world size changed since it was saved.
        if epoch < 0 or not 0 <= batch <= self.batches_per_epoch:
            raise ValueError(f"sampler state {state} does not fit {self.batches_per_epoch} batches per epoch; "
                             f"was it saved with a different train.batch_size or number of workers?")
        self.epoch, self.batch = epoch, batch
        self._order = self._permutation(epoch)

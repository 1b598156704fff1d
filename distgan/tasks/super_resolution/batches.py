"""Random aligned (LR, HR) training crops of the super-resolution data, dealt to the ranks.

Every sample is a pure function of (seed, global batch number, position in the
global batch): rank r takes positions ``[r*B, (r+1)*B)`` of global batch k. So
one worker with batch 2B sees exactly the samples two workers with batch B see
together, a resume needs only k, and nothing depends on what came before.

A batch is an ``SRBatch`` (G's input, the content losses' target, D's real
images). Under ``data.degradation.device: trainer`` the data path stops short of
the degradation and hands an ``HRBatch`` instead (the plain HR crops and each
sample's generator state after its crop draws); ``degrade_on`` then makes the
same ``SRBatch`` from it in one batched call on the training worker's device.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

from distgan.config import DataConfig, DegradationConfig
from distgan.data.degradations import degrade, degrade_batch, draw, from_uint8
from distgan.tasks.super_resolution.data import SRData


class SRBatch(NamedTuple):
    """A super-resolution training batch, float32 in [-1, 1]."""

    lr: torch.Tensor
    """G's input [B, C, R/s, R/s]."""
    target: torch.Tensor
    """The pixel and perceptual losses' target [B, C, R, R]: the HR crops, unsharp-masked under ``sharpen_gt``."""
    real: torch.Tensor
    """D's real images [B, C, R, R]: the plain HR crops (the same tensor as ``target`` when it is not sharpened)."""


class HRBatch(NamedTuple):
    """A batch still to be degraded, on the training worker (``data.degradation.device: trainer``)."""

    hr: torch.Tensor
    """The plain HR crops [B, C, R, R], float32 in [-1, 1]."""
    states: torch.Tensor
    """[B, S] uint8, CPU: each sample's ``torch.Generator`` state after its crop draws, from which the degradation
    draws exactly what it would have drawn where the crop was cut."""


Sample = tuple[torch.Tensor, ...]
"""One sample: (lr, target, real), or (HR crop, generator state) when degraded on the trainer."""


def degrades_on_trainer(cfg: DataConfig) -> bool:
    """Whether the training worker degrades the crops (paired LR images are not degraded anywhere)."""
    return cfg.degradation.device == "trainer" and cfg.lr_path is None


def collate(samples: list[Sample]) -> Union[SRBatch, HRBatch]:
    if len(samples[0]) == 2:
        hr, states = zip(*samples)
        return HRBatch(torch.stack(hr), torch.stack(states))
    lr, target, real = zip(*samples)
    targets = torch.stack(target)
    # Unsharpened, D's real images are the targets: one tensor, not a copy of every crop.
    same = all(t is r for t, r in zip(target, real))
    return SRBatch(torch.stack(lr), targets, targets if same else torch.stack(real))


def generator_at(state: torch.Tensor) -> torch.Generator:
    """A CPU generator in ``state`` (a row of ``HRBatch.states``)."""
    gen = torch.Generator()
    # A copy of its own: torch 2.13's set_state misreads a view into a larger tensor (a row of the batch's
    # states) and fails, or crashes, past the first row.
    gen.set_state(state.clone())
    return gen


def degrade_on(batch: HRBatch, scale: int, deg: DegradationConfig, device: torch.device) -> SRBatch:
    """The ``SRBatch`` the data path would have made of ``batch``'s crops, made on ``device`` in one batched call.

    Float32 whatever the engines compute in: the pipeline ends on the 8-bit grid (bf16 cannot hold it) and
    its blurs, resizes and noise would shift grey levels in half precision; G's step casts the result."""
    hr = batch.hr.to(device=device, dtype=torch.float32)
    draws = [draw(tuple(hr.shape[1:]), scale, deg, generator_at(state)) for state in batch.states]
    lr, target = degrade_batch(hr, scale, deg, draws)
    return SRBatch(lr, target, hr)


class SRBatches:
    """This rank's share of each global batch of random aligned (LR, HR) training crops.

    Sample j of global batch k draws from a generator seeded by ``SeedSequence([seed, k, j])``; rank r
    takes j in ``[r*B, (r+1)*B)``. Each sample: a training image drawn uniformly, an HR crop of
    ``data.resolution`` at a position on the scale's grid (so the paired LR crop covers exactly the same
    area), a horizontal flip (``data.flip``) and a rotation by a multiple of 90 degrees (``data.rot90``) applied to both
    crops; then the LR is the paired crop, or ``degrade`` (``data.degradation``) makes the LR and the target
    from the transformed HR crop.
    """

    def __init__(self, data: SRData, cfg: DataConfig, scale: int, batch_size: int, rank: int, world_size: int,
                 seed: int):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size, got batch_size={batch_size}, "
                             f"rank={rank}, world_size={world_size}")
        if cfg.resolution % scale:
            raise ValueError(f"data.resolution {cfg.resolution} is not a multiple of model.scale {scale}")
        if not data.train_hr:
            raise ValueError("SRBatches needs at least one training image")
        for hr in data.train_hr:
            if min(hr.shape[-2:]) < cfg.resolution:
                raise ValueError(f"a training image of {hr.shape[-1]}x{hr.shape[-2]} is smaller than the "
                                 f"{cfg.resolution}px crop; load the data with load_sr, which checks this")
        self.data, self.cfg, self.scale = data, cfg, scale
        self.batch_size, self.rank, self.seed = batch_size, rank, seed
        self.batch = 0
        self.wait_s = 0.0
        self.skipped: set[int] = set()  # decoded before the first step: unreadable files were dealt with then

    def next_batch(self) -> Union[SRBatch, HRBatch]:
        """This rank's next batch: an ``SRBatch``, or an ``HRBatch`` when the trainer degrades."""
        started = time.perf_counter()
        first = self.rank * self.batch_size
        batch = collate([self._sample(sample_generator(self.seed, self.batch, first + i))
                         for i in range(self.batch_size)])
        self.batch += 1
        self.wait_s += time.perf_counter() - started  # made on the training thread: the step waits for all of it
        return batch

    def pop_wait(self) -> float:
        wait, self.wait_s = self.wait_s, 0.0
        return wait

    def _sample(self, gen: torch.Generator) -> Sample:
        i = pick_image(len(self.data.train_hr), gen)
        lr = self.data.train_lr[i] if self.data.train_lr is not None else None
        return crop_pair(self.data.train_hr[i], lr, self.cfg, self.scale, gen)

    def state_dict(self) -> dict[str, int]:
        return {"batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batch = int(state["batch"])
        if batch < 0:
            raise ValueError(f"SR sampler state {state} has a negative batch number")
        self.batch = batch


def sample_generator(seed: int, batch: int, position: int) -> torch.Generator:
    """The generator of sample ``position`` of global batch ``batch``: everything random about it comes from here."""
    # torch's CPU generator keeps 32 bits of a seed, so (seed, k, j) is hashed into them (see sampler.py).
    mixed = int(np.random.SeedSequence([seed, batch, position]).generate_state(1)[0])
    return torch.Generator().manual_seed(mixed)


def pick_image(num_images: int, gen: torch.Generator) -> int:
    """The training image a sample is cut from (the first draw of its generator)."""
    return int(torch.randint(num_images, (1,), generator=gen))


def cut(hr: torch.Tensor, lr: Optional[torch.Tensor], cfg: DataConfig, scale: int, gen: torch.Generator
        ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A random aligned crop of uint8 image ``hr`` (and of its paired ``lr``, None when there is none), flipped
    and rotated, float32 in [-1, 1]; the draws after the image's, from ``gen``."""
    r, s = cfg.resolution, scale
    top, left = (int(torch.randint((side - r) // s + 1, (1,), generator=gen)) for side in hr.shape[-2:])
    # Drawn whatever the config, so turning an augmentation off does not shift the other draws.
    flip = bool(torch.rand(1, generator=gen) < 0.5) and cfg.flip
    turns = int(torch.randint(4, (1,), generator=gen)) * cfg.rot90

    def transform(x: torch.Tensor) -> torch.Tensor:
        x = x.flip(-1) if flip else x
        return torch.rot90(x, turns, dims=(-2, -1)) if turns else x

    hr_crop = transform(from_uint8(hr[:, top * s:top * s + r, left * s:left * s + r]))
    if lr is None:
        return hr_crop, None
    return hr_crop, transform(from_uint8(lr[:, top:top + r // s, left:left + r // s]))


def crop_pair(hr: torch.Tensor, lr: Optional[torch.Tensor], cfg: DataConfig, scale: int,
              gen: torch.Generator) -> Sample:
    """One sample of uint8 image ``hr`` (and its paired ``lr``, or None to make the LR and the target with
    ``degrade``): (lr, target, real), or (HR crop, ``gen``'s state) when the trainer degrades (``Sample``)."""
    hr_crop, lr_crop = cut(hr, lr, cfg, scale, gen)
    if lr_crop is not None:
        return lr_crop, hr_crop, hr_crop
    if degrades_on_trainer(cfg):
        return hr_crop, gen.get_state()
    lr_made, target = degrade(hr_crop, scale, cfg.degradation, gen)
    return lr_made, target, hr_crop

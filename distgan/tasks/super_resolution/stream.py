"""Super-resolution crops streamed: cut and degraded by the streamer's tasks, not on the training thread.

The samples are ``SRBatches``' samples: sample j of global batch k is a pure function of
(``train.seed``, k, j) (``batches.sample_generator``), so the task that makes it needs only (k, j) and
the list of training files. It reads the image the sample's generator picks, decodes it, and cuts,
flips, rotates and degrades the crop exactly as ``SRBatches`` does from memory: a streamed run sees
the same batches as one holding every image in memory, and resumes exactly from k. Decoded images are
kept in a small cache per task process (``CACHED_IMAGES``), since consecutive samples often come from
the same large image when there are few.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from distgan.config import DataConfig
from distgan.data.folder import READ_ERRORS, unreadable
from distgan.data.images import read_image
from distgan.data.stream import Batch, BatchStream, Streamer, chunk_batches
from distgan.tasks.super_resolution.batches import crop_pair, pick_image, sample_generator

CACHED_IMAGES = 8
"""Decoded training images each task process keeps (a 2K RGB photo is about 12 MB as uint8)."""

_cache: "OrderedDict[tuple[str, int], torch.Tensor]" = OrderedDict()


def _image(path: str, channels: int) -> torch.Tensor:
    key = (path, channels)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    image = read_image(path, channels)
    _cache[key] = image
    while len(_cache) > CACHED_IMAGES:
        _cache.popitem(last=False)
    return image


@dataclass(frozen=True)
class SRCrops:
    """The crop-making task: rows ``{"index", "k", "j"}`` -> ``{"index", "lr", "hr", "bad", "error"}`` (float32
    in [-1, 1]); ``bad``/``error`` as in ``distgan.data.stream.DecodeImages``. A training image that fails to
    decode is named, or under ``data.skip_corrupt`` replaced by the next one of the list."""

    hr_files: tuple[str, ...]
    lr_files: Optional[tuple[str, ...]]
    cfg: DataConfig
    scale: int
    seed: int

    def __call__(self, rows: Batch) -> Batch:
        lrs, hrs, bad, errors = [], [], [], []
        for k, j in zip(rows["k"].tolist(), rows["j"].tolist()):
            lr, hr, skipped, error = self._sample(k, j)
            lrs.append(lr)
            hrs.append(hr)
            bad.append(skipped)
            errors.append(error)
        return {"index": np.asarray(rows["index"]), "lr": torch.stack(lrs).numpy(), "hr": torch.stack(hrs).numpy(),
                "bad": np.array(bad, dtype=np.int64), "error": np.array(errors, dtype=str)}

    def _sample(self, k: int, j: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
        gen = sample_generator(self.seed, k, j)
        n = len(self.hr_files)
        i = pick_image(n, gen)
        for attempt in range(n):
            index = (i + attempt) % n
            try:
                hr = _image(self.hr_files[index], self.cfg.channels)
                lr = _image(self.lr_files[index], self.cfg.channels) if self.lr_files else None
            except READ_ERRORS as exc:
                if not self.cfg.skip_corrupt:
                    return self._blank() + (i, str(unreadable("data.path", self.cfg.path, self.hr_files[index],
                                                                str(exc) or type(exc).__name__)))
                continue
            lr_crop, hr_crop = crop_pair(hr, lr, self.cfg, self.scale, gen)
            return lr_crop, hr_crop, (i if attempt else -1), ""
        return self._blank() + (i, f"data.path {self.cfg.path!r}: none of the training images can be decoded")

    def _blank(self) -> tuple[torch.Tensor, torch.Tensor]:
        r, c = self.cfg.resolution, self.cfg.channels
        return torch.zeros(c, r // self.scale, r // self.scale), torch.zeros(c, r, r)


class SRStream(BatchStream):
    """One rank's share of each global batch of SR crops, made by a streamer; the position is the batch number."""

    def __init__(self, crops: SRCrops, batch_size: int, rank: int, world: int, streamer: Streamer,
                 device: torch.device = torch.device("cpu")):
        super().__init__(streamer, crops, batch_size, chunk_batches(crops.cfg), crops.cfg.path,
                         lambda i: crops.hr_files[i], device)
        self.rank, self.global_batch = rank, batch_size * world
        self._planned = self._consumed = 0
        self.start()

    def _rows(self, first: int, batches: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.repeat(np.arange(first, first + batches, dtype=np.int64), self.batch_size)
        j = np.tile(self.rank * self.batch_size + np.arange(self.batch_size, dtype=np.int64), batches)
        return k, j

    def _plan(self, batches: int) -> Batch:
        k, j = self._rows(self._planned, batches)
        self._planned += batches
        return {"index": k * self.global_batch + j, "k": k, "j": j}

    def _due(self) -> np.ndarray:
        k, j = self._rows(self._consumed, 1)
        self._consumed += 1
        return k * self.global_batch + j

    def _tensors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_device(batch["lr"]), self.to_device(batch["hr"])

    def state_dict(self) -> dict[str, int]:
        return {"batch": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batch = int(state["batch"])
        if batch < 0:
            raise ValueError(f"SR sampler state {state} has a negative batch number")
        self._planned = self._consumed = batch
        self.restart()

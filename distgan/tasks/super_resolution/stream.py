"""Super-resolution crops streamed: cut and degraded by the streamer's tasks, not on the training thread.

The samples are ``SRBatches``' samples: sample j of global batch k is a pure function of
(``train.seed``, k, j) (``batches.sample_generator``), so the task that makes it needs only (k, j) and
the training images' reader (``sources.SRImages``: a local folder, a folder under a URI, a shard set). It
reads the bytes of the image the sample's generator picks, decodes them as the in-memory path decodes a
file (``distgan.data.images.decode_bytes``), and cuts, flips, rotates and degrades the crop exactly as
``SRBatches`` does from memory: a streamed run sees the same batches as one holding every image in
memory, and resumes exactly from k (under ``data.degradation.device: trainer`` it stops before the
degradation and sends the crop and its generator's state, as ``SRBatches`` does). Decoded images are kept in
a small cache per task process (``CACHED_IMAGES``), since consecutive samples often come from the same large
image when there are few.

No training image is read before the first step, so what the in-memory path checks up front is checked
here, when an image's turn comes: one that cannot be decoded, one smaller than the crop, or an HR/LR pair
whose sizes do not match stops the run naming the file, or under ``data.skip_corrupt`` is replaced by the
next usable image of the list (the same one every time) and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from distgan.config import DataConfig
from distgan.data.folder import READ_ERRORS, unreadable
from distgan.data.images import decode_bytes
from distgan.data.stream import MAX_SUBSTITUTES, Batch, BatchStream, Streamer, chunk_batches
from distgan.tasks.super_resolution.batches import (HRBatch, Sample, SRBatch, collate, crop_pair,
                                                    degrades_on_trainer, pick_image, sample_generator)
from distgan.tasks.super_resolution.data import mismatched_pair, small_image
from distgan.tasks.super_resolution.sources import SRImages

CACHED_IMAGES = 8
"""Decoded training images each task process keeps (a 2K RGB photo is about 12 MB as uint8)."""

SKIP_HINT = "; found while streaming: data.skip_corrupt=true skips such images"

_cache: "OrderedDict[tuple[str, int], torch.Tensor]" = OrderedDict()


def _image(where: str, read, channels: int) -> torch.Tensor:
    """The decoded image ``where`` (``read()`` gives its bytes), from this process's cache when it is there."""
    key = (where, channels)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    image = decode_bytes(read(), channels)
    _cache[key] = image
    while len(_cache) > CACHED_IMAGES:
        _cache.popitem(last=False)
    return image


@dataclass(frozen=True)
class SRCrops:
    """The crop-making task: rows ``{"index", "k", "j"}`` -> ``{"index", "lr", "hr", "bad", "error"}`` (float32
    in [-1, 1]; ``hr`` the targets), with ``real`` too when D's real images are not the targets (a sharpened
    target); under ``data.degradation.device: trainer`` ``{"index", "hr", "state", "bad", "error"}`` instead
    (the plain crops and each sample's generator state, ``batches.HRBatch``). ``bad``/``error`` as in
    ``distgan.data.stream.DecodeImages``. A training image that cannot be used (see the module docstring) is
    named, or under ``data.skip_corrupt`` replaced by the next usable one."""

    images: SRImages
    cfg: DataConfig
    scale: int
    seed: int

    def __call__(self, rows: Batch) -> Batch:
        samples, bad, errors = [], [], []
        for k, j in zip(rows["k"].tolist(), rows["j"].tolist()):
            sample, skipped, error = self._sample(k, j)
            samples.append(sample)
            bad.append(skipped)
            errors.append(error)
        out = {"index": np.asarray(rows["index"]), "bad": np.array(bad, dtype=np.int64),
               "error": np.array(errors, dtype=str)}
        batch = collate(samples)
        if isinstance(batch, HRBatch):
            return {**out, "hr": batch.hr.numpy(), "state": batch.states.numpy()}
        out.update(lr=batch.lr.numpy(), hr=batch.target.numpy())
        if batch.real is not batch.target:
            out["real"] = batch.real.numpy()
        return out

    def _sample(self, k: int, j: int) -> tuple[Sample, int, str]:
        gen = sample_generator(self.seed, k, j)
        n = len(self.images)
        i = pick_image(n, gen)
        tries = min(n, MAX_SUBSTITUTES + 1)
        for attempt in range(tries):
            hr, lr, problem = self._load((i + attempt) % n)
            if problem:
                if not self.cfg.skip_corrupt:
                    return self._blank(), i, problem
                continue
            # The draws after the image's come from the same generator whichever image was used.
            return crop_pair(hr, lr, self.cfg, self.scale, gen), (i if attempt else -1), ""
        what = (f"none of the {n} training images" if tries == n else
                f"{tries} training images in a row from {self.images.describe(i)!r}")
        return self._blank(), i, (f"data.path {self.images.location!r}: {what} can be used (unreadable, smaller "
                                  f"than the crop, or not matching their low-resolution image)")

    def _load(self, i: int) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], str]:
        """Training image ``i`` (and its paired LR image), or why it cannot be used."""
        images, channels = self.images, self.cfg.channels
        hr = lr = None
        try:
            hr = _image(images.describe(i), lambda: images.read_hr(i), channels)
            if images.paired:
                lr = _image(images.describe_lr(i), lambda: images.read_lr(i), channels)
        except READ_ERRORS as exc:
            key, location, where = (("data.lr_path", images.lr_location, images.describe_lr(i)) if hr is not None
                                    else ("data.path", images.location, images.describe(i)))
            return None, None, str(unreadable(key, location, where, str(exc) or type(exc).__name__))
        size = tuple(hr.shape[-2:])
        if min(size) < self.cfg.resolution:
            return None, None, small_image(self.cfg, images.describe(i), size) + SKIP_HINT
        if lr is not None and size != (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale):
            return None, None, mismatched_pair(images.describe(i), size, images.describe_lr(i),
                                               tuple(lr.shape[-2:]), self.scale) + SKIP_HINT
        return hr, lr, ""

    def _blank(self) -> Sample:
        """A stand-in for a sample that cannot be made (its row's ``error`` stops the run)."""
        r, c = self.cfg.resolution, self.cfg.channels
        hr = torch.zeros(c, r, r)
        if degrades_on_trainer(self.cfg):
            return hr, torch.Generator().get_state()
        return torch.zeros(c, r // self.scale, r // self.scale), hr, hr


class SRStream(BatchStream):
    """One rank's share of each global batch of SR crops, made by a streamer; the position is the batch number."""

    def __init__(self, crops: SRCrops, batch_size: int, rank: int, world: int, streamer: Streamer,
                 device: torch.device = torch.device("cpu")):
        super().__init__(streamer, crops, batch_size, chunk_batches(crops.cfg), crops.images.location,
                         crops.images.describe, device)
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

    def _tensors(self, batch: Batch) -> Union[SRBatch, HRBatch]:
        if "state" in batch:  # generator states stay on the CPU, where generators are
            return HRBatch(self.to_device(batch["hr"]), torch.from_numpy(np.array(batch["state"])))
        target = self.to_device(batch["hr"])
        real = self.to_device(batch["real"]) if "real" in batch else target
        return SRBatch(self.to_device(batch["lr"]), target, real)

    def state_dict(self) -> dict[str, int]:
        return {"batch": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batch = int(state["batch"])
        if batch < 0:
            raise ValueError(f"SR sampler state {state} has a negative batch number")
        self._planned = self._consumed = batch
        self.restart()

"""Streamed super-resolution crops are ``SRBatches``' crops: the same (LR, HR) pairs, degradations included, for
every rank and after a resume; a training image that fails to decode is named, or replaced under skip_corrupt."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distgan.config import ConfigError, DataConfig, DegradationConfig
from distgan.data.stream import ThreadStreamer
from distgan.tasks.super_resolution.batches import SRBatches
from distgan.tasks.super_resolution.data import load_sr
from distgan.tasks.super_resolution.stream import SRCrops, SRStream

SCALE, SEED = 4, 3


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "hr"
    root.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


def config(folder, **values) -> DataConfig:
    degraded = DegradationConfig(blur_sigma=(0.2, 1.0), noise_sigma=(0.0, 5.0), jpeg_quality=(60, 95))
    return DataConfig(**{"path": str(folder), "resolution": 16, "channels": 3, "val_crop": 0,
                         "degradation": degraded, **values})


def crops_of(cfg: DataConfig) -> SRCrops:
    sr = load_sr(cfg, SCALE, stream=True)
    assert sr.train_hr == [] and len(sr.train_images) == 5  # one of six held out for validation, none decoded
    return SRCrops(sr.train_images, cfg, SCALE, SEED)


def streamed(cfg: DataConfig, batch: int = 3, rank: int = 0, world: int = 1, crops=None) -> SRStream:
    return SRStream(crops or crops_of(cfg), batch, rank, world, ThreadStreamer())


def take(source, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    lrs, hrs, _ = zip(*(source.next_batch() for _ in range(steps)))
    return torch.cat(lrs), torch.cat(hrs)


def test_streamed_crops_are_the_in_memory_crops(folder):
    cfg = config(folder)
    memory = SRBatches(load_sr(cfg, SCALE), cfg, SCALE, 3, 0, 1, SEED)
    lr_mem, hr_mem = take(memory, 5)
    lr_str, hr_str = take(streamed(cfg), 5)
    assert lr_str.shape == (15, 3, 4, 4) and hr_str.shape == (15, 3, 16, 16)
    assert torch.equal(lr_mem, lr_str) and torch.equal(hr_mem, hr_str)


def test_ranks_share_each_global_batch_and_resume_exactly(folder):
    cfg = config(folder)
    lr_one, _ = take(streamed(cfg, batch=4), 4)
    halves = [take(streamed(cfg, batch=2, rank=r, world=2), 4)[0].reshape(4, 2, -1) for r in (0, 1)]
    assert torch.equal(lr_one.reshape(4, 4, -1), torch.cat(halves, dim=1))
    first = streamed(cfg, batch=4)
    take(first, 2)
    resumed = streamed(cfg, batch=4)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(take(resumed, 2)[0], lr_one[8:])


def test_an_image_that_fails_to_decode_is_named_or_replaced(folder, caplog):
    strict, lenient = crops_of(config(folder)), crops_of(config(folder, skip_corrupt=True))
    # Damaged after the check passed (streamed files are read when their turn comes, maybe hours later).
    damaged = Path(strict.images.describe(0))  # a training image (one of the six is held out to validate)
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(ConfigError, match=rf"cannot read image '.*{damaged.name}'"):
        take(streamed(config(folder), crops=strict), 8)  # 24 crops from 5 images: every image is picked
    with caplog.at_level(logging.WARNING):
        source = streamed(config(folder), crops=lenient)
        take(source, 8)
    assert source.skipped == {0} and damaged.name in caplog.text

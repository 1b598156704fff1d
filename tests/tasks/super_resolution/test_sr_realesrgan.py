"""Super-resolution data under ``data.degradation.type: realesrgan``: the same samples on any worker count,
streamed or in memory; validation inputs fixed and their targets unsharpened; bad keys refused at load
time; and a few GAN-stage steps train with finite losses (in-process, real DeepSpeed engines, no Ray)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from distgan import load_config
from distgan.config import ConfigError, DataConfig, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig, RealESRGANFirstConfig, RealESRGANSecondConfig
from distgan.data.stream import ThreadStreamer
from distgan.tasks.super_resolution.batches import SRBatches
from distgan.tasks.super_resolution.data import load_sr
from distgan.tasks.super_resolution.stream import SRCrops, SRStream
from distgan.tracking.jsonl import read_metrics
from local_runs import SR_BASE, SR_GAN, train_sr

SCALE = 4


def realesrgan(side: int = 21, **values) -> DegradationConfig:
    """The published pipeline, kernels capped at ``side`` so small test crops can take them."""
    sides = {"kernel_size": (7, side)}
    return DegradationConfig(type="realesrgan", realesrgan=RealESRGANConfig(
        first=RealESRGANFirstConfig(**sides), second=RealESRGANSecondConfig(**sides), final_kernel_size=(7, side),
        **values))


@pytest.fixture(scope="module")
def small_photos():
    cfg = DataConfig(name="photos", resolution=32, channels=3, val_crop=32, degradation=realesrgan())
    return load_sr(cfg, SCALE), cfg


def test_global_batches_do_not_depend_on_the_worker_count(small_photos):
    """One worker with batch 4 makes exactly the LR images two workers with batch 2 make together."""
    sr, cfg = small_photos
    one = SRBatches(sr, cfg, SCALE, 4, 0, 1, seed=2)
    two = [SRBatches(sr, cfg, SCALE, 2, r, 2, seed=2) for r in range(2)]
    for _ in range(2):
        lr, hr, _ = one.next_batch()
        halves = [b.next_batch() for b in two]
        assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 32, 32)
        assert torch.equal(lr, torch.cat([h[0] for h in halves])) and torch.equal(hr, torch.cat([h[1] for h in halves]))
    again = SRBatches(sr, cfg, SCALE, 4, 0, 1, seed=3).next_batch()[0]
    assert not torch.equal(again, SRBatches(sr, cfg, SCALE, 4, 0, 1, seed=2).next_batch()[0])


def test_validation_inputs_are_fixed_and_targets_unsharpened(small_photos):
    sr, cfg = small_photos
    again = load_sr(cfg, SCALE)
    assert all(torch.equal(a, b) for a, b in zip(sr.val_lr, again.val_lr, strict=True))
    sharpened_cfg = DataConfig(name="photos", resolution=32, channels=3, val_crop=32,
                               degradation=realesrgan(sharpen_gt=True))
    sharpened = load_sr(sharpened_cfg, SCALE)
    assert all(torch.equal(a, b) for a, b in zip(sr.val_hr, sharpened.val_hr, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(sr.val_lr, sharpened.val_lr, strict=True))
    # Training targets are the sharpened crops: same crops, other pixels.
    plain_hr = SRBatches(sr, cfg, SCALE, 4, 0, 1, seed=0).next_batch()[1]
    sharp_hr = SRBatches(sharpened, sharpened_cfg, SCALE, 4, 0, 1, seed=0).next_batch()[1]
    assert not torch.equal(plain_hr, sharp_hr) and (plain_hr - sharp_hr).abs().mean() < 0.1


def test_streamed_crops_are_the_in_memory_crops(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    cfg = DataConfig(path=str(tmp_path), resolution=16, channels=3, val_crop=0, degradation=realesrgan(side=15))
    memory = SRBatches(load_sr(cfg, SCALE), cfg, SCALE, 3, 1, 2, seed=7)
    sr = load_sr(cfg, SCALE, stream=True)
    stream = SRStream(SRCrops(sr.train_images, cfg, SCALE, 7), 3, 1, 2, ThreadStreamer())
    for _ in range(2):
        for x, y in zip(memory.next_batch(), stream.next_batch()):
            assert torch.equal(x, y)


@pytest.mark.parametrize("override, message", [
    ("data.degradation.realesrgan.first.kernel_size=[7, 20]",
     "data.degradation.realesrgan.first.kernel_size: expected [min, max] of odd kernel sides"),
    ("data.degradation.realesrgan.second.resize_prob=[0.3, 0.4, 0.4]",
     "data.degradation.realesrgan.second.resize_prob: expected 3 chances >= 0 summing to 1 (up, down, keep)"),
    ("data.resolution=16", "data.degradation.realesrgan.first.kernel_size: kernel side 21 is larger than the 16px"),
    ("data.degradation.type=realesrgam", "data.degradation.type: unknown degradation 'realesrgam'"),
])
def test_bad_keys_are_refused_at_load_time(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, SR_BASE + ("data.degradation.type=realesrgan", override))


def test_the_gan_stage_trains_on_realesrgan_inputs(process_group, tmp_path):
    steps = ("train.steps=4", "train.log_every=2", "eval.every=4", "train.sample_every=4",
             "train.checkpoint_every=4", "data.degradation.type=realesrgan",
             "data.degradation.realesrgan.sharpen_gt=true")
    session, _ = train_sr(tmp_path / "run", *SR_GAN, *steps)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r for r in records if "loss_g" in r]
    assert [r["step"] for r in losses] == [2, 4] and all("loss_d" in r for r in losses)
    assert all(math.isfinite(r[key]) for r in losses for key in ("loss_g", "loss_d"))
    scored = [r for r in records if "psnr" in r]
    assert scored and math.isfinite(scored[-1]["psnr"]) and math.isfinite(scored[-1]["psnr_bicubic"])

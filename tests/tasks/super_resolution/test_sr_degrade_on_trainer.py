"""Where the training inputs are degraded (``data.degradation.device``): the training worker's batched
degradation gives exactly the batches the data path makes, in memory and streamed; and under ``sharpen_gt``
the content losses aim at the sharpened crop while D judges the plain one (in-process, real DeepSpeed
engines, no Ray)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from distgan import load_config
from distgan.config import ConfigError, DataConfig, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig, RealESRGANFirstConfig, RealESRGANSecondConfig
from distgan.data.stream import ThreadStreamer
from distgan.tasks.super_resolution.batches import HRBatch, SRBatch, SRBatches, degrade_on
from distgan.tasks.super_resolution.data import load_sr
from distgan.tasks.super_resolution.stream import SRCrops, SRStream
from engine_steps import SCALE as STEP_SCALE, build_sr, sr_config
from distgan.tracking.jsonl import read_metrics
from local_runs import SR_BASE, SR_GAN, max_difference, sr_parameters, train_sr

SCALE = 4
CPU = torch.device("cpu")


def realesrgan(side: int = 21, device: str = "data", **values) -> DegradationConfig:
    sides = {"kernel_size": (7, side)}
    return DegradationConfig(type="realesrgan", device=device, realesrgan=RealESRGANConfig(
        first=RealESRGANFirstConfig(**sides), second=RealESRGANSecondConfig(**sides), final_kernel_size=(7, side),
        **values))


def on_trainer(deg: DegradationConfig) -> DegradationConfig:
    return dataclasses.replace(deg, device="trainer")


def photos(deg: DegradationConfig) -> DataConfig:
    return DataConfig(name="photos", resolution=32, channels=3, val_crop=32, degradation=deg)


def same_batches(a: SRBatch, b: SRBatch) -> None:
    assert torch.equal(a.lr, b.lr)  # on the 8-bit grid: exactly
    assert torch.allclose(a.target, b.target, atol=1e-5, rtol=0) and torch.equal(a.real, b.real)


@pytest.mark.parametrize("deg", [realesrgan(), realesrgan(sharpen_gt=True),
                                 DegradationConfig(blur_sigma=(0.2, 2.0), noise_sigma=(1.0, 20.0),
                                                   jpeg_quality=(40, 90))], ids=["realesrgan", "sharpened", "classic"])
def test_the_trainer_makes_the_batches_the_data_path_makes(deg):
    data_cfg, trainer_cfg = photos(deg), photos(on_trainer(deg))
    sr = load_sr(data_cfg, SCALE)
    made_here = SRBatches(sr, data_cfg, SCALE, 4, 1, 2, seed=9)
    sent = SRBatches(sr, trainer_cfg, SCALE, 4, 1, 2, seed=9)
    for _ in range(2):
        expected, raw = made_here.next_batch(), sent.next_batch()
        assert isinstance(expected, SRBatch) and isinstance(raw, HRBatch)
        assert raw.hr.shape == (4, 3, 32, 32) and raw.states.dtype == torch.uint8
        assert torch.equal(raw.hr, expected.real)  # the plain crops travel; the LR is not made yet
        same_batches(degrade_on(raw, SCALE, trainer_cfg.degradation, CPU), expected)
    # A resumed sampler hands the same crops and states.
    resumed = SRBatches(sr, trainer_cfg, SCALE, 4, 1, 2, seed=9)
    resumed.load_state_dict(sent.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(resumed.next_batch(), sent.next_batch()))


def test_streamed_crops_degraded_on_the_trainer_are_the_in_memory_ones(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    cfg = DataConfig(path=str(tmp_path), resolution=16, channels=3, val_crop=0,
                     degradation=realesrgan(side=15, sharpen_gt=True))
    memory = SRBatches(load_sr(cfg, SCALE), cfg, SCALE, 3, 0, 1, seed=4)
    trainer_cfg = dataclasses.replace(cfg, degradation=on_trainer(cfg.degradation))
    sr = load_sr(trainer_cfg, SCALE, stream=True)
    stream = SRStream(SRCrops(sr.train_images, trainer_cfg, SCALE, 4), 3, 0, 1, ThreadStreamer())
    for _ in range(2):
        raw = stream.next_batch()
        assert isinstance(raw, HRBatch)
        same_batches(degrade_on(raw, SCALE, trainer_cfg.degradation, CPU), memory.next_batch())


def test_the_sharpened_target_ships_beside_the_plain_crop_when_streamed(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    for sharpen in (False, True):
        cfg = DataConfig(path=str(tmp_path), resolution=16, channels=3, val_fraction=0.5,
                         degradation=realesrgan(side=15, sharpen_gt=sharpen))
        sr = load_sr(cfg, SCALE, stream=True)
        rows = SRCrops(sr.train_images, cfg, SCALE, 0)({"index": np.arange(2), "k": np.zeros(2, np.int64),
                                                        "j": np.arange(2)})
        assert ("real" in rows) is sharpen
        batch = SRStream(SRCrops(sr.train_images, cfg, SCALE, 0), 2, 0, 1, ThreadStreamer()).next_batch()
        assert (batch.real is batch.target) is not sharpen


def test_a_bad_device_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=re.escape("data.degradation.device: expected one of 'data', 'trainer', "
                                                    "got 'gpu'")):
        load_config(None, SR_BASE + ("data.degradation.device=gpu",))
    assert load_config(None, SR_BASE + ("data.degradation.device=trainer",)).data.degradation.device == "trainer"


def test_sharpened_targets_feed_the_content_losses_and_plain_crops_feed_d(process_group):
    """Real-ESRGAN's split: the pixel loss against the unsharp-masked crop, D's real input the plain crop."""
    cfg = sr_config(loss="ragan")  # relativistic: G's step runs D on the real images too
    data = photos(realesrgan(sharpen_gt=True))
    batch = SRBatches(load_sr(data, STEP_SCALE), data, STEP_SCALE, 4, 0, 1, seed=1).next_batch()
    plain = SRBatches(load_sr(photos(realesrgan()), STEP_SCALE), photos(realesrgan()), STEP_SCALE, 4, 0, 1,
                      seed=1).next_batch()
    assert torch.equal(batch.real, plain.target)  # the same crops, unsharpened
    assert (batch.target - batch.real).abs().max() > 0.05
    gan = build_sr(cfg)
    with torch.no_grad():
        expected_pixel = F.l1_loss(gan.engine_g.module(batch.lr), batch.target).item()
        plain_pixel = F.l1_loss(gan.engine_g.module(batch.lr), batch.real).item()
    seen = []
    gan.engine_d.module.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    stored = gan.g_phase(lambda: batch)
    pixel = dict(zip(gan.stat_names, gan.pop_stats().tolist()))["loss_pixel"]
    assert pixel == pytest.approx(expected_pixel, rel=1e-6) and pixel != pytest.approx(plain_pixel, rel=1e-3)
    (real_for_d, fake), = stored
    assert torch.equal(real_for_d, batch.real)
    gan.d_phase(stored)
    reals = [x for x in seen if x.shape == batch.real.shape and not torch.equal(x, fake)]
    assert len(reals) == 2 and all(torch.equal(x, batch.real) for x in reals)  # G's step and D's step
    assert not any(torch.equal(x, batch.target) for x in seen)


def test_a_run_degrading_on_the_trainer_trains_as_one_degrading_in_the_data_path(process_group, tmp_path):
    """The task's path end to end: the loop asks the task for batches, the task degrades them on its device."""
    steps = ("train.steps=2", "train.log_every=1", "eval.every=2", "train.sample_every=2",
             "train.checkpoint_every=2", "data.degradation.type=realesrgan",
             "data.degradation.realesrgan.sharpen_gt=true")
    runs = {device: train_sr(tmp_path / device, *SR_GAN, *steps, f"data.degradation.device={device}")[1]
            for device in ("data", "trainer")}
    losses = {device: [r["loss_g"] for r in read_metrics(tmp_path / device / "metrics.jsonl") if "loss_g" in r]
              for device in runs}
    assert len(losses["data"]) == 2 and losses["trainer"] == pytest.approx(losses["data"], rel=1e-6)
    assert max_difference(sr_parameters(runs["data"]), sr_parameters(runs["trainer"])) < 1e-6

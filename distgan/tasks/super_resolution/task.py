"""Super-resolution (SRResNet/SRGAN, RRDBNet/ESRGAN): G maps a low-resolution image to one ``model.scale``
times larger.

What it trains on: random high-resolution crops and their low-resolution
inputs (``distgan.tasks.super_resolution.data``, from memory by ``.batches`` or
streamed by ``.stream``, from the places ``.sources`` lists); how: the
content + adversarial step of ``.step`` (no D at all in the PSNR-oriented
stage, ``loss.adversarial_weight: 0``); how it is judged: PSNR/SSIM on
held-out images (``.validation``), with (bicubic | output | target) rows as
samples.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from distgan import data, models
from distgan.config import Config
from distgan.gan.perceptual import PerceptualLoss
from distgan.models import sr_discriminators
from distgan.runtime.task import Task
from distgan.tasks.super_resolution import step, validation
from distgan.tasks.super_resolution.batches import HRBatch, SRBatch, SRBatches, degrade_on
from distgan.tasks.super_resolution.data import check_sr, load_sr
from distgan.tasks.super_resolution.stream import SRCrops, SRStream
from distgan.tracking.images import image_grid, to_unit

NUM_TRIPLETS = 4


class SuperResolutionTask(Task):
    name = "super_resolution"
    default_metrics = validation.DEFAULT_METRICS
    aliases = ("sr",)
    commands = ("upscale", "evaluate")

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        models.check(cfg, (cfg.data.channels, cfg.data.resolution, cfg.data.resolution))
        check_sr(cfg.data, cfg.model.scale)
        step.check_config(cfg)
        validation.check_config(cfg)

    # -- data ----------------------------------------------------------------------
    def setup_data(self, streamer: Optional[data.Streamer] = None) -> None:
        cfg = self.cfg
        streamed = data.streams(cfg.data)
        self.sr_data = load_sr(cfg.data, cfg.model.scale, stream=streamed)
        if streamed:  # crops cut and degraded ahead, by the streamer's tasks (under Ray: on any node)
            crops = SRCrops(self.sr_data.train_images, cfg.data, cfg.model.scale,
                            data.data_seed(cfg.data, cfg.train.seed))
            self.sampler = SRStream(crops, cfg.train.batch_size, self.rank, self.world,
                                    streamer or data.ThreadStreamer(), self.device)
        else:
            self.sampler = SRBatches(self.sr_data, cfg.data, cfg.model.scale, cfg.train.batch_size, self.rank,
                                     self.world, data.data_seed(cfg.data, cfg.train.seed))
        self._degrade_s = 0.0
        self.data_shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
        self._picture_validator: Optional[validation.SRValidator] = None

    def next_batch(self) -> SRBatch:
        """This rank's next batch (G's input, the target, D's real images); degraded here, on this worker's
        device, when ``data.degradation.device`` is ``trainer``."""
        batch = self.sampler.next_batch()
        if isinstance(batch, HRBatch):
            started = time.perf_counter()
            batch = degrade_on(batch, self.cfg.model.scale, self.cfg.data.degradation, self.device)
            self._degrade_s += time.perf_counter() - started  # the step waits for it as for the data
        return batch

    def data_metrics(self) -> dict[str, float]:
        wait, self._degrade_s = self.sampler.pop_wait() + self._degrade_s, 0.0
        return {"data_wait_s": wait, "data_skipped": float(len(self.sampler.skipped))}

    def data_state(self) -> dict:
        return self.sampler.state_dict()

    def load_data_state(self, state: dict) -> None:
        self.sampler.load_state_dict(state)

    # -- networks and the step ----------------------------------------------------------
    def build_generator(self) -> nn.Module:
        return models.build_generator(self.cfg.model, self.data_shape)

    def build_discriminator(self) -> Optional[nn.Module]:
        # The PSNR-oriented stage has no D: no engine, no optimizer state, nothing in the checkpoint.
        if not sr_discriminators.has_discriminator(self.cfg):
            return None
        return models.build_discriminator(self.cfg.model, self.data_shape)

    def build_algorithm(self, engine_g, engine_d, z_generator: torch.Generator) -> step.SuperResolutionGAN:
        perceptual = None
        if self.cfg.loss.perceptual.weight > 0:
            perceptual = PerceptualLoss(self.cfg.loss.perceptual).to(self.device)
        return step.SuperResolutionGAN.from_config(self.cfg, engine_g, engine_d, self.device, perceptual)

    # -- evaluation, samples, export -----------------------------------------------------
    def build_evaluator(self) -> validation.SRValidator:
        return validation.SRValidator(self.cfg, self.sr_data.val_lr, self.sr_data.val_hr, self.rank, self.world,
                                      self.device)

    def render_samples(self, generator: nn.Module, evaluator: Optional[validation.SRValidator] = None):
        """Rows of (bicubic | output | target) on validation crops: rank 0's share of the images."""
        if evaluator is None:  # evaluation off: a validator for the pictures alone (collective, built once)
            if self._picture_validator is None:
                self._picture_validator = self.build_evaluator()
            evaluator = self._picture_validator
        if self.rank != 0:
            return None
        stacks = evaluator.triplets(generator, NUM_TRIPLETS)
        return image_grid(to_unit(torch.cat(stacks)), nrow=3)

    def export_metadata(self) -> dict:
        return {"data_shape": list(self.data_shape), "num_classes": 0, "class_names": [],
                "scale": self.cfg.model.scale}

    @classmethod
    def evaluate_offline(cls, source: Path, generator: nn.Module, meta: dict, cfg: Config):
        """PSNR/SSIM of an SR generator on its run's validation images, with the bicubic baseline."""
        # Streamed data is listed, not read: only the validation images are decoded.
        sr_data = load_sr(cfg.data, cfg.model.scale, stream=data.streams(cfg.data))
        scores = validation.SRValidator(cfg, sr_data.val_lr, sr_data.val_hr).run(generator)
        info = {"generator": str(source), "step": meta.get("step"), "images": len(sr_data.val_lr),
                "scale": cfg.model.scale, "crop_border": validation.crop_border(cfg),
                "y_channel": cfg.eval.y_channel}
        return scores, info

"""The per-worker loop for super-resolution families (SRResNet/SRGAN, RRDBNet/ESRGAN).

The loop itself is ``distgan.worker.Trainer``'s; what differs is what it
trains on and how it is judged: random high-resolution crops and their
low-resolution inputs (``distgan.data.sr``) instead of samples and latents,
the content + adversarial step of ``distgan.gan.sr``, PSNR/SSIM on held-out
images instead of FID, and (bicubic | output | target) triplets as samples.
"""

from __future__ import annotations

from typing import Optional

import torch

from distgan import models
from distgan.gan.sr import SuperResolutionGAN
from distgan.sr_validation import SRValidator
from distgan.tracking.images import image_grid, to_unit
from distgan.worker import Trainer

NUM_TRIPLETS = 4


class SRTrainer(Trainer):
    def setup_data(self) -> None:
        from distgan.data.sr import load_sr
        from distgan.data.sr_batches import SRBatches

        cfg = self.cfg
        self.sr_data = load_sr(cfg.data, cfg.model.scale)
        self.sampler = SRBatches(self.sr_data, cfg.data, cfg.model.scale, cfg.train.batch_size, self.rank,
                                 self.world, cfg.train.seed)
        self.data_shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
        self.class_names, self.num_classes = (), 0

    def build_discriminator(self) -> Optional[torch.nn.Module]:
        # The PSNR-oriented stage has no D: no engine, no optimizer state, nothing in the checkpoint.
        if self.cfg.loss.adversarial_weight == 0:
            return None
        return models.build_discriminator(self.cfg.model, self.data_shape)

    def build_algorithm(self) -> SuperResolutionGAN:
        perceptual = None
        if self.cfg.loss.perceptual.weight > 0:
            from distgan.gan.perceptual import PerceptualLoss

            perceptual = PerceptualLoss(self.cfg.loss.perceptual).to(self.device)
        return SuperResolutionGAN.from_config(self.cfg, self.engine_g, self.engine_d, self.device, perceptual)

    def build_evaluator(self) -> SRValidator:
        return SRValidator(self.cfg, self.sr_data.val_lr, self.sr_data.val_hr, self.rank, self.world,
                           self.device)

    def images_per_step(self) -> int:
        """High-resolution crops drawn per step over all ranks (G and D share them)."""
        self.g_batch = self.cfg.train.batch_size * self.cfg.deepspeed.g.gradient_accumulation_steps * self.world
        return self.g_batch

    def next_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next (low-resolution, high-resolution) batch."""
        return self.sampler.next_batch()

    def export_metadata(self) -> dict:
        return {**super().export_metadata(), "task": "sr", "scale": self.cfg.model.scale}

    def evaluate(self) -> dict:
        with self.generator_snapshot() as g:
            return self.evaluator.run(g)

    def write_samples(self) -> dict:
        """Rows of (bicubic | output | target) on validation crops: rank 0's share of the images."""
        if self.evaluator is None:  # evaluation off: a validator for the pictures alone (collective)
            self.evaluator = self.build_evaluator()
        with self.generator_snapshot() as g:
            if self.rank != 0:
                return {}
            stacks = self.evaluator.triplets(g, NUM_TRIPLETS)
        img = image_grid(to_unit(torch.cat(stacks)), nrow=3)
        self.save_sample_grid(img)
        return {"samples": img}

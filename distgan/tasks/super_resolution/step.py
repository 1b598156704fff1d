"""The super-resolution GAN step (SRGAN, ESRGAN) as named phases: Gmain, then Dmain.

What differs from ``AlternatingGAN``: G's input is the low-resolution image of
the batch rather than z, and a target exists, so G's loss has content terms
(pixel, perceptual) beside the adversarial one. One forward pass of G serves
both phases, as in BasicSR's SRGAN model: G steps first through a frozen D,
then D steps on that same output, detached. Drawing a second output for D
would cost a whole extra forward of a large generator for no gain.

The DeepSpeed rules of ``distgan.runtime.algorithm`` hold here too: in Gmain D is
frozen and run through ``engine_d.module``, never the engine; in Dmain the
fakes are detached, so D's backward ends at them.

G and D may compute in different dtypes (``deepspeed.{g,d}.precision``): the
low-resolution input and the target for G's content losses are in G's dtype;
what D sees (the real images, G's output) is cast to D's (``for_d``), the cast
of G's output differentiable so G's adversarial gradient returns in G's dtype.

D's real images are the plain HR crops: the same tensor as the content target,
except under ``data.degradation.realesrgan.sharpen_gt``, where the content
losses aim at the sharpened crop and D still sees the plain one (Real-ESRGAN's
``l1_gt_usm``/``percep_gt_usm`` true, ``gan_gt_usm`` false).

With ``loss.adversarial_weight`` 0 there is no D at all: the PSNR-oriented
stage trains G on its content losses alone, and the GAN stage then starts
from its generator (``train.init_from``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from distgan.config import Config, ConfigError, TrainConfig, positive
from distgan.gan import perceptual
from distgan.gan.losses import AdversarialLoss, build_loss
from distgan.runtime import engines
from distgan.runtime.algorithm import D_HEALTH, GANAlgorithm

STAT_NAMES = ("loss_g", "loss_pixel", "loss_perceptual", "loss_g_adv", "loss_d") + D_HEALTH
"""``loss_g`` is G's weighted total; ``loss_g_adv`` its adversarial term before weighting."""

PairSource = Callable[[], tuple[torch.Tensor, ...]]
"""Returns this rank's next (low-resolution, target) batch, or (low-resolution, target, D's real images)
(``batches.SRBatch``); with two, D's real images are the targets."""

PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss, "l2": F.mse_loss}


class SuperResolutionGAN(GANAlgorithm):
    stat_names = STAT_NAMES

    def __init__(self, engine_g, engine_d, loss: Optional[AdversarialLoss], adversarial_weight: float,
                 pixel: str, pixel_weight: float, perceptual: Optional[nn.Module], perceptual_weight: float,
                 dtype: torch.dtype, device: torch.device,
                 max_consecutive_skips: int = TrainConfig.max_consecutive_skips,
                 layout: torch.memory_format = torch.contiguous_format, dtype_d: Optional[torch.dtype] = None):
        if (engine_d is None) != (loss is None):
            raise ValueError("a discriminator engine and an adversarial loss come together")
        super().__init__(engine_g, engine_d, device, max_consecutive_skips)
        self.loss = loss
        self.adversarial_weight = adversarial_weight
        self.pixel, self.pixel_weight = PIXEL_LOSSES[pixel], pixel_weight
        self.perceptual, self.perceptual_weight = perceptual, perceptual_weight
        self.dtype = dtype
        """G's compute dtype: its input's and the target's for the content losses."""
        self.dtype_d = dtype if dtype_d is None else dtype_d
        """D's compute dtype: what D sees is cast to it (``for_d``)."""
        self.layout = layout
        """Memory format of the LR/HR batches (``train.channels_last``)."""

    @classmethod
    def from_config(cls, cfg: Config, engine_g, engine_d, device: torch.device,
                    perceptual: Optional[nn.Module] = None) -> "SuperResolutionGAN":
        loss = build_loss(cfg.loss.type) if engine_d is not None else None
        return cls(engine_g, engine_d, loss, cfg.loss.adversarial_weight, cfg.loss.pixel.type,
                   cfg.loss.pixel.weight, perceptual, cfg.loss.perceptual.weight, engines.compute_dtype(cfg, "g"),
                   device, cfg.train.max_consecutive_skips, engines.memory_format(cfg), engines.compute_dtype(cfg, "d"))

    def batch(self, next_pair: PairSource) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(G's input, the content target, D's real images), on the device in G's dtype."""
        lr, target, *real = next_pair()
        lr, target_c = (engines.to_compute(x, self.device, self.dtype, self.layout) for x in (lr, target))
        if not real or real[0] is target:
            return lr, target_c, target_c
        return lr, target_c, engines.to_compute(real[0], self.device, self.dtype, self.layout)

    def for_d(self, x: torch.Tensor) -> torch.Tensor:
        """A tensor in D's dtype (the same tensor when G's is D's); gradients flow back through the cast."""
        return x.to(self.dtype_d)

    # -- phases -------------------------------------------------------------
    def g_phase(self, next_pair: PairSource) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Gmain: one optimizer step of G; returns each micro-batch's (D's real images, detached output) for D,
        in D's dtype."""
        pairs = []
        with self.frozen_discriminator() as d_module:
            for _ in range(self.engine_g.gradient_accumulation_steps()):
                lr, target, real = self.batch(next_pair)
                fake = self.engine_g(lr)
                loss = self.content_loss(fake, target)
                # D judges the plain HR crops, not a sharpened target (Real-ESRGAN's gan_gt_usm: false): a
                # sharpened real would teach G to over-sharpen through the adversarial term as well.
                real_d = self.for_d(real)
                if d_module is not None:
                    real_logits = None
                    if self.loss.g_needs_real:
                        with torch.no_grad():  # D is frozen and the real images do not depend on G
                            real_logits = d_module(real_d)
                    adversarial = self.loss.g_loss(d_module(self.for_d(fake)), real_logits)
                    self.add_stat("loss_g_adv", adversarial)
                    loss = loss + self.adversarial_weight * adversarial
                self.backward("g", loss)
                self.optimizer_step("g")
                self.add_stat("loss_g", loss)
                pairs.append((real_d, self.for_d(fake.detach())))
        return pairs

    def content_loss(self, fake: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Pixel and perceptual terms, in fp32 whatever the engines compute in."""
        loss = fake.new_zeros((), dtype=torch.float32)
        if self.pixel_weight > 0:
            pixel = self.pixel(fake.float(), hr.float())
            self.add_stat("loss_pixel", pixel)
            loss = loss + self.pixel_weight * pixel
        if self.perceptual is not None and self.perceptual_weight > 0:
            perceptual = self.perceptual(fake, hr)
            self.add_stat("loss_perceptual", perceptual)
            loss = loss + self.perceptual_weight * perceptual
        return loss

    def d_phase(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Dmain: one optimizer step of D on the real images and G's outputs of this step's micro-batches."""
        for real, fake in pairs:
            real_logits = self.engine_d(real)
            fake_logits = self.engine_d(fake)
            loss = self.loss.d_loss(real_logits, fake_logits)
            self.backward("d", loss)
            self.optimizer_step("d")
            self.add_stat("loss_d", loss)
            self.add_d_health(self.loss, real_logits.detach(), fake_logits.detach())

    def step(self, next_pair: PairSource, batch_size: Optional[int] = None) -> None:
        """One training step on every rank: Gmain, then Dmain when there is a D."""
        pairs = self.g_phase(next_pair)
        if self.engine_d is not None:
            self.d_phase(pairs)
        self.steps_done += 1

    def samples_per_step(self, batch_size: int) -> int:
        """High-resolution crops: G's micro-batches, which D trains on too."""
        return batch_size * self.engine_g.gradient_accumulation_steps()


def check_config(cfg: Config) -> None:
    """The training settings a super-resolution run needs (part of the task's config checks)."""
    loss = cfg.loss
    positive("loss.adversarial_weight", loss.adversarial_weight, allow_zero=True)
    positive("loss.pixel.weight", loss.pixel.weight, allow_zero=True)
    positive("loss.perceptual.weight", loss.perceptual.weight, allow_zero=True)
    if loss.pixel.weight == 0 and loss.perceptual.weight == 0 and loss.adversarial_weight == 0:
        raise ConfigError("loss: every term of G's loss has weight 0 (loss.pixel.weight, "
                          "loss.perceptual.weight, loss.adversarial_weight); nothing would be trained")
    perceptual.check_config(cfg)  # layer names always; the weights file only when the term is used
    if cfg.train.n_critic != 1:
        raise ConfigError(f"train.n_critic: super-resolution trains D once per G step, on G's output of that "
                          f"step; set train.n_critic=1 (got {cfg.train.n_critic})")
    gas_g, gas_d = (cfg.deepspeed.g.gradient_accumulation_steps, cfg.deepspeed.d.gradient_accumulation_steps)
    if loss.adversarial_weight > 0 and gas_g != gas_d:
        raise ConfigError(f"deepspeed.d.gradient_accumulation_steps: D trains on G's micro-batches, so it must "
                          f"equal deepspeed.g.gradient_accumulation_steps ({gas_g}), got {gas_d}")
    if cfg.augment.policy:
        raise ConfigError(f"augment.policy: {cfg.augment.policy!r} is for generation; super-resolution "
                          f"augments its crops with data.flip and data.rot90")
    if cfg.augment.ada.enabled:
        raise ConfigError("augment.ada.enabled: adaptive augmentation of D's inputs is for generation; "
                          "super-resolution augments its crops with data.flip and data.rot90")
    if cfg.loss.g_reg.type != "none":
        raise ConfigError(f"loss.g_reg.type: {cfg.loss.g_reg.type} regularizes a generator's style space; "
                          f"super-resolution generators have none; set loss.g_reg.type=none")

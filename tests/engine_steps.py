"""One generation step over real DeepSpeed engines in this process (world size 1, no Ray): a tiny config, the
algorithm built on its engines, snapshots of a network's weights, and real batches. Shared by the tests of
the steps and of the non-finite guard."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distgan import models
from distgan.config import Config, build_section
from distgan.runtime import engines
from distgan.tasks.generation.step import AlternatingGAN
from distgan.tasks.super_resolution.step import SuperResolutionGAN

SHAPE = (1, 8, 8)


def tiny_config(stage: int, precision: str = "fp32") -> Config:
    cfg = Config()
    cfg.train.batch_size = 8
    cfg.model.latent_dim = 8
    cfg.model.g_width = cfg.model.d_width = 8
    cfg.deepspeed.zero_stage = stage
    cfg.deepspeed.precision = precision
    return cfg


def build_gan(cfg: Config, num_classes: int = 0) -> AlternatingGAN:
    torch.manual_seed(0)
    eg = engines.build_engine(models.build_generator(cfg.model, SHAPE, num_classes), cfg, "g", 1, False)
    ed = engines.build_engine(models.build_discriminator(cfg.model, SHAPE, num_classes), cfg, "d", 1, False)
    return AlternatingGAN.from_config(cfg, eg, ed, torch.device("cpu"), torch.Generator().manual_seed(1),
                                      num_classes)


def snapshot(engine) -> list[torch.Tensor]:
    with engines.whole_parameters(engine) as module:
        return [p.detach().float().clone() for p in module.parameters()]


def moved(before, after) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after))


def real_batches(num_classes: int = 0):
    """Batches of 8 (samples, labels); labels only for a conditional GAN."""
    gen = torch.Generator().manual_seed(2)

    def draw():
        x = torch.rand(8, *SHAPE, generator=gen) * 2 - 1
        return x, torch.randint(num_classes, (8,), generator=gen) if num_classes else None

    return draw


# -- super-resolution ---------------------------------------------------------------

SCALE, HR = 2, 32
SR_SHAPE = (3, HR, HR)


def sr_config(stage: int = 0, precision: str = "fp32", adversarial_weight: float = 1e-2, loss: str = "ragan",
              discriminator: str = "vgg") -> Config:
    return build_section(Config, {
        "train": {"batch_size": 4},
        "deepspeed": {"zero_stage": stage, "precision": precision},
        "model": {"family": "srresnet", "scale": SCALE, "blocks": 1, "g_width": 8, "g_norm": "none",
                  "discriminator": discriminator, "d_width": 8, "d_norm": "none"},
        "loss": {"type": loss, "adversarial_weight": adversarial_weight, "pixel": {"type": "l1", "weight": 1.0}},
        "data": {"name": "photos", "channels": 3, "resolution": HR},
    }, "")


def build_sr(cfg: Config, perceptual=None) -> SuperResolutionGAN:
    torch.manual_seed(0)
    eg = engines.build_engine(models.build_generator(cfg.model, SR_SHAPE), cfg, "g", 1, False)
    ed = None
    if cfg.loss.adversarial_weight > 0:
        ed = engines.build_engine(models.build_discriminator(cfg.model, SR_SHAPE), cfg, "d", 1, False)
    return SuperResolutionGAN.from_config(cfg, eg, ed, torch.device("cpu"), perceptual)


def pairs():
    """(LR, HR) batches of 4 where LR is HR average-pooled; HR is smooth, so detail lost is recoverable."""
    gen = torch.Generator().manual_seed(3)

    def draw():
        coarse = torch.rand(4, 3, HR // 4, HR // 4, generator=gen) * 2 - 1
        hr = F.interpolate(coarse, size=(HR, HR), mode="bilinear", align_corners=False)
        return F.avg_pool2d(hr, SCALE), hr

    return draw

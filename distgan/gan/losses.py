"""Adversarial losses, registered by the name used in ``loss.type``.

Each loss maps D's raw logits to a scalar for each player. Logits are cast to
fp32 first: under bf16 the softplus of a large logit loses the gradient
otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distgan.registry import Registry


class AdversarialLoss:
    """``d_loss`` is minimised by D, ``g_loss`` by G; both return scalars."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[AdversarialLoss]] = Registry("adversarial loss")


@LOSSES.register("nonsaturating")
class NonSaturating(AdversarialLoss):
    """Goodfellow et al.'s minimax for D with G maximising log D(G(z)) (strong early gradients)."""

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits.float()).mean()


@LOSSES.register("hinge")
class Hinge(AdversarialLoss):
    """Geometric-GAN hinge loss (SAGAN, BigGAN): D stops pushing once a margin of 1 is met."""

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()

    def g_loss(self, fake_logits):
        return -fake_logits.float().mean()


def build_loss(name: str) -> AdversarialLoss:
    return LOSSES.get(name, key="loss.type")()

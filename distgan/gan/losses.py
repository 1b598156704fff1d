"""Adversarial losses, registered by the name used in ``loss.type``.

Each loss maps D's raw logits to a scalar for each player. Logits are cast to
fp32 first, whatever D's dtype (``deepspeed.d.precision``, which may differ from
G's): under bf16 the softplus of a large logit loses the gradient otherwise. ``g_loss`` also receives D's logits on a real batch for the
relativistic loss, which compares every fake with the average real and back.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from distgan.core.registry import Registry


class AdversarialLoss:
    """``d_loss`` is minimised by D, ``g_loss`` by G; both return scalars."""

    g_needs_real = False
    """True when ``g_loss`` needs D's logits on reals (the G step then draws a real batch)."""
    needs_lipschitz = False
    """True when D must be kept Lipschitz (a gradient penalty or spectral norm) for the loss to mean anything."""
    threshold = 0.0
    """The logit that separates "real" from "fake" for D's accuracy."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def d_accuracy(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shares of reals D calls real and of fakes D calls fake."""
        return ((real_logits.float() > self.threshold).float().mean(),
                (fake_logits.float() < self.threshold).float().mean())


LOSSES: Registry[type[AdversarialLoss]] = Registry("adversarial loss")


@LOSSES.register("nonsaturating")
class NonSaturating(AdversarialLoss):
    """Goodfellow et al.'s minimax for D with G maximising log D(G(z)) (strong early gradients)."""

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits.float()).mean()


@LOSSES.register("hinge")
class Hinge(AdversarialLoss):
    """Geometric-GAN hinge loss (SAGAN, BigGAN): D stops pushing once a margin of 1 is met."""

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.float().mean()


@LOSSES.register("wgan")
class Wasserstein(AdversarialLoss):
    """WGAN (Arjovsky et al.): D is a critic estimating the Wasserstein-1 distance.

    Only meaningful for a Lipschitz critic, hence ``needs_lipschitz``: pair it
    with ``loss.d_reg.type=gp`` (WGAN-GP, usually with ``train.n_critic`` 5) or
    spectral normalization.
    """

    needs_lipschitz = True

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.float().mean() - real_logits.float().mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.float().mean()

    def d_accuracy(self, real_logits, fake_logits):
        # A critic's scores have no fixed zero (adding a constant changes nothing), only an order.
        return _relative_accuracy(real_logits, fake_logits)


@LOSSES.register("lsgan")
class LeastSquares(AdversarialLoss):
    """LSGAN (Mao et al.) with the 0-1 coding: D regresses reals to 1 and fakes to 0, G its fakes to 1."""

    threshold = 0.5

    def d_loss(self, real_logits, fake_logits):
        return 0.5 * ((real_logits.float() - 1.0).square().mean() + fake_logits.float().square().mean())

    def g_loss(self, fake_logits, real_logits=None):
        return 0.5 * (fake_logits.float() - 1.0).square().mean()


@LOSSES.register("ragan")
class RelativisticAverage(AdversarialLoss):
    """Relativistic average GAN (Jolicoeur-Martineau; ESRGAN's D): is a real more real than the average fake?

    G's loss is symmetric to D's, so G also needs D's logits on reals; they
    carry no gradient (D is frozen and reals do not depend on G), only the
    average fake does.
    """

    g_needs_real = True

    def d_loss(self, real_logits, fake_logits):
        real, fake = real_logits.float(), fake_logits.float()
        return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()

    def g_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("ragan's generator loss needs D's logits on a real batch")
        real, fake = real_logits.float(), fake_logits.float()
        return F.softplus(-(fake - real.mean())).mean() + F.softplus(real - fake.mean()).mean()

    def d_accuracy(self, real_logits, fake_logits):
        return _relative_accuracy(real_logits, fake_logits)


def _relative_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reals scored above the average fake, fakes below the average real."""
    real, fake = real_logits.float(), fake_logits.float()
    return (real > fake.mean()).float().mean(), (fake < real.mean()).float().mean()


def build_loss(name: str) -> AdversarialLoss:
    return LOSSES.get(name, key="loss.type")()

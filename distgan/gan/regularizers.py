"""Discriminator regularizers, registered by the name used in ``loss.d_reg.type``.

Each returns an unweighted penalty from D (a plain module, or its engine) and a
real batch, plus a fake batch where it needs one; the phase code weights it and
decides whether it joins D's main step or runs lazily as its own step
(StyleGAN2's Dreg). Both penalties differentiate D's output with respect to its
input and keep that graph (``create_graph``) so the penalty trains D.
"""

from __future__ import annotations

from typing import Callable

import torch

from distgan.core.registry import Registry

Discriminator = Callable[[torch.Tensor], torch.Tensor]


class Regularizer:
    needs_fake = False
    """True when the penalty also looks at generated samples."""

    def penalty(self, d: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def input_gradient(d: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """dD(x)/dx per sample, flattened [N, features], with the graph kept for the penalty's backward."""
    x = x.detach().requires_grad_(True)
    logits = d(x)
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
    return grad.float().flatten(1)


@REGULARIZERS.register("r1")
class R1(Regularizer):
    """R1 (Mescheder et al. 2018): 1/2 E||grad D(x_real)||^2, so ``loss.d_reg.weight`` is StyleGAN's gamma."""

    def penalty(self, d, real, fake=None):
        return 0.5 * input_gradient(d, real).square().sum(1).mean()


@REGULARIZERS.register("gp")
class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): E(||grad D(x_hat)|| - 1)^2 on random real-fake interpolates."""

    needs_fake = True

    def penalty(self, d, real, fake):
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
        # Fakes in D's dtype like the reals, whichever network made them (G may compute in another dtype).
        mixed = alpha * real.detach() + (1 - alpha) * fake.detach().to(real.dtype)
        return (input_gradient(d, mixed).norm(2, dim=1) - 1.0).square().mean()


def build_regularizer(name: str) -> Regularizer:
    return REGULARIZERS.get(name, key="loss.d_reg.type")()

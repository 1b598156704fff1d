"""Discriminator regularizers, registered by the name used in ``loss.d_reg.type``, and the generator's
path-length penalty (``loss.g_reg``).

Each returns an unweighted penalty from D (a plain module, or its engine) and a
real batch, plus a fake batch where it needs one; the phase code weights it and
decides whether it joins D's main step or runs lazily as its own step
(StyleGAN2's Dreg). Both penalties differentiate D's output with respect to its
input and keep that graph (``create_graph``) so the penalty trains D. The path-length penalty does the same
for G, differentiating the image with respect to the styles w.
"""

from __future__ import annotations

from typing import Callable, Optional

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


# -- generator: path length (StyleGAN2, Karras et al. 2020, sec. 3.2 and app. B) ------------------------


def path_length_noise(images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """y ~ N(0, I) / sqrt(H W) shaped like ``images``: the random image-space direction of the penalty,
    normalized by the pixel count so the lengths do not grow with the resolution (StyleGAN2's pl_noise).
    Drawn on the CPU from ``generator`` (the rank's latent stream, so a resume redraws it exactly)."""
    y = torch.randn(images.shape, generator=generator) / (images.shape[2] * images.shape[3]) ** 0.5
    return y.to(images.device, torch.float32)


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """||J_w^T y|| per sample [N], J_w = d images / d ws: the gradient of (images . y) with respect to the styles,
    its squared norm summed over w's features and averaged over the ``num_ws`` styles (StyleGAN2's pl_lengths).
    The graph is kept (``create_graph``) so the penalty trains G."""
    (grad,) = torch.autograd.grad((images.float() * noise).sum(), ws, create_graph=True)
    return grad.float().square().sum(2).mean(1).sqrt()


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor) -> torch.Tensor:
    """E (||J_w^T y|| - a)^2 with a = ``pl_mean``, the running mean of the lengths (a constant here): the
    penalty is smallest when every w is mapped with the same local scale (eq. 4)."""
    return (lengths - pl_mean.detach()).square().mean()


def updated_pl_mean(pl_mean: torch.Tensor, batch_mean: torch.Tensor, decay: float) -> torch.Tensor:
    """a <- a + decay (batch mean - a): the exponential moving average StyleGAN2 keeps of the lengths."""
    return pl_mean.lerp(batch_mean.detach().to(pl_mean.dtype), decay)

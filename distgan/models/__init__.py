"""Generator and discriminator architectures: plain ``nn.Module``s, unaware of Ray and DeepSpeed.

A family registers how to build both networks for a data shape and how to
check that a config fits that shape. Generators expose ``latent_dim`` and map
``z [N, latent_dim]`` to samples ``[N, *data_shape]`` (images in [-1, 1]);
discriminators map samples to raw logits ``[N]`` (the loss owns the sigmoid).
"""

from __future__ import annotations

from torch import nn

from distgan.config import Config, ModelConfig
# The families register themselves on import.
from distgan.models import dcgan, mlp, rrdb, srresnet, stylegan2  # noqa: F401
from distgan.models.conditional import ConcatDiscriminator, ConditionalGenerator, ProjectionDiscriminator
from distgan.models.family import MODELS, Family, Shape, init_weights

__all__ = ["MODELS", "Family", "Shape", "build_discriminator", "build_generator", "check", "family",
           "init_weights", "spectral_normalize"]


def family(cfg: ModelConfig) -> Family:
    return MODELS.get(cfg.family, key="model.family")


def build_generator(cfg: ModelConfig, data_shape: Shape, num_classes: int = 0) -> nn.Module:
    """The family's G; with ``model.conditional`` it takes ``(z, labels)`` for ``num_classes`` classes."""
    build = family(cfg).build_generator
    if not cfg.conditional:
        return build(cfg, tuple(data_shape))
    if getattr(build, "conditions_itself", False):  # stylegan2: the label joins z inside its mapping network
        return build(cfg, tuple(data_shape), num_classes)
    return ConditionalGenerator(build, cfg, tuple(data_shape), num_classes)


def build_discriminator(cfg: ModelConfig, data_shape: Shape, num_classes: int = 0) -> nn.Module:
    """The family's D; with ``model.conditional`` it takes ``(samples, labels)``."""
    build = family(cfg).build_discriminator
    if not cfg.conditional:
        d = build(cfg, tuple(data_shape))
    else:
        d = (ProjectionDiscriminator(build(cfg, tuple(data_shape)), num_classes)
             if cfg.d_conditioning == "projection" else ConcatDiscriminator(build, cfg, tuple(data_shape), num_classes))
    return spectral_normalize(d) if cfg.d_spectral_norm else d


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al., 2018) on every conv and linear layer, in place.

    Uses the parametrization API: the weight seen in forward is divided by its
    largest singular value, estimated by one power iteration per training-mode
    forward; ``u``/``v`` are buffers, so they are checkpointed and synchronized
    like BatchNorm statistics.
    """
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    for layer in layers:
        nn.utils.parametrizations.spectral_norm(layer)
    return module


def check(cfg: Config, data_shape: Shape) -> None:
    """Fail before any Ray work when the model family cannot handle data of this shape."""
    family(cfg.model).check(cfg, tuple(data_shape))

"""Generator and discriminator architectures: plain ``nn.Module``s, unaware of Ray and DeepSpeed.

A family registers how to build both networks for a data shape and how to
check that a config fits that shape. Generators expose ``latent_dim`` and map
``z [N, latent_dim]`` to samples ``[N, *data_shape]`` (images in [-1, 1]);
discriminators map samples to raw logits ``[N]`` (the loss owns the sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from distgan.config import Config, ConfigError, ModelConfig
from distgan.data import class_names
from distgan.data import data_shape as sample_shape
from distgan.registry import Registry

Shape = tuple[int, ...]

__all__ = ["MODELS", "Family", "Shape", "build_discriminator", "build_generator", "check", "init_weights",
           "is_super_resolution", "spectral_normalize"]


@dataclass(frozen=True)
class Family:
    build_generator: Callable[[ModelConfig, Shape], nn.Module]
    build_discriminator: Callable[[ModelConfig, Shape], nn.Module]
    check: Callable[[Config, Shape], None]
    """Raises ConfigError, naming the key, when the config cannot produce data of this shape."""
    super_resolution: bool = False
    """G maps a low-resolution image to a ``model.scale`` times larger one (SRGAN, ESRGAN) instead of
    mapping z to a sample; data, losses, validation and export follow (``distgan.sr_worker``)."""


MODELS: Registry[Family] = Registry("model family")


def init_weights(module: nn.Module) -> None:
    """DCGAN init (Radford et al., 2016): N(0, 0.02) weights, BatchNorm gains N(1, 0.02), zero biases.

    Called at the end of every constructor, so ``torch.manual_seed(s)`` followed
    by a build gives bit-identical weights on every rank without a broadcast.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def family(cfg: ModelConfig) -> Family:
    return MODELS.get(cfg.family, key="model.family")


def is_super_resolution(cfg: ModelConfig) -> bool:
    return family(cfg).super_resolution


def build_generator(cfg: ModelConfig, data_shape: Shape, num_classes: int = 0) -> nn.Module:
    """The family's G; with ``model.conditional`` it takes ``(z, labels)`` for ``num_classes`` classes."""
    build = family(cfg).build_generator
    if not cfg.conditional:
        return build(cfg, tuple(data_shape))
    from distgan.models.conditional import ConditionalGenerator

    return ConditionalGenerator(build, cfg, tuple(data_shape), num_classes)


def build_discriminator(cfg: ModelConfig, data_shape: Shape, num_classes: int = 0) -> nn.Module:
    """The family's D; with ``model.conditional`` it takes ``(samples, labels)``."""
    build = family(cfg).build_discriminator
    if not cfg.conditional:
        d = build(cfg, tuple(data_shape))
    else:
        from distgan.models.conditional import ConcatDiscriminator, ProjectionDiscriminator

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


def check(cfg: Config) -> None:
    """Fail before any Ray work when the model family cannot handle the configured data."""
    family(cfg.model).check(cfg, sample_shape(cfg.data))
    if cfg.model.conditional and len(class_names(cfg.data)) < 2:
        source = f"data.path {cfg.data.path!r}" if cfg.data.path else f"data set {cfg.data.name!r}"
        hint = " (put its images in one sub-folder per class)" if cfg.data.path else ""
        raise ConfigError(f"model.conditional: {source} carries no class labels{hint}; "
                          f"set model.conditional=false or use labelled data")


# Families register themselves on import; they need MODELS and Family defined above.
from distgan.models import dcgan, mlp, rrdb, srresnet  # noqa: E402,F401

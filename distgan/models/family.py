"""What a model family is: a registry entry that builds G and D for a data shape and checks a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from distgan.config import Config, ConfigError, ModelConfig
from distgan.core.registry import Registry

Shape = tuple[int, ...]

@dataclass(frozen=True)
class Family:
    build_generator: Callable[[ModelConfig, Shape], nn.Module]
    build_discriminator: Callable[[ModelConfig, Shape], nn.Module]
    check: Callable[[Config, Shape], None]
    """Raises ConfigError, naming the key, when the config cannot produce data of this shape."""
    task: str = "generation"
    """The task its G serves (``distgan.tasks``): ``generation`` (z to a sample) or ``super_resolution``
    (a low-resolution image to one ``model.scale`` times larger: SRGAN, ESRGAN)."""


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


def power_of_two_images(cfg: Config, data_shape: Shape, family: str, low: int, high: int) -> int:
    """The resolution of image data for a convolutional family that doubles it per block; refuses points and
    sizes that are not a power of two in [low, high], naming the key."""
    source = f"data.path {cfg.data.path!r}" if cfg.data.path else f"data set {cfg.data.name!r}"
    if len(data_shape) != 3:
        raise ConfigError(f"model.family: {family} needs image data, but {source} gives samples of shape "
                          f"{tuple(data_shape)}; use model.family=mlp")
    resolution = data_shape[-1]
    if not low <= resolution <= high or resolution & (resolution - 1):
        upper = f" to {high}" if high < 2**31 else " or more (8, 16, 32, 64, ...)"
        raise ConfigError(f"data.resolution: {family} needs a power of two from {low}{upper}, got {resolution}")
    return resolution

"""What a model family is: a registry entry that builds G and D for a data shape and checks a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from distgan.config import Config, ModelConfig
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

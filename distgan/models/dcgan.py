"""DCGAN (Radford et al., 2016) with configurable resolution, width and depth.

G: latent -> 4x4 map -> log2(R/4) up-blocks (transposed conv 4/2/1), each
optionally followed by ``g_depth`` 3x3 convs -> 3x3 conv to C channels -> tanh.
D mirrors it with strided convs down to 4x4 and a linear logit. Channel counts
halve (G) or double (D) per block, capped at 8x width so wide, deep settings
stay affordable.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distgan.config import Config, ConfigError, ModelConfig
from distgan.models import MODELS, Family, Shape, init_weights

MAX_MULT = 8


def _levels(resolution: int) -> int:
    return int(math.log2(resolution // 4))


def _norm2d(enabled: bool, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        channels, resolution = data_shape[0], data_shape[1]
        self.latent_dim = cfg.latent_dim
        levels = _levels(resolution)
        widths = [cfg.g_width * min(2 ** (levels - i), MAX_MULT) for i in range(levels + 1)]
        norm = cfg.g_norm == "batch"
        self.stem = nn.Sequential(
            nn.Linear(cfg.latent_dim, widths[0] * 16, bias=not norm),
            nn.Unflatten(1, (widths[0], 4, 4)),
            _norm2d(norm, widths[0]), nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        for i in range(levels):
            blocks += [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=not norm),
                       _norm2d(norm, widths[i + 1]), nn.ReLU()]
            for _ in range(cfg.g_depth):
                blocks += [nn.Conv2d(widths[i + 1], widths[i + 1], 3, 1, 1, bias=not norm),
                           _norm2d(norm, widths[i + 1]), nn.ReLU()]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.blocks(self.stem(z)))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        channels, resolution = data_shape[0], data_shape[1]
        levels = _levels(resolution)
        widths = [cfg.d_width * min(2 ** i, MAX_MULT) for i in range(levels)]
        norm = cfg.d_norm == "batch"
        layers: list[nn.Module] = []
        for i in range(levels):
            c_in = channels if i == 0 else widths[i - 1]
            # No norm on the first layer: it would erase the input's colour statistics (DCGAN §3).
            layers += [nn.Conv2d(c_in, widths[i], 4, 2, 1), _norm2d(norm and i > 0, widths[i]), nn.LeakyReLU(0.2)]
            for _ in range(cfg.d_depth):
                layers += [nn.Conv2d(widths[i], widths[i], 3, 1, 1), _norm2d(norm, widths[i]), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.logit = nn.Linear(widths[-1] * 16, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.features(x).flatten(1)).squeeze(1)


def _check(cfg: Config, data_shape: Shape) -> None:
    if len(data_shape) != 3:
        raise ConfigError(f"model.family: dcgan needs image data, but data set {cfg.data.name!r} gives samples "
                          f"of shape {data_shape}; use model.family=mlp")
    resolution = data_shape[1]
    if resolution < 8 or resolution & (resolution - 1):
        raise ConfigError(f"data.resolution: dcgan needs a power of two >= 8 (8, 16, 32, 64, ...), got {resolution}")


MODELS.register("dcgan")(Family(DCGANGenerator, DCGANDiscriminator, _check))

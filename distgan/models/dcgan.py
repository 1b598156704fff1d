"""DCGAN (Radford et al., 2016) at any power-of-two resolution, with configurable width and depth.

G: latent -> linear -> 4x4 map -> log2(R/4) up-blocks (transposed conv 4/2/1,
then ``g_depth`` 3x3 convs at that resolution) -> 3x3 conv to C channels -> tanh.
D mirrors it with strided 4/2/1 convs down to 4x4 and a linear logit.

Channels halve per up-block in G and double per down-block in D, so the
highest resolution carries ``width`` channels and the 4x4 map the most,
capped at ``MAX_MULT`` x width. Every block then costs about the same FLOPs,
and the cost grows with width squared and with the number of blocks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distgan.config import Config, ModelConfig
from distgan.models.family import MODELS, Family, Shape, init_weights, power_of_two_images

MAX_MULT = 8
"""Widest layer as a multiple of ``width``: keeps 64 px and up from exploding in channels."""


def _levels(resolution: int) -> int:
    """Factor-2 resampling blocks between 4x4 and ``resolution``."""
    return int(math.log2(resolution // 4))


def _conv_norm_act(conv: nn.Module, channels: int, norm: bool, act: nn.Module) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels) if norm else nn.Identity(), act]


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        channels, resolution = data_shape[0], data_shape[-1]
        levels = _levels(resolution)
        self.latent_dim = cfg.latent_dim
        widths = [cfg.g_width * min(2 ** (levels - i), MAX_MULT) for i in range(levels + 1)]
        norm = cfg.g_norm == "batch"  # with BatchNorm after every layer, conv biases are redundant

        self.stem = nn.Sequential(
            nn.Linear(cfg.latent_dim, widths[0] * 4 * 4, bias=not norm),
            nn.Unflatten(1, (widths[0], 4, 4)),
            nn.BatchNorm2d(widths[0]) if norm else nn.Identity(),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers = _conv_norm_act(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not norm), c_out, norm, nn.ReLU())
            for _ in range(cfg.g_depth):
                layers += _conv_norm_act(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm), c_out, norm, nn.ReLU())
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        # No norm on the output layer: DCGAN found BatchNorm there makes samples oscillate.
        self.to_image = nn.Sequential(nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.blocks(self.stem(z)))


class DCGANDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        channels, resolution = data_shape[0], data_shape[-1]
        levels = _levels(resolution)
        widths = [cfg.d_width * min(2 ** i, MAX_MULT) for i in range(levels)]
        norm = cfg.d_norm == "batch"

        blocks: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([channels] + widths[:-1], widths)):
            # No norm on the input layer, the mirror of G's output layer: DCGAN found that
            # BatchNorm on either makes samples oscillate and training unstable.
            first_norm = norm and i > 0
            layers = _conv_norm_act(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not first_norm), c_out, first_norm,
                                    nn.LeakyReLU(0.2))
            for _ in range(cfg.d_depth):
                layers += _conv_norm_act(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm), c_out, norm,
                                         nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1] * 4 * 4, 1)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened 4x4 feature map; a projection discriminator adds its class term here."""
        return self.blocks(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _check(cfg: Config, data_shape: Shape) -> None:
    power_of_two_images(cfg, data_shape, "dcgan", 8, 2**31)


MODELS.register("dcgan")(Family(DCGANGenerator, DCGANDiscriminator, _check))

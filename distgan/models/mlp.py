"""The vanilla GAN (Goodfellow et al., 2014): multilayer perceptrons on flattened samples.

Works for any data shape: 2-D points (the ring8 mode-collapse benchmark) as
well as small images, which are flattened on the way in and reshaped on the
way out. ``depth`` counts hidden layers beyond the first, so the default
``depth=0`` is a one-hidden-layer MLP and ring8 configs ask for 2-3.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from distgan.config import Config, ModelConfig
from distgan.models.family import MODELS, Family, Shape, init_weights


def _mlp(width_in: int, width: int, layers: int, norm: bool, act: Callable[[], nn.Module]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for i in range(layers):
        # A bias right before BatchNorm is cancelled by its mean subtraction.
        out.append(nn.Linear(width_in if i == 0 else width, width, bias=not norm))
        if norm:
            out.append(nn.BatchNorm1d(width))
        out.append(act())
    return out


class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.data_shape = tuple(data_shape)
        self.net = nn.Sequential(
            *_mlp(cfg.latent_dim, cfg.g_width, 1 + cfg.g_depth, cfg.g_norm == "batch", nn.ReLU),
            nn.Linear(cfg.g_width, math.prod(data_shape)),
        )
        # Images live in [-1, 1]; points are unbounded, and a tanh would cap the ring8 radius of 2 at 1.
        self.out = nn.Tanh() if len(data_shape) == 3 else nn.Identity()
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z)).unflatten(1, self.data_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        # LeakyReLU keeps gradients flowing to G through D's negative half (Radford et al., 2016).
        self.net = nn.Sequential(
            *_mlp(math.prod(data_shape), cfg.d_width, 1 + cfg.d_depth, cfg.d_norm == "batch",
                  lambda: nn.LeakyReLU(0.2)),
        )
        self.head = nn.Linear(cfg.d_width, 1)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer [N, d_width]; a projection discriminator adds its class term here."""
        return self.net(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _check(cfg: Config, data_shape: Shape) -> None:
    """Any shape flattens to a vector, so every data set fits."""


MODELS.register("mlp")(Family(MLPGenerator, MLPDiscriminator, _check))

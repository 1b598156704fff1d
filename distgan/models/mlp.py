"""The vanilla GAN: multilayer perceptrons on flattened samples (Goodfellow et al., 2014)."""

from __future__ import annotations

import math

import torch
from torch import nn

from distgan.config import Config, ModelConfig
from distgan.models import MODELS, Family, Shape, init_weights


def _hidden(width_in: int, width: int, layers: int, norm: bool, act: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for i in range(layers):
        out.append(nn.Linear(width_in if i == 0 else width, width))
        if norm:
            out.append(nn.BatchNorm1d(width))
        out.append(act)
    return out


class MLPGenerator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.data_shape = data_shape
        self.net = nn.Sequential(
            *_hidden(cfg.latent_dim, cfg.g_width, 1 + cfg.g_depth, cfg.g_norm == "batch", nn.ReLU()),
            nn.Linear(cfg.g_width, math.prod(data_shape)),
        )
        # Images live in [-1, 1]; points (e.g. ring8) are unbounded.
        self.out = nn.Tanh() if len(data_shape) == 3 else nn.Identity()
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z)).view(z.shape[0], *self.data_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        self.net = nn.Sequential(
            *_hidden(math.prod(data_shape), cfg.d_width, 1 + cfg.d_depth, cfg.d_norm == "batch",
                     nn.LeakyReLU(0.2)),
            nn.Linear(cfg.d_width, 1),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)


def _check(cfg: Config, data_shape: Shape) -> None:
    pass  # any shape can be flattened


MODELS.register("mlp")(Family(MLPGenerator, MLPDiscriminator, _check))

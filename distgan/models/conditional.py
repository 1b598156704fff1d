"""Class-conditional wrappers around any family's G and D (conditional GAN).

G: a learned label embedding is concatenated to z, so the family's generator
is simply built for a longer latent. D, two ways:

* ``projection`` (Miyato & Koyama, 2018): logit = head(phi(x)) + <embed(y), phi(x)>,
  where phi is the family's feature extractor. The label enters as an inner
  product instead of an input, which is what made conditional GANs scale.
* ``concat``: one-hot labels as extra input channels (images) or features
  (points), the simple textbook option.

The wrappers take ``(samples, labels)``; they know nothing of Ray or DeepSpeed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from distgan.config import ModelConfig

Shape = tuple[int, ...]


class ConditionalGenerator(nn.Module):
    def __init__(self, build: Callable[[ModelConfig, Shape], nn.Module], cfg: ModelConfig, data_shape: Shape,
                 num_classes: int):
        super().__init__()
        self.base = build(dataclasses.replace(cfg, latent_dim=cfg.latent_dim + cfg.embed_dim), data_shape)
        self.embed = nn.Embedding(num_classes, cfg.embed_dim)
        nn.init.normal_(self.embed.weight, 0.0, 1.0)  # on the scale of z, which it joins
        self.latent_dim = cfg.latent_dim
        self.num_classes = num_classes

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.base(torch.cat([z, self.embed(labels).to(z.dtype)], dim=1))


class ProjectionDiscriminator(nn.Module):
    def __init__(self, base: nn.Module, num_classes: int):
        super().__init__()
        self.base = base
        self.embed = nn.Embedding(num_classes, base.head.in_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # starts near the unconditional D
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.base.features(x)
        return self.base.head(h).squeeze(1) + (self.embed(labels).to(h.dtype) * h).sum(dim=1)


class ConcatDiscriminator(nn.Module):
    def __init__(self, build: Callable[[ModelConfig, Shape], nn.Module], cfg: ModelConfig, data_shape: Shape,
                 num_classes: int):
        super().__init__()
        self.images = len(data_shape) == 3
        wider = ((data_shape[0] + num_classes, *data_shape[1:]) if self.images
                 else (int(torch.Size(data_shape).numel()) + num_classes,))
        self.base = build(cfg, wider)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, self.num_classes).to(x.dtype)
        if self.images:
            planes = onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])
            return self.base(torch.cat([x, planes], dim=1))
        return self.base(torch.cat([x.flatten(1), onehot], dim=1))

"""The ``model.stylegan2`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its
size): the StyleGAN2 family's architecture keys. A docstring per field, as everywhere in the tree.

The latent z is ``model.latent_dim`` (the loop draws it), the label embedding ``model.embed_dim``, the
resolution ``data.resolution`` and activation checkpointing of the synthesis blocks ``model.checkpointing``;
the ranges are checked by the family (``distgan.models.stylegan2``), each error naming its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class StyleGAN2Config:
    w_dim: int = 512
    """Width of the intermediate latent w (the mapping network's layers and output), 512 in StyleGAN2."""
    mapping_layers: int = 8
    """Fully connected layers of the mapping network z -> w (StyleGAN2: 8; StyleGAN2-ADA's CIFAR-10: 2)."""
    mapping_lr_mult: float = 0.01
    """Learning-rate multiplier of the mapping network (equalized learning rate, StyleGAN sec. 4 / app. C):
    its weights move 100x slower than the synthesis network's at the same optimizer lr."""
    channel_base: int = 16384
    """Feature maps at resolution r: min(channel_base / r, channel_max), in G and D alike. StyleGAN2-ADA uses
    16384 up to 256 px and 32768 for 512 and 1024 px."""
    channel_max: int = 512
    """Cap on the feature maps at any resolution."""
    mbstd_group_size: int = 4
    """Minibatch standard deviation (D's last block): samples per group whose standard deviation D sees; a
    batch it does not divide uses the largest group that does."""
    mbstd_channels: int = 1
    """Minibatch standard deviation: feature groups, each adding one channel; divides D's 4x4 channels."""
    style_mixing_prob: float = 0.9
    """Chance that a training batch of G mixes the styles of two latents at a random layer (style mixing
    regularization, StyleGAN sec. 3.1); 0 disables it. Used by the generation step."""
    w_avg_beta: float = 0.995
    """Decay of the tracked mean of w (``w_avg``, a buffer updated by every training-mode mapping), the
    centre the truncation trick pulls w toward."""
    noise_mode: Literal["random", "const", "none"] = "random"
    """Per-pixel noise of the synthesis layers: ``random`` (fresh noise each forward, as trained),
    ``const`` (a fixed noise image per layer, stored with the weights: reproducible samples) or ``none``."""

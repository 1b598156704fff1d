"""RRDBNet (Wang et al., 2018, the ESRGAN generator): residual-in-residual dense blocks, no BatchNorm.

    conv_first -> ``blocks`` x RRDB -> conv_body + long skip
    -> per factor of 2: nearest x2, conv_up{i}, LeakyReLU -> conv_hr, LeakyReLU -> conv_last

An RRDB is three residual dense blocks (RDB) in a residual: each RDB has five
3x3 convs, each seeing the concatenation of the block input and all earlier
convs' outputs (``growth`` new channels each), and adds its output, scaled by
0.2, to its input. ESRGAN drops BatchNorm (it brings artefacts when train and
test statistics differ) and relies on this residual scaling and a 0.1-scaled
init to keep 23 blocks stable.

Parameter names follow the published ESRGAN layout (``conv_first``,
``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``; ``conv_up3`` at x8), so a converted x4 ESRGAN state
dict loads with ``strict=True``. Published x2 models (Real-ESRGAN x2plus)
instead pixel-unshuffle the input and keep two x2 stages, so they do not load
into the x2 net here, which has one.

Unlike SRResNet there is no bicubic skip: it would change what published
weights compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distgan.config import Config, ConfigError, ModelConfig
from distgan.models.family import MODELS, Family, Shape
from distgan.models import sr_discriminators
from distgan.models.srresnet import SCALES, check_sr, kaiming_init, run_blocks, upsample_stages

SLOPE = 0.2
RESIDUAL_SCALE = 0.2
"""ESRGAN's residual scaling: each dense block adds only a fifth of its output, which keeps the sum over
69 dense blocks of the published 23-RRDB net from blowing up early in training."""


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the last maps back to ``width`` channels."""

    def __init__(self, width: int, growth: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(width + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(width + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(width + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(width + 4 * growth, width, 3, 1, 1)
        self.act = nn.LeakyReLU(SLOPE)
        kaiming_init([self], scale=0.1, negative_slope=SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.act(conv(torch.cat(features, 1))))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, 1))


class RRDB(nn.Module):
    """Residual in residual: three dense blocks, their result scaled and added to the input."""

    def __init__(self, width: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(width, growth)
        self.rdb2 = ResidualDenseBlock(width, growth)
        self.rdb3 = ResidualDenseBlock(width, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator; ``scale`` 2, 4 or 8 (one nearest-neighbour x2 stage per factor of 2)."""

    def __init__(self, in_channels: int, width: int = 64, blocks: int = 23, growth: int = 32, scale: int = 4,
                 checkpointing: bool = False):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        self.scale, self.in_channels, self.checkpointing = scale, in_channels, checkpointing
        self.conv_first = nn.Conv2d(in_channels, width, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(width, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(width, width, 3, 1, 1)
        # Attributes, not a list, so the names are the published conv_up1, conv_up2 (conv_up3).
        self.up_names = [f"conv_up{i + 1}" for i in range(upsample_stages(scale))]
        for name in self.up_names:
            setattr(self, name, nn.Conv2d(width, width, 3, 1, 1))
        self.conv_hr = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_last = nn.Conv2d(width, in_channels, 3, 1, 1)
        self.act = nn.LeakyReLU(SLOPE)
        # The dense blocks init themselves scaled by 0.1; the convs outside the trunk keep full Kaiming
        # gain, so the input's signal reaches the output at its own scale.
        kaiming_init([self.conv_first, self.conv_body, *self.upsample_convs(), self.conv_hr, self.conv_last],
                     negative_slope=SLOPE)

    def upsample_convs(self) -> list[nn.Conv2d]:
        return [getattr(self, name) for name in self.up_names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(run_blocks(self.body, feat, self.checkpointing))
        # Resize then conv, as ESRGAN does: unlike a transposed conv it cannot make checkerboard
        # artefacts (Odena et al., 2016).
        for conv in self.upsample_convs():
            feat = self.act(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


def check(cfg: Config, data_shape: Shape) -> None:
    check_sr(cfg, data_shape)
    if cfg.model.growth <= 0:
        raise ConfigError(f"model.growth: rrdb's dense layers each add model.growth channels, so it must be "
                          f"> 0, got {cfg.model.growth}")


def build_generator(cfg: ModelConfig, data_shape: Shape) -> RRDBNet:
    return RRDBNet(data_shape[0], width=cfg.g_width, blocks=cfg.blocks, growth=cfg.growth, scale=cfg.scale,
                   checkpointing=cfg.checkpointing)


MODELS.register("rrdb")(Family(build_generator, sr_discriminators.build_discriminator, check,
                                task="super_resolution"))

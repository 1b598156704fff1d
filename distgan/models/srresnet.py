"""SRResNet (Ledig et al., 2017, the SRGAN generator) and what both super-resolution families share.

G maps a low-resolution image [N, C, h, w] to [N, C, h*scale, w*scale], both in
[-1, 1]. It is fully convolutional, so it runs on training crops and whole
images alike:

    conv_first -> PReLU -> ``blocks`` x (conv-[BN]-PReLU-conv-[BN] + identity)
    -> conv_body-[BN] + long skip -> log2(scale) x (conv to 4x channels, PixelShuffle(2), PReLU)
    -> conv_last (zero at initialization), added to the bicubic upsampling of the input.

The bicubic skip (MSRResNet, Wang et al. 2018, does the same with bilinear)
means G only learns the missing high frequencies: at initialization it already
equals bicubic, so even a short CPU run improves on it instead of first having
to learn to copy colours.

Shared with ``rrdb``: Kaiming init scaled down on residual branches, activation
checkpointing of the residual blocks, and the config check of both families.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from distgan.config import Config, ConfigError, ModelConfig
from distgan.models.family import MODELS, Family, Shape
from distgan.models import sr_discriminators

SCALES = (2, 4, 8)
MIN_LR_SIDE = 8
"""Smallest low-resolution crop: below it G's 3x3 convs see mostly zero padding, and JPEG degradation
(8x8 blocks) has no full block to work on."""


# --------------------------------------------------------------------------
# Shared by the SR generators
# --------------------------------------------------------------------------


def kaiming_init(modules: list[nn.Module], scale: float = 1.0, negative_slope: float = 0.0) -> None:
    """Kaiming-normal conv weights times ``scale``, zero biases.

    ``scale`` 0.1 on residual branches (as ESRGAN initializes) starts every block
    close to the identity, so a deep residual trunk neither explodes nor needs
    BatchNorm to train from the first step.
    """
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, mode="fan_in", nonlinearity="leaky_relu")
                with torch.no_grad():
                    m.weight.mul_(scale)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


@contextlib.contextmanager
def _frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics untouched while a checkpointed block is recomputed.

    The recomputation is a second training-mode forward: without this, every
    checkpointed BatchNorm would fold the same batch into its running stats twice.
    Momentum 0 leaves them exactly as they are; the step counter is restored.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def run_blocks(blocks: nn.Sequential, x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """Run ``blocks`` in order, each under activation checkpointing when asked and worthwhile.

    Checkpointing only pays when a backward pass will follow (training mode with
    grad enabled); in evaluation it would only add bookkeeping. Non-reentrant
    checkpointing works with parameters that require grad even when ``x`` does not.
    """
    recompute = checkpointing and blocks.training and torch.is_grad_enabled()
    for block in blocks:
        if recompute:
            x = checkpoint(block, x, use_reentrant=False,
                           context_fn=lambda b=block: (contextlib.nullcontext(), _frozen_norm_stats(b)))
        else:
            x = block(x)
    return x


def upsample_stages(scale: int) -> int:
    return int(math.log2(scale))


def check_sr(cfg: Config, data_shape: Shape) -> None:
    """The checks both SR families share: image data, scale, crop sizes, D constraints (when there is a D)."""
    m, family = cfg.model, cfg.model.family
    source = f"data.path {cfg.data.path!r}" if cfg.data.path else f"data set {cfg.data.name!r}"
    if len(data_shape) != 3:
        raise ConfigError(f"model.family: {family} super-resolves images, but {source} gives samples of shape "
                          f"{tuple(data_shape)}; use image data (for example data.name=photos or data.path)")
    if m.scale not in SCALES:
        raise ConfigError(f"model.scale: {family} upscales by 2, 4 or 8, got {m.scale}")
    if m.blocks <= 0:
        raise ConfigError(f"model.blocks: {family} needs at least one residual block, got {m.blocks}")
    if m.conditional:
        raise ConfigError(f"model.conditional: {family} is a super-resolution model, conditioned on the "
                          f"low-resolution image; class conditioning is not supported; set model.conditional=false")
    resolution = data_shape[-1]
    if resolution % m.scale:
        raise ConfigError(f"data.resolution: the high-resolution crop must be a multiple of model.scale="
                          f"{m.scale} so the low-resolution crop has whole pixels, got {resolution}")
    if resolution // m.scale < MIN_LR_SIDE:
        raise ConfigError(f"data.resolution: the low-resolution crop (data.resolution / model.scale = "
                          f"{resolution // m.scale}) must be at least {MIN_LR_SIDE} px; set data.resolution >= "
                          f"{MIN_LR_SIDE * m.scale}")
    if sr_discriminators.has_discriminator(cfg):  # a crop only D cannot take is no reason to refuse the PSNR stage
        sr_discriminators.check(cfg, data_shape)


# --------------------------------------------------------------------------
# SRResNet
# --------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """conv3x3-[BN]-PReLU-conv3x3-[BN] plus the identity (SRGAN's residual block)."""

    def __init__(self, width: int, norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=not norm)  # BN's shift makes a bias redundant
        self.bn1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.act = nn.PReLU(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(width) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleStage(nn.Module):
    """x2 by sub-pixel convolution (Shi et al., 2016): conv to 4x channels, PixelShuffle(2), PReLU."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, 4 * width, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SRResNet(nn.Module):
    """SRGAN's generator with a bicubic skip; ``scale`` 2, 4 or 8."""

    def __init__(self, in_channels: int, width: int = 64, blocks: int = 16, scale: int = 4, norm: bool = True,
                 checkpointing: bool = False):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        self.scale, self.in_channels, self.checkpointing = scale, in_channels, checkpointing
        # 3x3 instead of the paper's 9x9 first and last convs, as in MSRResNet: the residual trunk already
        # gives a wide receptive field, and a 9x9 conv_last runs at the high resolution (scale^2 as many
        # pixels) at 9x the cost of a 3x3 one. The bicubic skip also leaves conv_last only fine detail to add.
        self.conv_first = nn.Conv2d(in_channels, width, 3, 1, 1)
        self.act_first = nn.PReLU(width)
        self.body = nn.Sequential(*(ResidualBlock(width, norm) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(width, width, 3, 1, 1, bias=not norm)
        self.bn_body = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.upsample = nn.Sequential(*(UpsampleStage(width) for _ in range(upsample_stages(scale))))
        self.conv_last = nn.Conv2d(width, in_channels, 3, 1, 1)

        kaiming_init([self.conv_first, self.conv_body, self.upsample])
        # Residual branches start near zero: each block near the identity. conv_last starts at zero, so G
        # starts exactly at bicubic and its first steps can only learn detail, not first undo noise.
        kaiming_init([self.body], scale=0.1)
        nn.init.zeros_(self.conv_last.weight)
        nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act_first(self.conv_first(x))
        trunk = run_blocks(self.body, feat, self.checkpointing)
        feat = feat + self.bn_body(self.conv_body(trunk))
        # No tanh: the output is a residual over bicubic, which itself overshoots [-1, 1] at edges;
        # callers clamp for display and metrics.
        return bicubic(x, self.scale) + self.conv_last(self.upsample(feat))


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling with MATLAB's kernel (a = -0.5), the baseline SR is measured against.

    torch's plain bicubic uses a = -0.75; its antialiased path uses -0.5 and equals
    ``distgan.data.resize.imresize`` away from the borders (when enlarging the
    antialias only changes the coefficient). That path has no bf16 kernel on CPU,
    so it runs in fp32 and casts back.
    """
    up = F.interpolate(x.float(), scale_factor=scale, mode="bicubic", align_corners=False, antialias=True)
    return up.to(x.dtype)


def build_generator(cfg: ModelConfig, data_shape: Shape) -> SRResNet:
    return SRResNet(data_shape[0], width=cfg.g_width, blocks=cfg.blocks, scale=cfg.scale,
                    norm=cfg.g_norm == "batch", checkpointing=cfg.checkpointing)


MODELS.register("srresnet")(Family(build_generator, sr_discriminators.build_discriminator, check_sr,
                                  task="super_resolution"))

"""Discriminators of the super-resolution families, chosen by ``model.discriminator``.

``vgg``: SRGAN's classifier (Ledig et al., 2017). Stages of a 3x3 stride-1 conv
and a 4x4 stride-2 conv (BasicSR's variant of SRGAN's 3x3 stride 2: the even
kernel covers the stride without the 3x3's uneven overlap), channels width, 2w,
4w, 8w, 8w, ..., until the map is 4 to 7 px wide, then two linear layers. One
logit per image. Its linear head fixes the input size to the training crop.

``unet``: Real-ESRGAN's U-Net (Wang et al., 2021) with spectral norm. Three
stride-2 downsampling convs and three bilinear-upsampling convs with skip
connections give one logit per pixel, so D judges local texture everywhere and
tells G where an image looks fake, not only whether. Spectral norm, not
BatchNorm, keeps it stable, so ``model.d_norm`` does not apply to it. It is
fully convolutional: any H, W divisible by 8.

Both return raw logits; the losses average over any logit shape.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from distgan.config import Config, ConfigError, ModelConfig

Shape = tuple[int, ...]
SLOPE = 0.2
MAX_MULT = 8
"""Widest VGG stage as a multiple of ``width`` (SRGAN: 64 -> 512)."""
HIDDEN = 100
"""Units of the VGG head's hidden layer (BasicSR's choice; SRGAN used 1024): the flattened map is the big
input, so a small hidden layer keeps the head's weights a small share of D."""


def _init(module: nn.Module) -> None:
    """Kaiming-normal weights for the LeakyReLU that follows, zero biases; deterministic under a seed."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=SLOPE, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def vgg_layout(resolution: int) -> tuple[int, int] | None:
    """(stride-2 stages, side of the last map) for a square crop, or None when it does not fit.

    Stages halve until the map is 4 to 7 px (floor(log2(R / 4)) of them), which
    must divide exactly: R is 4, 5, 6 or 7 times a power of two, at least 8
    (8, 10, ..., 32, 48, 64, 96, 128, 192, 256, ...). 96 px, SRGAN's crop, ends at 6x6.
    """
    if resolution < 8:
        return None
    stages = (resolution // 4).bit_length() - 1
    if resolution % (1 << stages):
        return None
    return stages, resolution >> stages


class VGGDiscriminator(nn.Module):
    def __init__(self, in_channels: int, resolution: int, width: int = 64, norm: bool = True):
        super().__init__()
        layout = vgg_layout(resolution)
        if layout is None:
            raise ValueError(f"the vgg discriminator cannot take {resolution} px crops (see vgg_layout)")
        stages, side = layout
        self.input_size = (resolution, resolution)
        widths = [width * min(2 ** i, MAX_MULT) for i in range(stages)]

        blocks: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([in_channels] + widths[:-1], widths)):
            # No norm on the very first conv: normalizing the input image itself destabilizes GANs (DCGAN).
            first_norm = norm and i > 0
            blocks.append(nn.Sequential(OrderedDict(
                conv1=nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not first_norm),
                bn1=nn.BatchNorm2d(c_out) if first_norm else nn.Identity(),
                act1=nn.LeakyReLU(SLOPE),
                conv2=nn.Conv2d(c_out, c_out, 4, 2, 1, bias=not norm),
                bn2=nn.BatchNorm2d(c_out) if norm else nn.Identity(),
                act2=nn.LeakyReLU(SLOPE),
            )))
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(OrderedDict(
            fc1=nn.Linear(widths[-1] * side * side, HIDDEN),
            act=nn.LeakyReLU(SLOPE),
            fc2=nn.Linear(HIDDEN, 1),
        ))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"the vgg discriminator was built for {self.input_size} crops (its linear head "
                             f"fixes the size), got {tuple(x.shape[-2:])}; the unet one takes any size")
        return self.head(self.stages(x).flatten(1))[:, 0]


class UNetDiscriminator(nn.Module):
    """Per-pixel logits [N, 1, H, W]; spectral norm on every conv but the first and the last."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        w = width
        self.conv0 = nn.Conv2d(in_channels, w, 3, 1, 1)
        # Spectrally normalized convs go without biases, as in Real-ESRGAN.
        self.down1 = nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False)
        self.down2 = nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False)
        self.down3 = nn.Conv2d(4 * w, 8 * w, 4, 2, 1, bias=False)
        self.up1 = nn.Conv2d(8 * w, 4 * w, 3, 1, 1, bias=False)
        self.up2 = nn.Conv2d(4 * w, 2 * w, 3, 1, 1, bias=False)
        self.up3 = nn.Conv2d(2 * w, w, 3, 1, 1, bias=False)
        self.refine1 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.refine2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.conv_last = nn.Conv2d(w, 1, 3, 1, 1)
        self.act = nn.LeakyReLU(SLOPE)
        _init(self)
        # After the init: the parametrization estimates each weight's top singular vectors at registration.
        # The first conv sees raw pixels and the last makes the logit; Real-ESRGAN leaves both free.
        for name in ("down1", "down2", "down3", "up1", "up2", "up3", "refine1", "refine2"):
            spectral_norm(getattr(self, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"the unet discriminator needs H and W divisible by 8, got {tuple(x.shape[-2:])}")
        act, up = self.act, self._upsample
        x0 = act(self.conv0(x))
        x1 = act(self.down1(x0))
        x2 = act(self.down2(x1))
        x3 = act(self.down3(x2))
        # Skips are added, not concatenated: each decoder stage refines the encoder's map at its scale.
        u = act(self.up1(up(x3))) + x2
        u = act(self.up2(up(u))) + x1
        u = act(self.up3(up(u))) + x0
        u = act(self.refine1(u))
        u = act(self.refine2(u))
        return self.conv_last(u)

    @staticmethod
    def _upsample(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def build_discriminator(cfg: ModelConfig, data_shape: Shape) -> nn.Module:
    channels, resolution = data_shape[0], data_shape[-1]
    if cfg.discriminator == "vgg":
        return VGGDiscriminator(channels, resolution, width=cfg.d_width, norm=cfg.d_norm == "batch")
    if cfg.d_spectral_norm:
        # models.build_discriminator would stack a second spectral norm on the U-Net's own.
        raise ConfigError("model.d_spectral_norm: the unet discriminator already has spectral norm; "
                          "set model.d_spectral_norm=false")
    return UNetDiscriminator(channels, width=cfg.d_width)


def has_discriminator(cfg: Config) -> bool:
    """Whether an SR run trains a D: the PSNR-oriented stage (``loss.adversarial_weight`` 0) has none, and
    the SR task's ``build_discriminator`` returns None for it."""
    return cfg.loss.adversarial_weight != 0


def check(cfg: Config, data_shape: Shape) -> None:
    """The discriminator's constraints on the high-resolution crop (called by the SR families' check)."""
    m, resolution = cfg.model, data_shape[-1]
    if m.discriminator == "vgg" and vgg_layout(resolution) is None:
        raise ConfigError(f"data.resolution: the vgg discriminator halves the crop down to a 4-7 px map, so it "
                          f"needs 4, 5, 6 or 7 times a power of two, at least 8 (for example 32, 48, 64, 96, "
                          f"128, 192, 256), got {resolution}; or use model.discriminator=unet")
    if m.discriminator == "unet":
        if m.d_spectral_norm:
            raise ConfigError("model.d_spectral_norm: the unet discriminator already has spectral norm on its "
                              "convs; set model.d_spectral_norm=false")
        if resolution % 8:
            raise ConfigError(f"data.resolution: the unet discriminator downsamples 3 times by 2, so it needs a "
                              f"multiple of 8, got {resolution}")

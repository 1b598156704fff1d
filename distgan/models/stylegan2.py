"""StyleGAN2 (Karras et al., 2020) as a model family: ``model.family: stylegan2``, 16 to 1024 px.

G is StyleGAN2's config-F generator: a mapping network z -> w (``model.stylegan2.mapping_layers`` fully
connected layers at ``mapping_lr_mult``), tracked mean ``w_avg`` for the truncation trick, and a synthesis
network that starts from a learned 4x4 constant and doubles the resolution per block with two modulated
3x3 convolutions, per-pixel noise and a ToRGB whose outputs are upsampled and summed (the "skip"
generator of sec. 4.1). D is the "resnet" discriminator of sec. 4.1 ending in minibatch standard deviation.
Channels at resolution r are min(channel_base / r, channel_max) in both.

Conditional: G embeds the one-hot label (a fully connected layer, as StyleGAN2-ADA) and concatenates it,
normalized, to the normalized z at the mapping network's input; D is wrapped by ``models.conditional``
(projection: an inner product of a label embedding with D's final features, or concat), through the
``features``/``head`` split D exposes. ``StyleGAN2Generator.conditions_itself`` tells ``build_generator``
not to wrap G.

Training-only parts (style mixing regularization, path length and lazy R1 penalties) belong to the
generation step; this module gives them ``mapping``, ``synthesis``, ``mix_styles`` and ``draw_crossover``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from distgan.config import Config, ConfigError, ModelConfig, positive
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.models.family import MODELS, Family, Shape, power_of_two_images
from distgan.models.stylegan2_layers import (ConstantInput, EqualConv2d, EqualLinear, MinibatchStd,
                                             SynthesisLayer, ToRGB, fir_filter, normalize_2nd_moment, upsample2d)

MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024


def channels_at(resolution: int, cfg: StyleGAN2Config) -> int:
    """Feature maps at ``resolution``: the usual rule, halving per doubling above channel_base / channel_max."""
    return min(cfg.channel_base // resolution, cfg.channel_max)


def _resolutions(top: int) -> list[int]:
    """4, 8, ..., top."""
    return [2 ** i for i in range(2, int(math.log2(top)) + 1)]


def draw_crossover(num_ws: int, prob: float, generator: Optional[torch.Generator] = None) -> int:
    """A style-mixing crossover for one batch (StyleGAN sec. 3.1): with chance ``prob`` a layer index drawn
    uniformly from 1..num_ws-1 (layers from it on take the second latent's w), else ``num_ws`` (no mixing).
    Drawn on the CPU from ``generator``, so a step's draws are reproducible and restorable."""
    if prob <= 0 or torch.rand((), generator=generator).item() >= prob:
        return num_ws
    return int(torch.randint(1, num_ws, (), generator=generator).item())


class MappingNetwork(nn.Module):
    """z (and a label) -> w, broadcast to the ``num_ws`` style inputs; tracks the mean w in ``w_avg``."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int, lr_mult: float, w_avg_beta: float,
                 num_classes: int = 0, embed_dim: int = 0):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_classes = z_dim, w_dim, num_ws, num_classes
        self.w_avg_beta = w_avg_beta
        self.embed = EqualLinear(num_classes, embed_dim) if num_classes else None
        widths = [z_dim + (embed_dim if num_classes else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(*[EqualLinear(a, b, lr_mult=lr_mult, activation="lrelu")
                                      for a, b in zip(widths[:-1], widths[1:])])
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                truncation_cutoff: Optional[int] = None, update_w_avg: bool = True) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError(f"this mapping network is conditional on {self.num_classes} classes; pass labels")
            y = self.embed(F.one_hot(labels.long(), self.num_classes).to(z.dtype))
            x = torch.cat([x, normalize_2nd_moment(y)], dim=1)
        w = self.layers(x)
        if self.training and update_w_avg:
            # w_avg <- beta w_avg + (1 - beta) mean(w): the centre of W, for truncation (StyleGAN sec. 3.3)
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        if truncation_psi != 1.0:
            # w' = w_avg + psi (w - w_avg), on the first ``truncation_cutoff`` styles (all by default).
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            avg = self.w_avg.to(w.dtype)
            ws = torch.cat([avg.lerp(ws[:, :cut], truncation_psi), ws[:, cut:]], dim=1)
        return ws


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (upsampling conv,) conv, ToRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        self.resolution = resolution
        if in_channels == 0:  # the 4x4 block starts from the learned constant instead of a previous block
            self.const: Optional[ConstantInput] = ConstantInput(out_channels)
            self.conv0: Optional[SynthesisLayer] = None
        else:
            self.const = None
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, img_channels, w_dim)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        """``ws`` [N, num_conv + 1, w_dim]: a style per conv and one for ToRGB (shared with the next block's
        first conv, as in the official code)."""
        if self.const is not None:
            x = self.const(ws.shape[0], ws.dtype)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, C, R, R] (no tanh, as StyleGAN2: in about [-1, 1])."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, cfg: StyleGAN2Config,
                 checkpointing: bool = False):
        super().__init__()
        self.checkpointing = checkpointing
        blocks, prev = [], 0
        for res in _resolutions(resolution):
            out = channels_at(res, cfg)
            blocks.append(SynthesisBlock(prev, out, w_dim, res, img_channels))
            prev = out
        self.blocks = nn.ModuleList(blocks)
        self.num_ws = sum(b.num_conv for b in blocks) + blocks[-1].num_torgb

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        start = 0
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            block_ws = ws.narrow(1, start, block.num_conv + block.num_torgb)
            start += block.num_conv
            if recompute:
                # Activation checkpointing (model.checkpointing): keep only block boundaries; random noise is
                # redrawn identically in the recomputation (the RNG state is restored).
                x, img = checkpoint(block, x, img, block_ws, noise_mode, use_reentrant=False)
            else:
                x, img = block(x, img, block_ws, noise_mode)
        return img


class StyleGAN2Generator(nn.Module):
    """z [N, latent_dim] (and labels [N]) -> images [N, C, R, R]; ``mapping`` and ``synthesis`` are its halves."""

    conditions_itself = True
    """``models.build_generator`` passes ``num_classes`` here instead of wrapping G: labels enter the mapping."""

    def __init__(self, cfg: ModelConfig, data_shape: Shape, num_classes: int = 0):
        super().__init__()
        s = cfg.stylegan2
        channels, resolution = data_shape[0], data_shape[-1]
        self.latent_dim, self.num_classes, self.noise_mode = cfg.latent_dim, num_classes, s.noise_mode
        self.synthesis = SynthesisNetwork(s.w_dim, resolution, channels, s, cfg.checkpointing)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.latent_dim, s.w_dim, self.num_ws, s.mapping_layers, s.mapping_lr_mult,
                                      s.w_avg_beta, num_classes, cfg.embed_dim)

    def mix_styles(self, ws: torch.Tensor, z_mix: torch.Tensor, crossover: int,
                   labels: Optional[torch.Tensor] = None, truncation_psi: float = 1.0) -> torch.Tensor:
        """``ws`` with the styles from ``crossover`` on taken from ``z_mix``'s w (style mixing, StyleGAN
        sec. 3.1); the second mapping leaves ``w_avg`` alone. ``crossover >= num_ws`` returns ``ws``."""
        if crossover >= self.num_ws:
            return ws
        ws_mix = self.mapping(z_mix, labels, truncation_psi, update_w_avg=False)
        return torch.cat([ws[:, :crossover], ws_mix[:, crossover:]], dim=1)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                noise_mode: Optional[str] = None, z_mix: Optional[torch.Tensor] = None,
                crossover: Optional[int] = None) -> torch.Tensor:
        """``truncation_psi`` < 1 pulls w toward ``w_avg``; ``z_mix`` with ``crossover`` mixes styles;
        ``noise_mode`` defaults to ``model.stylegan2.noise_mode``."""
        ws = self.mapping(z, labels, truncation_psi)
        if z_mix is not None and crossover is not None:
            ws = self.mix_styles(ws, z_mix, crossover, labels, truncation_psi)
        return self.synthesis(ws, noise_mode or self.noise_mode)


class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs, the second downsampling, plus a 1x1 downsampled skip (the residual D of sec. 4.1); both
    paths scaled by sqrt(1/2) so the sum keeps the variance of one."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int):
        super().__init__()
        self.fromrgb = EqualConv2d(img_channels, tmp_channels, 1, activation="lrelu") if in_channels == 0 else None
        self.conv0 = EqualConv2d(tmp_channels, tmp_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(tmp_channels, out_channels, 3, activation="lrelu", down=True, gain=math.sqrt(0.5))
        self.skip = EqualConv2d(tmp_channels, out_channels, 1, bias=False, down=True, gain=math.sqrt(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        return self.skip(x) + self.conv1(self.conv0(x))


class StyleGAN2Discriminator(nn.Module):
    """Images [N, C, R, R] -> logits [N]: residual blocks down to 4x4, minibatch std, conv, two FC layers."""

    def __init__(self, cfg: ModelConfig, data_shape: Shape):
        super().__init__()
        s = cfg.stylegan2
        channels, resolution = data_shape[0], data_shape[-1]
        blocks, prev = [], 0
        for res in reversed(_resolutions(resolution)[1:]):
            tmp = channels_at(res, s)
            blocks.append(DiscriminatorBlock(prev, tmp, channels_at(res // 2, s), channels))
            prev = tmp
        self.blocks = nn.Sequential(*blocks)
        c4 = channels_at(4, s)
        self.mbstd = MinibatchStd(s.mbstd_group_size, s.mbstd_channels)
        self.conv = EqualConv2d(c4 + s.mbstd_channels, c4, 3, activation="lrelu")
        self.fc = EqualLinear(c4 * 4 * 4, c4, activation="lrelu")
        self.head = EqualLinear(c4, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """D's final features [N, C4]; a projection discriminator adds its class term on them."""
        return self.fc(self.conv(self.mbstd(self.blocks(x))).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def _check(cfg: Config, data_shape: Shape) -> None:
    resolution = power_of_two_images(cfg, data_shape, "stylegan2", MIN_RESOLUTION, MAX_RESOLUTION)
    s = cfg.model.stylegan2
    for name in ("w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group_size", "mbstd_channels"):
        positive(f"model.stylegan2.{name}", getattr(s, name))
    positive("model.stylegan2.mapping_lr_mult", s.mapping_lr_mult)
    if s.channel_base < resolution:
        raise ConfigError(f"model.stylegan2.channel_base: {s.channel_base} leaves no channels at {resolution} px "
                          f"(channels are channel_base / resolution); use at least {resolution}")
    if channels_at(4, s) % s.mbstd_channels:
        raise ConfigError(f"model.stylegan2.mbstd_channels: must divide D's {channels_at(4, s)} channels at 4x4, "
                          f"got {s.mbstd_channels}")
    if not 0.0 <= s.style_mixing_prob <= 1.0:
        raise ConfigError(f"model.stylegan2.style_mixing_prob: must be in [0, 1], got {s.style_mixing_prob}")
    if not 0.0 <= s.w_avg_beta < 1.0:
        raise ConfigError(f"model.stylegan2.w_avg_beta: must be in [0, 1), got {s.w_avg_beta}")
    if cfg.model.d_spectral_norm:
        raise ConfigError("model.d_spectral_norm: stylegan2's D scales its weights at run time (equalized "
                          "learning rate) and is kept smooth by R1 instead; set model.d_spectral_norm=false")


MODELS.register("stylegan2")(Family(StyleGAN2Generator, StyleGAN2Discriminator, _check))

"""StyleGAN2's layers (Karras et al., 2020, "Analyzing and Improving the Image Quality of StyleGAN") in plain
PyTorch: no custom CUDA op, so they run wherever torch does and under ``torch.compile``.

* Equalized learning rate (StyleGAN sec. 4.1 of Karras et al., 2018, "Progressive Growing of GANs"):
  weights are stored N(0, 1) / lr_mult and scaled at run time by lr_mult / sqrt(fan_in). Adam's update is
  invariant to a weight's scale, so every layer then learns at the same speed, and ``lr_mult`` slows one
  down (the mapping network's 0.01).
* Modulated convolution with demodulation (StyleGAN2 sec. 2.2, eqs. 1-3): styles scale the input channels,
  and each output channel is divided by the L2 norm of its modulated weights, so unit-variance inputs give
  unit-variance outputs without normalizing activations (which caused StyleGAN's droplet artifacts).
* Resampling with the [1, 3, 3, 1] FIR low-pass (upfirdn2d of the official code) done as depthwise
  convolutions; leaky ReLU with gain sqrt(2), which keeps the activations' second moment (He et al.).
* Every convolution, the fixed resampling filter's included, goes through ``distgan.models.conv_gradfix``: R1
  and the path-length penalty differentiate the gradients of the convolutions, and torch's generic rule for
  that also computes the gradient of a filter that needs none, group by group (docs/performance.md).

Each parameter is used only in the forward of the module owning it (children are called, never reached
into), so ZeRO-3's per-module gather hooks see every use.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from distgan.models import conv_gradfix

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
"""Leaky ReLU's gain: restores the second moment the negative half loses (StyleGAN2's ``bias_act``)."""
RESAMPLE_FILTER = (1.0, 3.0, 3.0, 1.0)
"""The separable binomial low-pass used for every up- and downsampling (StyleGAN2's ``resample_filter``)."""
NOISE_MODES = ("random", "const", "none")


def fir_filter(taps=RESAMPLE_FILTER) -> torch.Tensor:
    """The 2-D low-pass [k, k] as an outer product, normalized to sum 1 (a mean-preserving blur)."""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _filter2d(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], stride: int = 1,
              gain: float = 1.0) -> torch.Tensor:
    """Pad (before, after) on both axes, then filter every channel with ``f`` (depthwise, no mixing).

    Through conv_gradfix although the filter is fixed: torch's double-backward rule of a convolution computes
    the weight's gradient whether or not the weight needs one, for a depthwise convolution one group at a
    time with the whole feature map as kernel. That unused gradient was 99% of the GPU time of the
    path-length pass of the 1024 px G on an H200 (14.2 of 14.3 s) and 98% of R1 through its D."""
    c = x.shape[1]
    kernel = (f * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return conv_gradfix.conv2d(F.pad(x, [pad[0], pad[1], pad[0], pad[1]]), kernel, stride=stride, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: insert zeros after every pixel, then low-pass with gain 4 (the zeros took 3/4 of the
    energy); upfirdn2d's padding (2, 1) for a 4-tap filter keeps the image centred."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    k = f.shape[-1]
    return _filter2d(x, f, ((k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x downsampling: low-pass, then keep every second pixel (a strided depthwise convolution)."""
    k = f.shape[-1]
    return _filter2d(x, f, ((k - 1) // 2, (k - 2) // 2), stride=2)


def bias_act(x: torch.Tensor, bias: Optional[torch.Tensor], activation: str, gain: float = 1.0) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply ``lrelu`` (with gain sqrt(2)) or ``linear``, times ``gain``."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * (LRELU_GAIN * gain)
    elif gain != 1.0:
        x = x * gain
    return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square: z (and a label embedding) enters the mapping network at unit
    scale whatever its size (StyleGAN's PixelNorm on the input)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """A fully connected layer with equalized learning rate, optionally followed by leaky ReLU."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mult: float = 1.0, activation: str = "linear"):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mult)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_features)
        """Applied at run time: the effective weight is N(0, 1/fan_in) at init, learning at lr x lr_mult."""
        self.bias_gain = lr_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)


class EqualConv2d(nn.Module):
    """A convolution with equalized learning rate, optionally downsampling 2x (StyleGAN2's D): low-pass, then a
    stride-2 convolution, as the official ``conv2d_resample`` does; then bias, activation and ``gain``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: bool = False, gain: float = 1.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation, self.down, self.gain = activation, down, gain
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        k = self.kernel_size
        if not self.down:
            x = conv_gradfix.conv2d(x, w, padding=k // 2)
        elif k == 1:  # the residual's 1x1 projection: downsample first, 4x fewer multiply-adds
            x = conv_gradfix.conv2d(downsample2d(x, self.resample_filter), w)
        else:
            # Blur with the conv's own padding folded in (4-tap filter: 1 + k // 2 each side), then stride 2.
            x = _filter2d(x, self.resample_filter, (1 + k // 2, 1 + k // 2))
            x = conv_gradfix.conv2d(x, w, stride=2)
        return bias_act(x, self.bias, self.activation, self.gain)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by styles from w, then demodulated.

    Computed as StyleGAN2's non-fused path (sec. 2.2): scale x by the styles, convolve with the shared
    weight, scale by the demodulation coefficients. Equivalent to convolving every sample with its own
    weight w'_oik = s_i w_oik / sqrt(sum_ik (s_i w_oik)^2 + eps) (eqs. 1 and 3), without building them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.up = demodulate, up
        # Styles start at 1 (bias_init 1): at init, modulation leaves the convolution unchanged.
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w).to(x.dtype)  # [N, I]
        weight = self.weight.to(x.dtype) * self.weight_gain
        if self.demodulate and x.dtype == torch.float16:
            # fp16: bring weights and styles to ~unit magnitude first, or the squares below overflow;
            # demodulation divides any such per-output-channel or global scale back out.
            weight = weight / weight.flatten(1).abs().amax(dim=1).reshape(-1, 1, 1, 1)
            styles = styles / styles.abs().amax(dim=1, keepdim=True)
        if self.up:
            x = upsample2d(x, self.resample_filter)
        x = conv_gradfix.conv2d(x * styles[:, :, None, None], weight, padding=self.kernel_size // 2)
        if self.demodulate:
            # sum_ik (s_i w_oik)^2 = sum_i s_i^2 (sum_k w_oik^2): one [N, I] x [I, O] product (eq. 3).
            dcoefs = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()  # [N, O]
            x = x * dcoefs[:, :, None, None]
        return x


class NoiseInjection(nn.Module):
    """Per-pixel Gaussian noise times a learned strength (StyleGAN sec. 3.2): stochastic detail such as hair.

    ``noise_const`` is a buffer drawn at build, saved with the weights, so ``const`` noise is the same after
    an export and a reload; the strength starts at 0 (noise fades in as training finds it useful).
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        # Shape [1], not a scalar: DeepSpeed broadcasts parameters as byte views, which 0-dim tensors refuse.
        self.strength = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        elif noise_mode == "none":
            return x
        else:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        return x + noise * self.strength.to(x.dtype)


class SynthesisLayer(nn.Module):
    """One 3x3 layer of the synthesis network: modulated conv (upsampling 2x if asked), noise, bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, up=up)
        self.noise = NoiseInjection(resolution)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.noise(self.conv(x, w), noise_mode)
        return bias_act(x, self.bias, "lrelu")


class ToRGB(nn.Module):
    """1x1 modulated conv to the image channels, without demodulation (it would fix each channel's scale)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return bias_act(self.conv(x, w), self.bias, "linear")


class ConstantInput(nn.Module):
    """The learned 4x4 tensor the synthesis network starts from (StyleGAN sec. 2), repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, size, size))

    def forward(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        return self.const.to(dtype).unsqueeze(0).expand(n, -1, -1, -1)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al., 2018, sec. 3): D sees how varied a group of samples is,
    so a G that collapses to a few modes is easy to tell apart.

    Sample i joins group i mod (N / G), as in the official code; the standard deviation over the group of
    each feature, averaged over the channels of each of ``num_channels`` feature groups and all pixels,
    becomes ``num_channels`` extra channels. A batch ``group_size`` does not divide uses the largest group
    size that does (evaluation and sampling batches of any size).
    """

    def __init__(self, group_size: int, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = math.gcd(n, min(self.group_size, n))
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n/G, F, c/F, H, W]: the group's std per feature
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1)  # [n/G, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # back to [N, F, H, W], sample i reading group i mod (n/G)
        return torch.cat([x, y], dim=1)

"""The ``classic`` degradation (the default): one pass of blur, bicubic downsampling, noise, JPEG.

The order follows the classical SR degradation model ``y = JPEG(downsample(x * k) + n)``:

1. Gaussian blur of the HR image (sigma in HR pixels; kernel radius ``ceil(3 sigma)``, normalised;
   reflect padding that mirrors about the edge pixel without repeating it, torch's ``reflect``).
2. Bicubic downsampling by ``scale`` with ``imresize`` (MATLAB's convention, antialiased).
3. Additive white Gaussian noise, sigma on the 0..255 scale (so 1 = one grey level).
4. Quantization to the 8-bit grid, as writing the LR image to a PNG would: clamp to [-1, 1], then
   ``to_uint8`` (scale to 0..255, round half to even), back to [-1, 1] as ``v / 127.5 - 1``. Always
   done, so training inputs look like the 8-bit files the model meets at test time.
5. JPEG compression at the given quality: a round trip through PIL's encoder in memory on the uint8
   image (PIL's defaults otherwise: 4:2:0 chroma subsampling for RGB, standard tables).

Each parameter is drawn per image, uniformly from its configured [min, max], with the caller's
``torch.Generator``: the result is a function of the HR crop and the generator's state alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from distgan.config import ConfigError, DegradationConfig
from distgan.data.degradations.base import DEGRADATIONS, check_range, jpeg, quantize, refuse_unused
from distgan.data.resize import imresize

__all__ = ["Classic", "ClassicDraw", "add_noise", "check_classic", "classic_apply", "classic_draw", "classic_lr",
           "gaussian_blur", "gaussian_kernel"]


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64), radius ``ceil(3 sigma)``."""
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur [C, H, W] or [N, C, H, W] with an isotropic Gaussian of ``sigma`` pixels; ``sigma <= 0`` returns x.

    Separable, computed in float64, reflect padding; the kernel must fit inside the image (radius < side).
    """
    if sigma <= 0:
        return x
    taps = gaussian_kernel(sigma).to(x.device)
    radius = taps.numel() // 2
    if radius >= min(x.shape[-2:]):
        raise ValueError(f"blur sigma {sigma} needs a kernel of radius {radius}, larger than the "
                         f"{x.shape[-2]}x{x.shape[-1]} image it blurs; use a smaller sigma or a larger crop")
    batched = x.dim() == 4
    y = (x if batched else x[None]).to(torch.float64)
    channels = y.shape[1]
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    # Depthwise: every channel blurred on its own, along H, then W.
    y = F.conv2d(y, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    y = F.conv2d(y, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    y = y.to(x.dtype)
    return y if batched else y[0]


def add_noise(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise of ``sigma`` grey levels (0..255 scale) to x in [-1, 1]; not clamped."""
    if sigma <= 0:
        return x
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.device)  # the generator is a CPU one
    return (x.to(torch.float64) + noise * (sigma / 127.5)).to(x.dtype)


def check_classic(deg: DegradationConfig, crop: int) -> None:
    """Raise a ConfigError naming the key if the ranges are invalid or the blur kernel outgrows the HR crop."""
    check_range("data.degradation.blur_sigma", deg.blur_sigma, 0.0, math.inf)
    check_range("data.degradation.noise_sigma", deg.noise_sigma, 0.0, 255.0)
    if tuple(deg.jpeg_quality) != (0, 0):
        check_range("data.degradation.jpeg_quality", deg.jpeg_quality, 1, 100)
    # Reflect padding needs the kernel's radius, ceil(3 sigma), to stay inside the crop: ceil(3 sigma) >= crop
    # exactly when 3 sigma > crop - 1, which holds for a sigma so large that 3 sigma is inf (ceil would overflow).
    if 3 * deg.blur_sigma[1] > crop - 1:
        raise ConfigError(f"data.degradation.blur_sigma: sigma {deg.blur_sigma[1]} needs a blur kernel wider "
                          f"than the {crop}px crop (data.resolution); lower it")


def _uniform(bounds: tuple[float, float], u: float) -> float:
    low, high = bounds
    return low + (high - low) * u


@dataclass
class ClassicDraw:
    blur_sigma: float
    noise_sigma: float
    quality: int
    """JPEG quality; 0: no JPEG."""
    noise: Optional[torch.Tensor]
    """The unit noise field [C, H/scale, W/scale] (float64, CPU), or None when ``noise_sigma`` is 0."""


def classic_draw(shape: tuple[int, int, int], scale: int, degradation: DegradationConfig,
                 gen: torch.Generator) -> ClassicDraw:
    """The random choices for an HR image of ``shape`` [C, H, W] (H and W multiples of ``scale``)."""
    channels, height, width = shape
    if height % scale or width % scale:
        raise ValueError(f"make_lr: image {height}x{width} is not a multiple of scale {scale}")
    # Three draws every time, whatever is enabled, so the stream after them does not depend on the config.
    u_blur, u_noise, u_jpeg = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
    noise_sigma = _uniform(degradation.noise_sigma, u_noise)
    noise = None
    if noise_sigma > 0:  # the generator is a CPU one: the field is drawn there, whatever the image's device
        noise = torch.randn((channels, height // scale, width // scale), generator=gen, dtype=torch.float64)
    q_low, q_high = degradation.jpeg_quality
    # An integer uniformly from q_low..q_high inclusive.
    quality = min(q_low + math.floor(u_jpeg * (q_high - q_low + 1)), q_high) if q_high > 0 else 0
    return ClassicDraw(_uniform(degradation.blur_sigma, u_blur), noise_sigma, quality, noise)


def classic_apply(hr: torch.Tensor, scale: int, draw: ClassicDraw) -> torch.Tensor:
    """The LR input of one HR image [C, H, W] in [-1, 1] with its ``draw``."""
    x = gaussian_blur(hr, draw.blur_sigma)
    x = imresize(x, 1.0 / scale, size=(hr.shape[-2] // scale, hr.shape[-1] // scale))
    if draw.noise is not None:
        x = (x.to(torch.float64) + draw.noise.to(x.device) * (draw.noise_sigma / 127.5)).to(x.dtype)
    x = quantize(x)
    return jpeg(x, draw.quality) if draw.quality else x


def classic_lr(hr: torch.Tensor, scale: int, degradation: DegradationConfig, gen: torch.Generator) -> torch.Tensor:
    """The LR input [C, H/scale, W/scale] in [-1, 1] (on the 8-bit grid) for the HR image [C, H, W] in [-1, 1].

    Blur (if ``blur_sigma`` max > 0), ``imresize`` by 1/scale, noise (if ``noise_sigma`` max > 0), quantize,
    JPEG (if ``jpeg_quality`` is not (0, 0)). H and W must be multiples of ``scale``.
    """
    if hr.dim() != 3:
        raise ValueError(f"make_lr needs one image [C, H, W], got shape {tuple(hr.shape)}")
    return classic_apply(hr, scale, classic_draw(tuple(hr.shape), scale, degradation, gen))


class Classic:
    """The one-pass pipeline above; the target is the HR crop itself."""

    def check(self, deg: DegradationConfig, crop: int) -> None:
        refuse_unused(deg, ("realesrgan",))
        check_classic(deg, crop)

    def reach(self, deg: DegradationConfig) -> int:
        return math.ceil(3 * deg.blur_sigma[1])

    def draw(self, shape: tuple[int, int, int], scale: int, deg: DegradationConfig,
             gen: torch.Generator) -> ClassicDraw:
        return classic_draw(shape, scale, deg, gen)

    def apply(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
              draws: Sequence[ClassicDraw]) -> tuple[torch.Tensor, torch.Tensor]:
        # One sample at a time: a single blur and resize per image is cheap, and a batch would give every
        # sample's blur its own kernel size anyway.
        return torch.stack([classic_apply(x, scale, d) for x, d in zip(hr, draws, strict=True)]), hr

    def __call__(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return classic_lr(hr, scale, deg, gen), hr


DEGRADATIONS.register("classic")(Classic())

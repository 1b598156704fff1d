"""How a low-resolution input is made from a high-resolution crop: blur, bicubic downsampling, noise, JPEG.

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

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from distgan.config import ConfigError, DegradationConfig
from distgan.data.resize import imresize
from distgan.metrics.image_quality import to_uint8

__all__ = ["check_degradation", "from_uint8", "gaussian_blur", "add_noise", "jpeg", "make_lr", "quantize", "to_uint8"]


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 [-1, 1] (0 -> -1, 255 -> 1)."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Snap [-1, 1] values (clamped first) to the 8-bit grid, as saving and reloading a PNG would."""
    return from_uint8(to_uint8(x)).to(x.dtype)


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
    taps = gaussian_kernel(sigma)
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


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a [C, H, W] image in [-1, 1] (C = 1 or 3) at ``quality`` (1..100), in memory."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    pixels = to_uint8(x).cpu().numpy()
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.asarray(decoded.convert(image.mode), dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return from_uint8(torch.from_numpy(array.copy())).to(device=x.device, dtype=x.dtype)


def _check_range(key: str, bounds: tuple[float, float], low: float, high: float) -> None:
    if not low <= bounds[0] <= bounds[1] <= high:
        raise ConfigError(f"{key}: expected [min, max] with {low} <= min <= max <= {high}, got {list(bounds)}")


def check_degradation(deg: DegradationConfig, crop: int) -> None:
    """Raise a ConfigError naming the key if the ranges are invalid or the blur kernel outgrows the HR crop."""
    _check_range("data.degradation.blur_sigma", deg.blur_sigma, 0.0, math.inf)
    _check_range("data.degradation.noise_sigma", deg.noise_sigma, 0.0, 255.0)
    if tuple(deg.jpeg_quality) != (0, 0):
        _check_range("data.degradation.jpeg_quality", deg.jpeg_quality, 1, 100)
    # Reflect padding needs the kernel's radius, ceil(3 sigma), to stay inside the crop: ceil(3 sigma) >= crop
    # exactly when 3 sigma > crop - 1, which holds for a sigma so large that 3 sigma is inf (ceil would overflow).
    if 3 * deg.blur_sigma[1] > crop - 1:
        raise ConfigError(f"data.degradation.blur_sigma: sigma {deg.blur_sigma[1]} needs a blur kernel wider "
                          f"than the {crop}px crop (data.resolution); lower it")


def _uniform(bounds: tuple[float, float], u: float) -> float:
    low, high = bounds
    return low + (high - low) * u


def make_lr(hr: torch.Tensor, scale: int, degradation: DegradationConfig, gen: torch.Generator) -> torch.Tensor:
    """The LR input [C, H/scale, W/scale] in [-1, 1] (on the 8-bit grid) for the HR image [C, H, W] in [-1, 1].

    Blur (if ``blur_sigma`` max > 0), ``imresize`` by 1/scale, noise (if ``noise_sigma`` max > 0), quantize,
    JPEG (if ``jpeg_quality`` is not (0, 0)). H and W must be multiples of ``scale``.
    """
    if hr.dim() != 3:
        raise ValueError(f"make_lr needs one image [C, H, W], got shape {tuple(hr.shape)}")
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"make_lr: image {hr.shape[-2]}x{hr.shape[-1]} is not a multiple of scale {scale}")
    # Three draws every time, whatever is enabled, so the stream after them does not depend on the config.
    u_blur, u_noise, u_jpeg = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
    x = gaussian_blur(hr, _uniform(degradation.blur_sigma, u_blur))
    x = imresize(x, 1.0 / scale, size=(hr.shape[-2] // scale, hr.shape[-1] // scale))
    x = add_noise(x, _uniform(degradation.noise_sigma, u_noise), gen)
    x = quantize(x)
    q_low, q_high = degradation.jpeg_quality
    if q_high > 0:
        # An integer uniformly from q_low..q_high inclusive.
        x = jpeg(x, min(q_low + math.floor(u_jpeg * (q_high - q_low + 1)), q_high))
    return x

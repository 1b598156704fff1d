"""The ``realesrgan`` degradation: Real-ESRGAN's second-order pipeline (Wang et al., 2021, section 3).

Real photos are degraded by a chain of processes (camera blur, resizing, sensor noise, compression, then
editing and re-uploading all over again), so the LR input is made by two rounds of the classical model,
each with its own ranges (``data.degradation.realesrgan``, published defaults):

1. optionally sharpen the HR crop with an unsharp mask (``sharpen_gt``; then it is the target too);
2. first round: blur with a random kernel (``kernels.random_kernel``: Gaussian family, plateau, or sinc);
   resize up, down or not at all by a random factor with a random mode (area, bilinear, bicubic);
   Gaussian noise (per channel or grey) or Poisson noise (shot noise of the 8-bit image, per channel or
   grey), clamped to [0, 1]; JPEG at a random quality;
3. second round: blur with its chance, resize to a random factor of the LR size, noise;
4. the end, in a random order: [resize back to H/scale x W/scale with a random mode, then the final sinc
   filter with its chance] and JPEG; then rounding to the 8-bit grid.

Differences from the published code, knowingly: every draw is per sample (Real-ESRGAN draws the resize
direction, resize mode and noise type once per GPU batch), so a sample depends on the seed and its
position alone, on any number of workers; JPEG is PIL's encoder on the CPU at an integer quality (theirs is
a differentiable JPEG on the GPU at a real-valued quality); sizes are ``floor(side * factor)``, at least
one pixel; an image smaller than a kernel's radius is padded by repeating its edge, not by reflection.
Everything else is torch on ``hr``'s device, one sample at a time: the random resizes give every sample its
own sizes, so a batch would not stay a tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distgan.config import ConfigError, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig
from distgan.data.degradations.base import (DEGRADATIONS, check_probabilities, check_range, filter2d, jpeg,
                                            quantize, refuse_unused, separable_filter)
from distgan.data.degradations.kernels import KERNEL_SHAPES, Round, pick, random_kernel, random_odd, sinc, uniform

__all__ = ["RealESRGAN", "add_gaussian_noise", "add_poisson_noise", "degrade", "resize", "unsharp_mask"]

RESIZE_MODES = ("area", "bilinear", "bicubic")
"""The order of ``resize_mode_prob``."""

GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luma, as torchvision's ``rgb_to_grayscale`` that the published Poisson noise uses."""

MAX_RESIZE = 8.0
"""Largest resize factor accepted: beyond it one sample's intermediate image would dwarf the crop."""

MAX_USM_RADIUS = 255

MAX_USM_WEIGHT = 10.0
"""Largest unsharp-mask weight accepted (published 0.5): far beyond it the sharpened image is all clipping."""

MIN_CUTOFF = 0.01
"""Lowest sinc cutoff accepted, in units of pi: below it a kernel of at most 255 taps holds no passband."""


# -- the steps, on [1, C, H, W] images in [0, 1] ----------------------------------------------------------


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """torch's ``interpolate`` to ``size`` (no antialiasing, half-pixel centres), as the published pipeline."""
    size = (max(1, size[0]), max(1, size[1]))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def add_gaussian_noise(x: torch.Tensor, sigma: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """White Gaussian noise of ``sigma`` grey levels (0..255), one field for every channel when ``grey``."""
    shape = (1, 1 if grey else x.shape[1]) + tuple(x.shape[-2:])
    noise = torch.randn(shape, generator=gen, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return (x + noise * (sigma / 255.0)).clamp_(0.0, 1.0)


def _shot_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Poisson noise of the image on the 8-bit grid, as many photon levels as it has distinct values (rounded
    up to a power of two): noise std ``sqrt(value / levels)``."""
    x = (x * 255.0).round().clamp(0, 255) / 255.0
    levels = 2.0 ** math.ceil(math.log2(max(1, torch.unique(x).numel())))
    counts = torch.poisson((x * levels).to("cpu", torch.float64), generator=gen)  # the generator is a CPU one
    return counts.to(device=x.device, dtype=x.dtype) / levels - x


def add_poisson_noise(x: torch.Tensor, scale: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """Shot noise times ``scale``, computed on the luma and added to every channel when ``grey``."""
    if grey and x.shape[1] == 3:
        weights = torch.tensor(GREY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        noise = _shot_noise((x * weights).sum(1, keepdim=True), gen)
    else:
        noise = _shot_noise(x, gen)
    return (x + noise * scale).clamp_(0.0, 1.0)


def _jpeg01(x: torch.Tensor, quality: int) -> torch.Tensor:
    return (jpeg(x[0].clamp(0.0, 1.0) * 2.0 - 1.0, quality)[None] + 1.0) / 2.0


def usm_taps(radius: int) -> torch.Tensor:
    """OpenCV's Gaussian for ``getGaussianKernel(side, 0)``: side = radius (+ 1 if even), sigma from the side."""
    side = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((side - 1) * 0.5 - 1) + 0.8
    t = torch.arange(side, dtype=torch.float64) - side // 2
    taps = torch.exp(-0.5 * (t / sigma) ** 2)
    return taps / taps.sum()


def unsharp_mask(x: torch.Tensor, weight: float, radius: int, threshold: float) -> torch.Tensor:
    """Sharpen by ``weight`` times the detail ``x - blur(x)`` where the detail exceeds ``threshold`` grey levels,
    blended in by the blurred mask so the edge of the sharpened area does not show."""
    taps = usm_taps(radius)
    detail = x - separable_filter(x, taps)
    mask = separable_filter(((detail.abs() * 255.0) > threshold).to(x.dtype), taps)
    sharp = (x + weight * detail).clamp(0.0, 1.0)
    return mask * sharp + (1.0 - mask) * x


# -- the pipeline -------------------------------------------------------------------------------------------


def _noise(x: torch.Tensor, rnd: Round, gen: torch.Generator) -> torch.Tensor:
    gaussian = uniform((0.0, 1.0), gen) < rnd.gaussian_noise_prob
    grey = uniform((0.0, 1.0), gen) < rnd.gray_noise_prob
    if gaussian:
        return add_gaussian_noise(x, uniform(rnd.noise_range, gen), grey, gen)
    return add_poisson_noise(x, uniform(rnd.poisson_scale_range, gen), grey, gen)


def _factor(rnd: Round, gen: torch.Generator) -> float:
    direction = pick(rnd.resize_prob, gen)  # up, down, keep
    if direction == 0:
        return uniform((1.0, rnd.resize_range[1]), gen)
    if direction == 1:
        return uniform((rnd.resize_range[0], 1.0), gen)
    return 1.0


def _quality(bounds: tuple[int, int], gen: torch.Generator) -> int:
    return bounds[0] + int(torch.randint(bounds[1] - bounds[0] + 1, (1,), generator=gen))


def _round(x: torch.Tensor, rnd: Round, cfg: RealESRGANConfig, base: tuple[int, int],
           gen: torch.Generator) -> torch.Tensor:
    """Blur (with its chance), resize by a random factor of ``base`` (H, W), noise."""
    if uniform((0.0, 1.0), gen) < rnd.blur_prob:
        x = filter2d(x, random_kernel(rnd, cfg.sinc_cutoff, cfg.sinc_cutoff_small, gen))
    factor = _factor(rnd, gen)
    mode = RESIZE_MODES[pick(cfg.resize_mode_prob, gen)]
    x = resize(x, (math.floor(base[0] * factor), math.floor(base[1] * factor)), mode)
    return _noise(x, rnd, gen)


def degrade(hr: torch.Tensor, scale: int, deg: DegradationConfig,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR on the 8-bit grid, target) in [-1, 1] for the HR crop [C, H, W] in [-1, 1] (the module docstring)."""
    if hr.dim() != 3:
        raise ValueError(f"the realesrgan degradation needs one image [C, H, W], got shape {tuple(hr.shape)}")
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"realesrgan: image {hr.shape[-2]}x{hr.shape[-1]} is not a multiple of scale {scale}")
    cfg = deg.realesrgan
    x = (hr[None].to(torch.float32) + 1.0) / 2.0
    target = hr
    if cfg.sharpen_gt:
        x = unsharp_mask(x, cfg.usm_weight, cfg.usm_radius, cfg.usm_threshold)
        target = (x[0] * 2.0 - 1.0).to(hr.dtype)
    lr_size = (hr.shape[-2] // scale, hr.shape[-1] // scale)

    # The first round resizes relative to the HR crop, the second relative to the LR size.
    x = _round(x, cfg.first, cfg, tuple(x.shape[-2:]), gen)
    x = _jpeg01(x, _quality(cfg.first.jpeg_range, gen))
    x = _round(x, cfg.second, cfg, lr_size, gen)

    # The end: a sinc filter after the resize back (with its chance) and the last JPEG, in a random order,
    # since ringing from sharpening and compression come in either order in real images.
    final = None
    if uniform((0.0, 1.0), gen) < cfg.final_sinc_prob:
        final = sinc(random_odd(cfg.final_kernel_size, gen), uniform(cfg.final_sinc_cutoff, gen) * math.pi)
    resize_first = uniform((0.0, 1.0), gen) < cfg.resize_back_first_prob
    mode = RESIZE_MODES[pick(cfg.resize_mode_prob, gen)]
    quality = _quality(cfg.second.jpeg_range, gen)
    if not resize_first:
        x = _jpeg01(x, quality)
    x = resize(x, lr_size, mode)
    if final is not None:
        x = filter2d(x, final)
    if resize_first:
        x = _jpeg01(x, quality)
    lr = quantize(x[0].clamp(0.0, 1.0) * 2.0 - 1.0)
    return lr.to(hr.dtype), target


# -- config checks --------------------------------------------------------------------------------------------


def _check_value(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: expected a value in [{low}, {high}], got {value}")


def _check_kernel_sizes(key: str, bounds: tuple[int, int], crop: int) -> None:
    low, high = bounds
    if low % 2 == 0 or high % 2 == 0 or not 1 <= low <= high:
        raise ConfigError(f"{key}: expected [min, max] of odd kernel sides with 1 <= min <= max, got {list(bounds)}")
    if high > crop:
        raise ConfigError(f"{key}: kernel side {high} is larger than the {crop}px crop (data.resolution); lower "
                          f"it or raise data.resolution")


def _check_round(prefix: str, rnd: Round, crop: int) -> None:
    for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
        _check_value(f"{prefix}.{name}", getattr(rnd, name), 0.0, 1.0)
    _check_kernel_sizes(f"{prefix}.kernel_size", rnd.kernel_size, crop)
    check_probabilities(f"{prefix}.kernel_prob", rnd.kernel_prob, KERNEL_SHAPES)
    if not 0 < rnd.blur_sigma[0] <= rnd.blur_sigma[1]:
        raise ConfigError(f"{prefix}.blur_sigma: expected [min, max] with 0 < min <= max, got {list(rnd.blur_sigma)}")
    for name in ("betag_range", "betap_range"):
        bounds = getattr(rnd, name)
        if not 0 < bounds[0] <= 1 <= bounds[1]:
            raise ConfigError(f"{prefix}.{name}: expected [min, max] with 0 < min <= 1 <= max (half the draws "
                              f"fall on each side of 1), got {list(bounds)}")
    check_probabilities(f"{prefix}.resize_prob", rnd.resize_prob, ("up", "down", "keep"))
    if not 0 < rnd.resize_range[0] <= 1 <= rnd.resize_range[1] <= MAX_RESIZE:
        raise ConfigError(f"{prefix}.resize_range: expected [min, max] with 0 < min <= 1 <= max <= {MAX_RESIZE} "
                          f"(down from [min, 1], up from [1, max]), got {list(rnd.resize_range)}")
    check_range(f"{prefix}.noise_range", rnd.noise_range, 0.0, 255.0)
    check_range(f"{prefix}.poisson_scale_range", rnd.poisson_scale_range, 0.0, 255.0)
    check_range(f"{prefix}.jpeg_range", rnd.jpeg_range, 1, 100)


def check(deg: DegradationConfig, crop: int) -> None:
    """Raise a ConfigError naming the key of any range, chance or kernel side that cannot work."""
    refuse_unused(deg, ("blur_sigma", "noise_sigma", "jpeg_quality"))
    cfg, key = deg.realesrgan, "data.degradation.realesrgan"
    _check_round(f"{key}.first", cfg.first, crop)
    _check_round(f"{key}.second", cfg.second, crop)
    for name in ("sinc_cutoff", "sinc_cutoff_small", "final_sinc_cutoff"):
        bounds = getattr(cfg, name)
        if not MIN_CUTOFF <= bounds[0] <= bounds[1] <= 1:
            raise ConfigError(f"{key}.{name}: expected [min, max] in units of pi with {MIN_CUTOFF} <= min <= max <= 1 "
                              f"(1: the Nyquist frequency), got {list(bounds)}")
    for name in ("final_sinc_prob", "resize_back_first_prob"):
        _check_value(f"{key}.{name}", getattr(cfg, name), 0.0, 1.0)
    _check_kernel_sizes(f"{key}.final_kernel_size", cfg.final_kernel_size, crop)
    check_probabilities(f"{key}.resize_mode_prob", cfg.resize_mode_prob, RESIZE_MODES)
    _check_value(f"{key}.usm_weight", cfg.usm_weight, 0.0, MAX_USM_WEIGHT)
    _check_value(f"{key}.usm_radius", cfg.usm_radius, 1, MAX_USM_RADIUS)
    _check_value(f"{key}.usm_threshold", cfg.usm_threshold, 0.0, 255.0)


class RealESRGAN:
    """Second-order degradation; the target is the HR crop, unsharp-masked under ``sharpen_gt``."""

    def check(self, deg: DegradationConfig, crop: int) -> None:
        check(deg, crop)

    def reach(self, deg: DegradationConfig) -> int:
        return 0  # small images pad by repeating edges: no size is too small to blur

    def __call__(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return degrade(hr, scale, deg, gen)


DEGRADATIONS.register("realesrgan")(RealESRGAN())

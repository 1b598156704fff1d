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

Two steps, as the published code splits them between its data set (kernels) and its model (the rest, per
GPU batch): ``draw`` takes every random choice of one sample from its generator, in the pipeline's order
(kernels, factors, modes, noise types and levels, the Gaussian noise field itself, a seed for the Poisson
noise, qualities, the order of the end), and ``apply`` runs a batch of HR crops through the pipeline with
those choices on the batch's device: the unsharp mask, the first blur and the final sinc as one grouped
convolution each; the resizes once per group of samples that share sizes and mode (``ragged``); noise,
shot-noise sampling and JPEG per sample.

Differences from the published code, knowingly: every draw is per sample (Real-ESRGAN draws the resize
direction, resize mode and noise type once per GPU batch), so a sample depends on the seed and its
position alone, on any number of workers, and a batch is ragged between the first resize and the resize
back; JPEG is PIL's encoder on the CPU at an integer quality (theirs is a differentiable JPEG on the GPU at
a real-valued quality); Poisson noise is sampled on the CPU from its own generator, seeded by the draw,
since how many numbers ``torch.poisson`` takes depends on the image; sizes are ``floor(side * factor)``, at
least one pixel; an image smaller than a kernel's radius is padded by repeating its edge, not by reflection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from distgan.config import ConfigError, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig
from distgan.data.degradations.base import (DEGRADATIONS, check_probabilities, check_range, jpeg, quantize,
                                            refuse_unused, separable_filter)
from distgan.data.degradations.kernels import KERNEL_SHAPES, Round, pick, random_kernel, random_odd, sinc, uniform
from distgan.data.degradations.ragged import Images, filter_each, grouped, resize, resize_each

__all__ = ["Draw", "RealESRGAN", "add_gaussian_noise", "add_poisson_noise", "apply", "degrade", "draw", "resize",
           "unsharp_mask"]

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

SEED_BOUND = 2 ** 62
"""Poisson-noise seeds are drawn from [0, SEED_BOUND)."""


# -- the steps, on [N, C, H, W] images in [0, 1] ----------------------------------------------------------


def add_gaussian_noise(x: torch.Tensor, sigma: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """White Gaussian noise of ``sigma`` grey levels (0..255), one field for every channel when ``grey``."""
    return _add_field(x, _gaussian_field(x.shape[1], tuple(x.shape[-2:]), grey, gen), sigma)


def _gaussian_field(channels: int, size: tuple[int, int], grey: bool, gen: torch.Generator) -> torch.Tensor:
    return torch.randn((1, 1 if grey else channels) + size, generator=gen, dtype=torch.float32)


def _add_field(x: torch.Tensor, field: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x + field.to(device=x.device, dtype=x.dtype) * (sigma / 255.0)).clamp_(0.0, 1.0)


def _shot_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Poisson noise of the image on the 8-bit grid, as many photon levels as it has distinct values (rounded
    up to a power of two): noise std ``sqrt(value / levels)``."""
    x = (x * 255.0).round().clamp(0, 255) / 255.0
    levels = 2.0 ** math.ceil(math.log2(max(1, torch.unique(x).numel())))
    # On the CPU, whatever the image's device: the generator is a CPU one, so the noise is the same anywhere.
    counts = torch.poisson((x * levels).to("cpu", torch.float64), generator=gen)
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
    # PIL on the CPU, one image at a time, even when the batch is on a GPU: no JPEG codec ships with torch
    # here (torchvision is not a dependency), and a differentiable JPEG would round differently per device.
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


# -- one sample's draws --------------------------------------------------------------------------------------


@dataclass
class Noise:
    gaussian: bool
    """Gaussian noise; otherwise Poisson."""
    grey: bool
    """One noise field for every channel."""
    level: float
    """Gaussian: sigma in grey levels; Poisson: the scale of the shot noise."""
    field: Optional[torch.Tensor] = None
    """Gaussian: the unit noise field [1, 1 or C, h, w], float32 on the CPU."""
    seed: int = 0
    """Poisson: seeds the generator the shot noise is sampled with."""


@dataclass
class RoundDraw:
    kernel: Optional[torch.Tensor]
    """The blur kernel [k, k] (float64), or None: no blur."""
    size: tuple[int, int]
    """(h, w) after the resize."""
    mode: str
    noise: Noise


@dataclass
class Draw:
    """Every random choice of one sample, in the order they are drawn."""

    first: RoundDraw
    first_quality: int
    second: RoundDraw
    final_kernel: Optional[torch.Tensor]
    """The final sinc filter [k, k] (float64), or None."""
    resize_first: bool
    """The end is [resize back + sinc] then JPEG; otherwise JPEG first."""
    final_mode: str
    final_quality: int


def _draw_noise(rnd: Round, channels: int, size: tuple[int, int], gen: torch.Generator) -> Noise:
    gaussian = uniform((0.0, 1.0), gen) < rnd.gaussian_noise_prob
    grey = uniform((0.0, 1.0), gen) < rnd.gray_noise_prob
    if gaussian:
        sigma = uniform(rnd.noise_range, gen)
        return Noise(True, grey, sigma, field=_gaussian_field(channels, size, grey, gen))
    scale = uniform(rnd.poisson_scale_range, gen)
    return Noise(False, grey, scale, seed=int(torch.randint(SEED_BOUND, (1,), generator=gen)))


def _factor(rnd: Round, gen: torch.Generator) -> float:
    direction = pick(rnd.resize_prob, gen)  # up, down, keep
    if direction == 0:
        return uniform((1.0, rnd.resize_range[1]), gen)
    if direction == 1:
        return uniform((rnd.resize_range[0], 1.0), gen)
    return 1.0


def _quality(bounds: tuple[int, int], gen: torch.Generator) -> int:
    return bounds[0] + int(torch.randint(bounds[1] - bounds[0] + 1, (1,), generator=gen))


def _draw_round(rnd: Round, cfg: RealESRGANConfig, channels: int, base: tuple[int, int],
                gen: torch.Generator) -> RoundDraw:
    """Blur (with its chance), resize by a random factor of ``base`` (H, W), noise."""
    kernel = None
    if uniform((0.0, 1.0), gen) < rnd.blur_prob:
        kernel = random_kernel(rnd, cfg.sinc_cutoff, cfg.sinc_cutoff_small, gen)
    factor = _factor(rnd, gen)
    mode = RESIZE_MODES[pick(cfg.resize_mode_prob, gen)]
    size = (max(1, math.floor(base[0] * factor)), max(1, math.floor(base[1] * factor)))
    return RoundDraw(kernel, size, mode, _draw_noise(rnd, channels, size, gen))


def draw(shape: tuple[int, int, int], scale: int, deg: DegradationConfig, gen: torch.Generator) -> Draw:
    """Every random choice for an HR crop of ``shape`` [C, H, W] (the module docstring), from ``gen``."""
    channels, height, width = shape
    if height % scale or width % scale:
        raise ValueError(f"realesrgan: image {height}x{width} is not a multiple of scale {scale}")
    cfg = deg.realesrgan
    # The first round resizes relative to the HR crop, the second relative to the LR size.
    first = _draw_round(cfg.first, cfg, channels, (height, width), gen)
    first_quality = _quality(cfg.first.jpeg_range, gen)
    second = _draw_round(cfg.second, cfg, channels, (height // scale, width // scale), gen)
    final = None
    if uniform((0.0, 1.0), gen) < cfg.final_sinc_prob:
        final = sinc(random_odd(cfg.final_kernel_size, gen), uniform(cfg.final_sinc_cutoff, gen) * math.pi)
    resize_first = uniform((0.0, 1.0), gen) < cfg.resize_back_first_prob
    mode = RESIZE_MODES[pick(cfg.resize_mode_prob, gen)]
    return Draw(first, first_quality, second, final, resize_first, mode, _quality(cfg.second.jpeg_range, gen))


# -- a batch's application -----------------------------------------------------------------------------------


def _blur_each(xs: Images, kernels: Sequence[Optional[torch.Tensor]]) -> Images:
    return grouped(xs, [None if k is None else True for k in kernels],
                   lambda x, members: filter_each(x, [kernels[i] for i in members]))


def _noise(x: torch.Tensor, noise: Noise) -> torch.Tensor:
    if noise.gaussian:
        return _add_field(x, noise.field, noise.level)
    return add_poisson_noise(x, noise.level, noise.grey, torch.Generator().manual_seed(noise.seed))


def _round(xs: Images, rounds: Sequence[RoundDraw]) -> Images:
    xs = _blur_each(xs, [r.kernel for r in rounds])
    xs = resize_each(xs, [r.size for r in rounds], [r.mode for r in rounds])
    return [_noise(x, r.noise) for x, r in zip(xs, rounds, strict=True)]


def apply(hr: torch.Tensor, scale: int, deg: DegradationConfig,
          draws: Sequence[Draw]) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR on the 8-bit grid, target) in [-1, 1] for the HR crops [N, C, H, W] in [-1, 1], sample i with
    ``draws[i]`` (the module docstring); float32 throughout, whatever ``hr``'s dtype."""
    if hr.dim() != 4 or len(draws) != hr.shape[0]:
        raise ValueError(f"realesrgan: need HR crops [N, C, H, W] and one draw each, got shape {tuple(hr.shape)} "
                         f"and {len(draws)} draws")
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"realesrgan: image {hr.shape[-2]}x{hr.shape[-1]} is not a multiple of scale {scale}")
    cfg = deg.realesrgan
    x = (hr.to(torch.float32) + 1.0) / 2.0
    target = hr
    if cfg.sharpen_gt:
        x = unsharp_mask(x, cfg.usm_weight, cfg.usm_radius, cfg.usm_threshold)
        target = (x * 2.0 - 1.0).to(hr.dtype)
    lr_size = (hr.shape[-2] // scale, hr.shape[-1] // scale)

    xs = _round(list(x.split(1)), [d.first for d in draws])
    xs = [_jpeg01(x, d.first_quality) for x, d in zip(xs, draws)]
    xs = _round(xs, [d.second for d in draws])

    # The end: a sinc filter after the resize back (with its chance) and the last JPEG, in a random order,
    # since ringing from sharpening and compression come in either order in real images.
    xs = [x if d.resize_first else _jpeg01(x, d.final_quality) for x, d in zip(xs, draws)]
    x = torch.cat(resize_each(xs, [lr_size] * len(draws), [d.final_mode for d in draws]))
    x = torch.cat(_blur_each(list(x.split(1)), [d.final_kernel for d in draws]))
    xs = [_jpeg01(x[i:i + 1], d.final_quality) if d.resize_first else x[i:i + 1] for i, d in enumerate(draws)]
    lr = quantize(torch.cat(xs).clamp(0.0, 1.0) * 2.0 - 1.0)
    return lr.to(hr.dtype), target


def degrade(hr: torch.Tensor, scale: int, deg: DegradationConfig,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR on the 8-bit grid, target) in [-1, 1] for the HR crop [C, H, W] in [-1, 1]: ``apply`` of ``draw`` on
    a batch of one; the target is ``hr`` itself unless ``sharpen_gt``."""
    if hr.dim() != 3:
        raise ValueError(f"the realesrgan degradation needs one image [C, H, W], got shape {tuple(hr.shape)}")
    lr, target = apply(hr[None], scale, deg, [draw(tuple(hr.shape), scale, deg, gen)])
    return lr[0], (target[0] if deg.realesrgan.sharpen_gt else hr)


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

    def draw(self, shape: tuple[int, int, int], scale: int, deg: DegradationConfig, gen: torch.Generator) -> Draw:
        return draw(shape, scale, deg, gen)

    def apply(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
              draws: Sequence[Draw]) -> tuple[torch.Tensor, torch.Tensor]:
        return apply(hr, scale, deg, draws)

    def __call__(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return degrade(hr, scale, deg, gen)


DEGRADATIONS.register("realesrgan")(RealESRGAN())

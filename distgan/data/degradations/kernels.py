"""Blur kernels of Real-ESRGAN's degradations: the Gaussian family, plateau and sinc, and the random draw of one.

Every kernel is an odd square [k, k] of float64 taps summing to one, centred on its middle tap. With
``x`` the offset along the width (columns) and ``y`` along the height (rows), and the quadratic form
``q = u^2 / sigma_x^2 + v^2 / sigma_y^2`` of the offset rotated by ``-theta`` (``u, v = R(theta)^T (x, y)``,
so ``sigma_x`` lies along the direction ``theta`` from the width axis), the shapes are:

* Gaussian: ``exp(-q / 2)``;
* generalized Gaussian: ``exp(-q^beta / 2)`` (beta < 1 a sharper peak and heavier tails, beta > 1 flatter);
* plateau: ``1 / (1 + q^beta)`` (a flat top and slow tails);
* sinc, the circular low-pass filter: the inverse Fourier transform of a disc of radius ``omega_c``
  (radians per pixel), ``omega_c J1(omega_c r) / (2 pi r)`` at distance ``r`` and ``omega_c^2 / (4 pi)`` at
  the centre: it rings, as ringing and overshoot artefacts of real images do.

The isotropic shapes have ``sigma_x = sigma_y`` and no rotation. ``random_kernel`` draws one as Real-ESRGAN's
data set does (Wang et al., 2021): a side, then a sinc with its chance or else a shape with its chance,
then its sigmas, angle and beta.
"""

from __future__ import annotations

import math

import torch

from distgan.config.data_schema import RealESRGANFirstConfig, RealESRGANSecondConfig

__all__ = ["KERNEL_SHAPES", "generalized_gaussian", "gaussian", "plateau", "random_kernel", "sinc",
           "uniform", "pick", "random_odd"]

KERNEL_SHAPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
"""The order of ``kernel_prob``."""

SINC_SMALL_SIDE = 13
"""Sinc kernels narrower than this draw their cutoff from ``sinc_cutoff_small`` (a short filter cannot cut
low frequencies sharply, so Real-ESRGAN keeps their cutoff at pi/3 or more)."""

Round = RealESRGANFirstConfig | RealESRGANSecondConfig


def _offsets(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) offsets from the centre of a ``side`` x ``side`` grid: x along columns, y along rows."""
    if side < 1 or side % 2 == 0:
        raise ValueError(f"a kernel side must be odd and positive, got {side}")
    axis = torch.arange(side, dtype=torch.float64) - side // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _quadratic(side: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    x, y = _offsets(side)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(k: torch.Tensor) -> torch.Tensor:
    return k / k.sum()


def gaussian(side: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> torch.Tensor:
    """Anisotropic Gaussian (isotropic when the sigmas are equal)."""
    return _normalised(torch.exp(-0.5 * _quadratic(side, sigma_x, sigma_y, theta)))


def generalized_gaussian(side: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    """``exp(-q^beta / 2)``: beta = 1 is the Gaussian."""
    return _normalised(torch.exp(-0.5 * _quadratic(side, sigma_x, sigma_y, theta) ** beta))


def plateau(side: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    """``1 / (1 + q^beta)``."""
    return _normalised(1.0 / (_quadratic(side, sigma_x, sigma_y, theta) ** beta + 1.0))


def sinc(side: int, cutoff: float) -> torch.Tensor:
    """The circular low-pass kernel passing frequencies below ``cutoff`` radians per pixel (0 < cutoff <= pi)."""
    x, y = _offsets(side)
    r = torch.sqrt(x ** 2 + y ** 2)
    centre = r == 0
    safe = torch.where(centre, torch.ones_like(r), r)  # J1(w r) / r has the limit w / 2 at r = 0, set below
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(centre, torch.full_like(r, cutoff ** 2 / (4 * math.pi)), k)
    return _normalised(k)


# -- drawing from the sample's generator ----------------------------------------------------------------


def uniform(bounds: tuple[float, float], gen: torch.Generator) -> float:
    """A float uniformly from [min, max]."""
    u = float(torch.rand(1, generator=gen, dtype=torch.float64))
    return bounds[0] + (bounds[1] - bounds[0]) * u


def pick(probs: tuple[float, ...], gen: torch.Generator) -> int:
    """Index i with chance ``probs[i]`` (the chances sum to one)."""
    u = float(torch.rand(1, generator=gen, dtype=torch.float64))
    total = 0.0
    for i, p in enumerate(probs):
        total += p
        if u < total:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # u within rounding of 1


def random_odd(bounds: tuple[int, int], gen: torch.Generator) -> int:
    """An odd number uniformly from [min, max] (both odd)."""
    low, high = bounds
    return low + 2 * int(torch.randint((high - low) // 2 + 1, (1,), generator=gen))


def _beta(bounds: tuple[float, float], gen: torch.Generator) -> float:
    # As Real-ESRGAN: half the draws below 1 and half above, whatever the widths of the two halves.
    below = float(torch.rand(1, generator=gen, dtype=torch.float64)) < 0.5
    return uniform((bounds[0], 1.0) if below else (1.0, bounds[1]), gen)


def random_kernel(cfg: Round, sinc_cutoff: tuple[float, float], sinc_cutoff_small: tuple[float, float],
                  gen: torch.Generator) -> torch.Tensor:
    """One blur kernel of a degradation round, drawn from ``gen`` (cutoffs in units of pi)."""
    side = random_odd(cfg.kernel_size, gen)
    if uniform((0.0, 1.0), gen) < cfg.sinc_prob:
        cutoff = uniform(sinc_cutoff_small if side < SINC_SMALL_SIDE else sinc_cutoff, gen)
        return sinc(side, cutoff * math.pi)
    shape = KERNEL_SHAPES[pick(cfg.kernel_prob, gen)]
    sigma_x = uniform(cfg.blur_sigma, gen)
    if "aniso" not in shape:
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = uniform(cfg.blur_sigma, gen), uniform((-math.pi, math.pi), gen)
    if shape.startswith("generalized"):
        return generalized_gaussian(side, sigma_x, sigma_y, theta, _beta(cfg.betag_range, gen))
    if shape.startswith("plateau"):
        return plateau(side, sigma_x, sigma_y, theta, _beta(cfg.betap_range, gen))
    return gaussian(side, sigma_x, sigma_y, theta)

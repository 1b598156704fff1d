"""What every degradation pipeline shares: the registry keyed by ``data.degradation.type``, the pipeline's
contract, and the pixel helpers (8-bit grid, JPEG round trip, filtering, range checks).

A pipeline is a ``Degradation``: ``check`` refuses a bad config before anything starts, ``reach`` says how
far its blur reaches (the validation crops must be larger), ``draw`` takes every random choice of one sample
from the sample's own ``torch.Generator``, ``apply`` turns a batch of HR crops into their LR inputs and
training targets with those choices (on the batch's device), and calling it does both for one HR crop. A new
pipeline is a new module that registers itself (and one import line in ``__init__``).
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from distgan.config import ConfigError, DegradationConfig
from distgan.core.registry import Registry
from distgan.metrics.image_quality import to_uint8

__all__ = ["DEGRADATIONS", "Degradation", "check_probabilities", "check_range", "filter2d", "from_uint8", "jpeg",
           "quantize", "reflect_pad", "refuse_unused", "separable_filter", "to_uint8"]


class Degradation(Protocol):
    def check(self, deg: DegradationConfig, crop: int) -> None:
        """Raise a ConfigError naming the key when the config cannot work on ``crop``-px HR crops."""

    def reach(self, deg: DegradationConfig) -> int:
        """How many HR pixels the blur reaches: a validation image must be larger than this."""

    def draw(self, shape: tuple[int, int, int], scale: int, deg: DegradationConfig, gen: torch.Generator) -> Any:
        """Every random choice of one sample whose HR crop is ``shape`` [C, H, W], from ``gen`` alone (on the
        CPU: the same choices on any device)."""

    def apply(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
              draws: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR [N, C, H/scale, W/scale] on the 8-bit grid, training target [N, C, H, W]), both in [-1, 1], on
        ``hr``'s device, from the HR crops [N, C, H, W] in [-1, 1] and each sample's ``draw``; the target is
        ``hr`` itself when the pipeline leaves it as it is. Sample i is what ``apply`` makes of it alone."""

    def __call__(self, hr: torch.Tensor, scale: int, deg: DegradationConfig,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``apply`` of ``draw`` to one HR crop [C, H, W]: (LR [C, H/scale, W/scale], target [C, H, W], ``hr``
        itself when unchanged)."""


DEGRADATIONS: Registry[Degradation] = Registry("degradation")


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 [-1, 1] (0 -> -1, 255 -> 1)."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Snap [-1, 1] values (clamped first) to the 8-bit grid, as saving and reloading a PNG would."""
    return from_uint8(to_uint8(x)).to(x.dtype)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a [C, H, W] image in [-1, 1] (C = 1 or 3) at ``quality`` (1..100), in memory.

    PIL's encoder on the CPU (defaults otherwise: 4:2:0 chroma subsampling for RGB, standard tables); the
    result goes back to ``x``'s device. Real-ESRGAN uses a differentiable JPEG on the GPU instead, with a
    real-valued quality: same idea, slightly different rounding."""
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


def reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """``F.pad`` by reflection where the pad fits inside the image, by repeating the edge otherwise."""
    # Reflect (mirror about the edge pixel, as OpenCV's default border and BasicSR's filter2D) needs the pad
    # to stay inside the image; the second round can shrink an image below a kernel's radius, so small
    # images repeat their edge pixels instead.
    left, right, top, bottom = pad
    fits = max(left, right) < x.shape[-1] and max(top, bottom) < x.shape[-2]
    return F.pad(x, pad, mode="reflect" if fits else "replicate")


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` [N, C, H, W] with the odd square ``kernel`` [k, k]; same size out."""
    k = kernel.shape[-1]
    channels = x.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(channels, 1, k, k)
    return F.conv2d(reflect_pad(x, (k // 2,) * 4), weight, groups=channels)


def separable_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter [N, C, H, W] with the odd 1-D ``taps`` along H, then W (a separable kernel, k instead of k^2
    multiplies a pixel)."""
    k = taps.numel()
    channels = x.shape[1]
    taps = taps.to(device=x.device, dtype=x.dtype)
    y = F.conv2d(reflect_pad(x, (0, 0, k // 2, k // 2)), taps.view(1, 1, k, 1).expand(channels, 1, k, 1),
                 groups=channels)
    return F.conv2d(reflect_pad(y, (k // 2, k // 2, 0, 0)), taps.view(1, 1, 1, k).expand(channels, 1, 1, k),
                    groups=channels)


def check_range(key: str, bounds: tuple[float, float], low: float, high: float) -> None:
    """[min, max] with low <= min <= max <= high, or a ConfigError naming ``key``."""
    if not low <= bounds[0] <= bounds[1] <= high:
        raise ConfigError(f"{key}: expected [min, max] with {low} <= min <= max <= {high}, got {list(bounds)}")


def check_probabilities(key: str, probs: tuple[float, ...], names: tuple[str, ...]) -> None:
    """Non-negative chances summing to one, or a ConfigError naming ``key`` and what each entry means."""
    if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise ConfigError(f"{key}: expected {len(names)} chances >= 0 summing to 1 ({', '.join(names)}), got "
                          f"{list(probs)} (sum {sum(probs):g})")


def _first_change(value: Any, default: Any, key: str) -> Optional[str]:
    """The dotted key of the first leaf where ``value`` differs from ``default`` (dataclass trees), or None."""
    if not dataclasses.is_dataclass(value):
        return None if value == default else key
    for f in dataclasses.fields(value):
        found = _first_change(getattr(value, f.name), getattr(default, f.name), f"{key}.{f.name}")
        if found:
            return found
    return None


def refuse_unused(deg: DegradationConfig, names: tuple[str, ...]) -> None:
    """A ConfigError naming the first of the sections or keys ``names`` of ``data.degradation`` set away from
    its default: they belong to another ``type`` and would be ignored silently."""
    default = DegradationConfig()
    for name in names:
        changed = _first_change(getattr(deg, name), getattr(default, name), f"data.degradation.{name}")
        if changed:
            raise ConfigError(f"{changed}: not used by data.degradation.type {deg.type!r}; set the type that uses "
                              f"it or leave it at its default")

"""How a low-resolution input (and the training target) is made from a high-resolution crop.

Pipelines are registered by ``data.degradation.type``: ``classic`` (``.classic``: one pass of blur, bicubic
downsampling, noise, 8-bit rounding and JPEG; the default) and ``realesrgan`` (``.realesrgan``: Real-ESRGAN's
second-order degradation, its kernels in ``.kernels``, its batched steps in ``.ragged``). Each draws everything
random from the sample's own ``torch.Generator``: the result is a function of the HR crop and the generator's
state alone, so a sample is the same on any number of workers. ``degrade`` makes one sample; ``draw`` and
``degrade_batch`` split that in two, so that the choices are taken wherever the sample's generator is and a
whole batch is degraded at once where it is used (``data.degradation.device``). A new pipeline is a new module
registering itself, imported below.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from distgan.config import DegradationConfig
from distgan.data.degradations import classic, realesrgan  # noqa: F401  (the pipelines register themselves)
from distgan.data.degradations.base import DEGRADATIONS, Degradation, from_uint8, jpeg, quantize, to_uint8
from distgan.data.degradations.classic import add_noise, gaussian_blur, gaussian_kernel

__all__ = ["DEGRADATIONS", "Degradation", "add_noise", "blur_reach", "check_degradation", "degrade",
           "degrade_batch", "draw", "from_uint8", "gaussian_blur", "gaussian_kernel", "jpeg", "make_lr", "quantize",
           "to_uint8"]

TYPE_KEY = "data.degradation.type"


def pipeline(deg: DegradationConfig) -> Degradation:
    return DEGRADATIONS.get(deg.type, key=TYPE_KEY)


def check_degradation(deg: DegradationConfig, crop: int) -> None:
    """Raise a ConfigError naming the key when ``deg`` cannot work on ``crop``-px HR crops."""
    pipeline(deg).check(deg, crop)


def blur_reach(deg: DegradationConfig) -> int:
    """How many HR pixels the pipeline's blur reaches (a checked config): validation images must be larger."""
    return pipeline(deg).reach(deg)


def degrade(hr: torch.Tensor, scale: int, deg: DegradationConfig,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR [C, H/scale, W/scale] on the 8-bit grid, training target [C, H, W]), in [-1, 1], for the HR crop
    [C, H, W] in [-1, 1]; H and W multiples of ``scale``."""
    return pipeline(deg)(hr, scale, deg, gen)


def make_lr(hr: torch.Tensor, scale: int, deg: DegradationConfig, gen: torch.Generator) -> torch.Tensor:
    """The LR input alone (``degrade``'s first part): what validation and inference inputs are made with."""
    return degrade(hr, scale, deg, gen)[0]


def draw(shape: tuple[int, int, int], scale: int, deg: DegradationConfig, gen: torch.Generator) -> Any:
    """Every random choice ``degrade`` takes for an HR crop of ``shape`` [C, H, W], from ``gen``, in its order."""
    return pipeline(deg).draw(shape, scale, deg, gen)


def degrade_batch(hr: torch.Tensor, scale: int, deg: DegradationConfig,
                  draws: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR [N, C, H/scale, W/scale], targets [N, C, H, W]) of the HR crops [N, C, H, W] in [-1, 1], on their
    device, sample i with ``draws[i]``: what ``degrade`` makes of each alone (float tolerance), with the same
    generator. The targets are ``hr`` itself when the pipeline leaves them unchanged."""
    return pipeline(deg).apply(hr, scale, deg, draws)

"""The ``loss.g_reg`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its size):
the generator's regularizer. A docstring per field, as everywhere in the tree.

Path-length regularization (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", sec.
3.2 and app. B) needs a generator with a mapping and a synthesis network (``model.family: stylegan2``); the
generation step refuses it for others, naming ``loss.g_reg.type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from distgan.config.errors import ConfigError, positive


@dataclass
class GRegConfig:
    type: Literal["none", "path_length"] = "none"
    """G regularizer: ``none`` or ``path_length`` (StyleGAN2's E_w,y (||J_w^T y|| - a)^2, with a the running
    mean of the lengths): a fixed-size step in w changes the image by a fixed amount."""
    weight: float = 2.0
    """Strength of the penalty (StyleGAN2's w_pl = 2 for its per-pixel normalized image noise y)."""
    interval: int = 4
    """Apply every this many G steps as its own G step, scaled by the interval, with G's Adam lr and betas
    corrected as in StyleGAN2 (lazy regularization, app. B: 4); 1 adds it to every G step."""
    decay: float = 0.01
    """How fast the running mean of the path lengths (``pl_mean``) follows each batch's mean, all-reduced
    over the workers: pl_mean += decay (mean - pl_mean)."""
    batch_shrink: int = 2
    """The penalty's batch is the G batch divided by this (at least one sample), as StyleGAN2 (2) does."""


def check_g_reg(reg: GRegConfig, g_zero_stage: int) -> None:
    """Ranges of ``loss.g_reg`` and its ZeRO stage; whether G can take it is the generation step's check."""
    if reg.type != "none" and g_zero_stage == 3:
        # Measured with DeepSpeed 0.19.8: the penalty's double backward fails in ZeRO-3's gradient
        # accumulation hooks (a partitioned gradient meets the whole one), as D's R1 does.
        raise ConfigError(f"loss.g_reg.type: {reg.type} differentiates G's gradient (a double backward), which "
                          f"DeepSpeed's ZeRO-3 does not support; set deepspeed.g.zero_stage to 0, 1 or 2, or "
                          f"loss.g_reg.type=none")
    positive("loss.g_reg.weight", reg.weight, allow_zero=True)
    positive("loss.g_reg.interval", reg.interval)
    positive("loss.g_reg.batch_shrink", reg.batch_shrink)
    if not 0.0 < reg.decay <= 1.0:
        raise ConfigError(f"loss.g_reg.decay: must be in (0, 1], got {reg.decay!r}")

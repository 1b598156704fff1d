"""StyleGAN2's parts of the generation step: style mixing regularization and the lazy path-length phase (Greg).

Both are chosen by what G can do, never by its family's name: style mixing needs a G with ``mix_styles`` and
``num_ws`` (its forward then takes ``z_mix`` and ``crossover``), path length a G with ``mapping`` and
``synthesis``. Every random draw (the second latent, the crossover layer, the image-space direction of the
penalty) comes from the rank's latent generator, which the checkpoint keeps, so a resume redraws them exactly.

The Greg phase runs G's halves through ``engine_g.module`` for the forward and backs the penalty through G's
engine (``SkipGuard``), as the Gmain phase does: the engine then reduces and steps the gradient. ZeRO 0-2
only: under ZeRO-3 the forward through the submodules gathers the weights (the hooks sit on every
submodule), but the penalty's double backward fails in ZeRO-3's gradient hooks, so the config refuses it
(``distgan.config.regularizer_schema``), as it refuses R1 on a ZeRO-3 D.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from distgan.config import ConfigError
from distgan.config.regularizer_schema import GRegConfig
from distgan.gan.regularizers import path_length_noise, path_length_penalty, path_lengths, updated_pl_mean
from distgan.models.stylegan2 import draw_crossover

Latents = Callable[[int], torch.Tensor]
"""Draws n latents from the rank's generator, in G's dtype on the compute device."""


def mixes_styles(module: nn.Module) -> bool:
    """Whether G can take a second latent and a crossover layer (StyleGAN's style mixing)."""
    return callable(getattr(module, "mix_styles", None)) and isinstance(getattr(module, "num_ws", None), int)


def has_mapping(module: nn.Module) -> bool:
    """Whether G is a mapping network z -> ws followed by a synthesis network ws -> image."""
    return isinstance(getattr(module, "mapping", None), nn.Module) and isinstance(
        getattr(module, "synthesis", None), nn.Module)


class StyleMixing:
    """Style mixing regularization (StyleGAN, Karras et al. 2019, sec. 3.1): with probability ``prob`` a batch
    takes its styles from a crossover layer on from a second latent, so G cannot assume adjacent styles are
    correlated. One crossover per batch, as StyleGAN2-ADA draws it for its whole batch."""

    def __init__(self, prob: float, num_ws: int, z_generator: torch.Generator):
        self.prob, self.num_ws, self.z_generator = prob, num_ws, z_generator

    def draw(self, latents: Latents, n: int) -> dict:
        """G's keyword arguments for one batch of ``n``: ``{}`` without mixing, else ``z_mix`` and ``crossover``."""
        crossover = draw_crossover(self.num_ws, self.prob, self.z_generator)
        if crossover >= self.num_ws:
            return {}
        return {"z_mix": latents(n), "crossover": crossover}


class PathLengthRegularizer:
    """Path-length regularization (StyleGAN2, Karras et al. 2020, sec. 3.2, app. B): E (||J_w^T y|| - a)^2,
    a the running mean of the lengths (``pl_mean``). ``pl_mean`` follows the mean over every rank, so it is
    the same on all of them and the checkpoint's (rank 0's) is every rank's."""

    def __init__(self, weight: float, interval: int, decay: float, batch_shrink: int, device: torch.device):
        self.weight, self.interval, self.decay, self.batch_shrink = weight, interval, decay, batch_shrink
        self.pl_mean = torch.zeros((), device=device)
        """The running mean a of the path lengths (fp32, on the compute device: no host sync to update it)."""

    @classmethod
    def from_config(cls, reg: GRegConfig, module: nn.Module, device: torch.device) -> Optional["PathLengthRegularizer"]:
        """The regularizer ``loss.g_reg`` asks for, or None; refuses a G without a mapping and synthesis network."""
        if reg.type == "none":
            return None
        if not has_mapping(module):
            raise ConfigError(f"loss.g_reg.type: path_length differentiates the image with respect to the styles w, "
                              f"but this generator ({type(module).__name__}) has no mapping and synthesis network; "
                              f"use model.family=stylegan2 or loss.g_reg.type=none")
        return cls(reg.weight, reg.interval, reg.decay, reg.batch_shrink, device)

    @property
    def every_step(self) -> bool:
        """Interval 1: the penalty joins every Gmain loss (StyleGAN's Gboth) instead of its own phase."""
        return self.interval == 1

    def due(self, steps_done: int) -> bool:
        """Whether the lazy phase runs at step ``steps_done + 1`` (every ``interval``-th, as Dreg)."""
        return not self.every_step and (steps_done + 1) % self.interval == 0

    def batch(self, batch_size: int) -> int:
        return max(batch_size // self.batch_shrink, 1)

    def penalty(self, module: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor], mixing: dict,
                z_generator: torch.Generator) -> torch.Tensor:
        """The unweighted penalty on latents ``z`` (with the batch's style mixing), updating ``pl_mean``.

        All-reduces the batch's mean length (a collective: every rank calls it together)."""
        # update_w_avg off: w_avg follows the main phases' mappings only, as StyleGAN2-ADA's Greg leaves it.
        ws = module.mapping(z, labels, update_w_avg=False)
        if mixing:
            ws = module.mix_styles(ws, mixing["z_mix"], mixing["crossover"], labels)
        images = module.synthesis(ws, getattr(module, "noise_mode", "random"))
        lengths = path_lengths(images, ws, path_length_noise(images, z_generator))
        self.pl_mean = updated_pl_mean(self.pl_mean, _mean_over_ranks(lengths.detach().mean()), self.decay)
        # Some parameters (the output layers' biases) reach the penalty only through the double backward,
        # with no defined gradient, yet autograd still runs their gradient nodes: ZeRO-2's hooks then find an
        # empty .grad and fail. A zero term through the images gives every parameter a defined (zero)
        # gradient, as StyleGAN2-ADA's Gpl loss adds gen_img[:, 0, 0, 0] * 0 for DDP's sake.
        return path_length_penalty(lengths, self.pl_mean) + images[:, 0, 0, 0].float().mean() * 0

    def state_dict(self) -> dict:
        return {"pl_mean": float(self.pl_mean)}

    def load_state_dict(self, state: dict) -> None:
        if "pl_mean" in state:
            self.pl_mean = torch.tensor(state["pl_mean"], dtype=torch.float32, device=self.pl_mean.device)


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """``value`` averaged over the ranks of the default process group (itself in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value

"""The ``optim`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its size): each
engine's optimizer and its learning-rate schedule. A docstring per field, as everywhere in the tree.

The schedules themselves (the formulas, a registry keyed by ``schedule.type``) are in
``distgan.runtime.lr_schedule``; this module checks what the config alone decides: ranges, and the lists'
orders and lengths, each error naming its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from distgan.config.errors import ConfigError, positive


@dataclass
class ScheduleConfig:
    type: str = "constant"
    """Learning-rate schedule from the registry (``distgan.runtime.lr_schedule``): ``constant`` (``lr`` at every
    step), ``multistep`` (``lr`` times ``gamma`` at each of ``milestones``; ESRGAN's step decay) or
    ``cosine_restarts`` (cosine annealing from ``lr`` to ``eta_min`` over each of ``periods``, restarting at
    ``lr`` times ``restart_weights``; BasicSR's CosineAnnealingRestartLR). Its step is the run's step
    (``train.steps`` counts them) for G and D alike: D's ``n_critic`` updates of one step share its lr."""
    warmup_steps: int = 0
    """Linear warm-up, with any ``type``: the schedule's lr times (step + 1) / warmup_steps over the first
    ``warmup_steps`` steps (BasicSR's ``warmup_iter``); 0 for none."""
    milestones: list[int] = field(default_factory=list)
    """multistep: steps (strictly increasing, > 0) from which the lr is multiplied by ``gamma`` once more;
    ESRGAN: [50000, 100000, 200000, 300000] of 400,000."""
    gamma: float = 0.5
    """multistep: the factor at each milestone (ESRGAN: 0.5)."""
    periods: list[int] = field(default_factory=list)
    """cosine_restarts: lengths in steps (> 0) of the successive cosine cycles; after the last the lr stays at
    ``eta_min``. Real-ESRGAN's RealESRNet: [250000, 250000, 250000, 250000]."""
    restart_weights: list[float] = field(default_factory=list)
    """cosine_restarts: the peak of each cycle as a fraction of ``lr``, one per period; empty: 1 for every
    cycle."""
    eta_min: float = 0.0
    """cosine_restarts: the lr at the end of each cycle (absolute; BasicSR uses 1e-7)."""


@dataclass
class OptimizerConfig:
    type: Literal["adam", "adamw"] = "adam"
    """``adam`` (L2 weight decay) or ``adamw`` (decoupled weight decay)."""
    lr: float = 2e-4
    """Learning rate (the peak of the schedule)."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas; GANs usually want a low beta1."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.0
    """Weight decay."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """How the learning rate changes with the step. The config's schedule wins on resume: a checkpoint
    resumed with another one continues, from the restored step, on the new one (a warning says so)."""


@dataclass
class OptimConfig:
    g: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Generator optimizer."""
    d: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Discriminator optimizer."""


def check_optim(optim: OptimConfig) -> None:
    """Ranges of both optimizers and their schedules (the schedule's type name is the registry's to check)."""
    for net in ("g", "d"):
        opt: OptimizerConfig = getattr(optim, net)
        positive(f"optim.{net}.lr", opt.lr)
        positive(f"optim.{net}.eps", opt.eps)
        positive(f"optim.{net}.weight_decay", opt.weight_decay, allow_zero=True)
        for i, beta in enumerate(opt.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"optim.{net}.betas[{i}]: must be in [0, 1), got {beta!r}")
        check_schedule(opt.schedule, f"optim.{net}.schedule")
        if opt.schedule.eta_min > opt.lr:
            raise ConfigError(f"optim.{net}.schedule.eta_min: the lr a cycle ends at must not exceed optim.{net}.lr "
                              f"({opt.lr!r}), got {opt.schedule.eta_min!r}")


def check_schedule(s: ScheduleConfig, key: str) -> None:
    """Every key of a schedule, whatever its type: a value wrong for one type is wrong for all."""
    positive(f"{key}.warmup_steps", s.warmup_steps, allow_zero=True)
    positive(f"{key}.gamma", s.gamma)
    positive(f"{key}.eta_min", s.eta_min, allow_zero=True)
    _increasing(s.milestones, f"{key}.milestones")
    for i, period in enumerate(s.periods):
        positive(f"{key}.periods[{i}]", period)
    for i, weight in enumerate(s.restart_weights):
        positive(f"{key}.restart_weights[{i}]", weight, allow_zero=True)
    if s.restart_weights and len(s.restart_weights) != len(s.periods):
        raise ConfigError(f"{key}.restart_weights: one per period ({len(s.periods)} in {key}.periods), got "
                          f"{len(s.restart_weights)}; or leave it empty for 1 each")


def _increasing(values: list[int], key: str) -> None:
    for i, value in enumerate(values):
        positive(f"{key}[{i}]", value)
        if i and value <= values[i - 1]:
            raise ConfigError(f"{key}: must be strictly increasing, got {values!r} ({values[i - 1]} then {value})")

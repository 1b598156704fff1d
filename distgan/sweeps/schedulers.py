"""Trial schedulers of ``tune.scheduler.type``, one registry entry each.

An entry checks what its scheduler needs of the sweep (before any trial
starts) and builds Ray Tune's scheduler for it. Building imports Ray Tune
inside the function: checking a sweep config needs no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from distgan.config import Config, ConfigError
from distgan.core.registry import Registry
from distgan.sweeps.space import Domain, to_tune_domain

Space = dict[str, Domain]


@dataclass(frozen=True)
class Scheduler:
    build: Callable[[Config, Space], Optional[Any]]
    """Ray Tune's ``TrialScheduler`` for the sweep (None: Tune's FIFO)."""
    check: Callable[[Config, Space], None] = lambda cfg, space: None
    """Raises a ConfigError naming the key when the sweep cannot work under this scheduler."""
    describe: Callable[[Config], str] = lambda cfg: cfg.tune.scheduler.type
    """One line for ``--dry-run``: the scheduler and its effective settings."""


SCHEDULERS: Registry[Scheduler] = Registry("trial scheduler")


def _grace_period(cfg: Config) -> int:
    return cfg.tune.scheduler.grace_period or cfg.eval.every  # 0 means eval.every


def _build_asha(cfg: Config, space: Space):
    from ray.tune.schedulers import ASHAScheduler  # building imports Ray Tune; checking does not

    return ASHAScheduler(time_attr="step", max_t=cfg.train.steps, grace_period=_grace_period(cfg),
                         reduction_factor=cfg.tune.scheduler.reduction_factor)


def _describe_asha(cfg: Config) -> str:
    s = cfg.tune.scheduler
    return f"asha (grace period {_grace_period(cfg)} steps, keeps 1 of {s.reduction_factor} at each rung)"


def _check_asha(cfg: Config, space: Space) -> None:
    """What ASHAScheduler asserts when built (after Ray has started), refused here by name."""
    s = cfg.tune.scheduler
    if s.reduction_factor < 2:
        raise ConfigError(f"tune.scheduler.reduction_factor: must be >= 2, got {s.reduction_factor}")
    if _grace_period(cfg) > cfg.train.steps:
        # A first rung past the last step could never stop a trial; Ray asserts grace_period <= max_t.
        named = (f"tune.scheduler.grace_period ({s.grace_period})" if s.grace_period else
                 f"tune.scheduler.grace_period (0, so eval.every: {cfg.eval.every})")
        raise ConfigError(f"{named} must be at most train.steps ({cfg.train.steps}): ASHA's first rung would "
                          f"come after the last step; set tune.scheduler.grace_period to at most "
                          f"{cfg.train.steps}, or raise train.steps")


# PBT copies a better trial's checkpoint into a worse one, so every trial must keep
# the shapes and layout of the checkpoint; these sections decide them.
FIXED_UNDER_PBT = ("model.", "data.", "scaling.", "deepspeed.")


def pbt_mutation(domain: Domain):
    """How PBT perturbs a key: a choice as the plain list of its options, a randint as the list of its
    integers (so it moves by one and stays in [low, high): scaled by 0.8 or 1.2 and rounded, a 2 would never
    move and a 4 would leave [1, 5)), a real range as Ray's domain.

    Ray's PBT explore (``ray.tune.schedulers.pbt._explore``, Ray 2.60) treats the two apart: a list or
    tuple is resampled from (``random.choice``) or shifted one place left or right within it
    (``distribution.index``), so a value stays one of the options; a Domain (``tune.choice`` included) is
    resampled or *multiplied* by 0.8 or 1.2, which turns a choice of 1, 2, 4 into 3 or 5 and fails on
    strings. A range is meant to be scaled, so it stays a domain.
    """
    if domain.kind == "choice":
        return list(domain.values)
    if domain.kind == "randint":
        return list(range(int(domain.values[0]), int(domain.values[1])))
    return to_tune_domain(domain)


def _build_pbt(cfg: Config, space: Space):
    from distgan.sweeps.pbt import FinalStepAwarePBT  # subclasses Ray Tune's PBT, so it imports Ray

    s = cfg.tune.scheduler
    return FinalStepAwarePBT(
        cfg.train.steps, time_attr="step",
        perturbation_interval=s.perturbation_interval or cfg.train.checkpoint_every,
        hyperparam_mutations={"space": {k: pbt_mutation(d) for k, d in space.items()}},
        quantile_fraction=s.quantile_fraction, resample_probability=s.resample_probability, synch=s.synch)


def _describe_pbt(cfg: Config) -> str:
    s = cfg.tune.scheduler  # a perturbation interval of 0 means train.checkpoint_every
    return (f"pbt (perturbs every {s.perturbation_interval or cfg.train.checkpoint_every} steps, quantile "
            f"{s.quantile_fraction:g}, resample probability {s.resample_probability:g}"
            f"{', synchronous' if s.synch else ''})")


def _check_pbt(cfg: Config, space: Space) -> None:
    s = cfg.tune.scheduler
    if s.perturbation_interval % cfg.train.checkpoint_every:
        raise ConfigError(f"tune.scheduler.perturbation_interval ({s.perturbation_interval}) must be a "
                          f"multiple of train.checkpoint_every ({cfg.train.checkpoint_every}): PBT exploits "
                          f"checkpoints")
    for key, domain in space.items():
        if key.startswith(FIXED_UNDER_PBT):
            raise ConfigError(f"tune.space.{key}: PBT copies checkpoints between trials, so model, data, scaling "
                              f"and deepspeed settings must be the same in every trial; search them with "
                              f"tune.scheduler.type=asha (or fifo) instead")
        if domain.kind == "grid":
            raise ConfigError(f"tune.space.{key}: PBT mutates values as it goes; use choice instead of grid")
    if cfg.tune.search != "random":
        # Ray's PBT refuses any other search algorithm when the first trial is added, with Ray running.
        raise ConfigError(f"tune.search: PBT draws and mutates the values itself, so it needs tune.search=random, "
                          f"got {cfg.tune.search!r}")


SCHEDULERS.register("fifo")(Scheduler(build=lambda cfg, space: None,
                                      describe=lambda cfg: "fifo (every trial runs to the end)"))
SCHEDULERS.register("asha")(Scheduler(build=_build_asha, check=_check_asha, describe=_describe_asha))
SCHEDULERS.register("pbt")(Scheduler(build=_build_pbt, check=_check_pbt, describe=_describe_pbt))

"""Learning-rate schedules, registered by the name used in ``optim.{g,d}.schedule.type``.

The lr of an engine is a pure function of the run's step, never a counter the optimizer carries along:

    lr(step) = schedule(step) * min(1, (step + 1) / warmup_steps)       (warm-up factor 1 without one)

``step`` is the number of generator updates done before the optimizer steps it applies to (the loop's
``TrainState.step``, what ``train.steps`` counts), the same for G and D. Three reasons for the run's step
rather than each engine's own optimizer steps: milestones and periods are then in the unit of
``train.steps``, ``checkpoint_every`` and ESRGAN's and BasicSR's iteration counts (BasicSR updates every
scheduler once per iteration); D's ``n_critic`` updates and the lazy regularizer's extra D step
(``loss.d_reg.interval``) do not shift D's schedule against G's; and a step skipped for non-finite values
(``distgan.runtime.nonfinite``) moves no counter. D's ``n_critic`` updates of one step share its lr; the
lazy-regularization correction multiplies D's scheduled lr afterwards (``engines.optimizer_hyperparameters``).

Because ``step`` is in every checkpoint (``train_state.json``) and is the same on every rank, the lr holds
across a resume and across a reshard to another worker count without any scheduler state. The checkpoint
also records the schedules it was trained with (``describe``): a run resumed with other ones follows the
config from the restored step on, and the loop warns, naming the keys that changed (``changes``). The
config winning is deliberate: it is how the optimizer's other settings behave on resume, and what a PBT
exploit (which resumes another trial's checkpoint with mutated values) relies on.

A new schedule is one subclass here with ``SCHEDULES.register``, and its keys in
``distgan.config.optim_schema.ScheduleConfig``.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from itertools import accumulate

from distgan.config import Config, ConfigError, ScheduleConfig
from distgan.core.registry import Registry


class LRSchedule:
    """One engine's lr at a step, from its optimizer's peak ``lr``; subclasses define ``scheduled``."""

    def __init__(self, cfg: ScheduleConfig, lr: float):
        self.cfg, self.lr = cfg, lr

    @classmethod
    def check(cls, cfg: ScheduleConfig, key: str) -> None:
        """What this type needs of its keys beyond their ranges (``optim_schema.check_schedule``)."""

    def scheduled(self, step: int) -> float:
        """The lr at ``step`` before warm-up."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        lr = self.scheduled(step)
        warmup = self.cfg.warmup_steps
        if warmup and step < warmup:
            # (step + 1): the first step already trains, at lr / warmup_steps (BasicSR's warm-up, 1-based). BasicSR
            # ramps to the peak lr rather than to the schedule's; the two agree while the schedule has not moved.
            lr *= (step + 1) / warmup
        return lr


SCHEDULES: Registry[type[LRSchedule]] = Registry("learning-rate schedule")


@SCHEDULES.register("constant")
class Constant(LRSchedule):
    """``lr`` at every step (the default, and distgan's only behaviour before schedules)."""

    def scheduled(self, step):
        return self.lr


@SCHEDULES.register("multistep")
class MultiStep(LRSchedule):
    """Step decay (ESRGAN; torch's MultiStepLR): ``lr * gamma ** k``, k the milestones at or below ``step``."""

    @classmethod
    def check(cls, cfg, key):
        if not cfg.milestones:
            raise ConfigError(f"{key}.milestones: multistep needs at least one milestone, e.g. [50000, 100000]")

    def scheduled(self, step):
        return self.lr * self.cfg.gamma ** bisect.bisect_right(self.cfg.milestones, step)


@SCHEDULES.register("cosine_restarts")
class CosineRestarts(LRSchedule):
    """Cosine annealing with warm restarts (BasicSR's CosineAnnealingRestartLR; SGDR): within cycle i, which
    starts at step s_i and lasts ``periods[i]``,

        lr = eta_min + restart_weights[i] * (lr - eta_min) * (1 + cos(pi * (step - s_i) / periods[i])) / 2

    and ``eta_min`` after the last cycle (where BasicSR raises)."""

    @classmethod
    def check(cls, cfg, key):
        if not cfg.periods:
            raise ConfigError(f"{key}.periods: cosine_restarts needs at least one period, e.g. [250000, 250000]")

    def scheduled(self, step):
        ends = list(accumulate(self.cfg.periods))
        cycle = bisect.bisect_right(ends, step)
        if cycle == len(ends):
            return self.cfg.eta_min
        start = ends[cycle - 1] if cycle else 0
        weight = self.cfg.restart_weights[cycle] if self.cfg.restart_weights else 1.0
        progress = (step - start) / self.cfg.periods[cycle]
        return self.cfg.eta_min + weight * 0.5 * (self.lr - self.cfg.eta_min) * (1 + math.cos(math.pi * progress))


def build(cfg: Config, net: str) -> LRSchedule:
    """Network ``net``'s schedule (``g`` or ``d``) from the config."""
    opt = getattr(cfg.optim, net)
    return SCHEDULES.get(opt.schedule.type, key=f"optim.{net}.schedule.type")(opt.schedule, opt.lr)


def check_config(cfg: Config) -> None:
    """The schedule types exist and have what they need (``distgan.checks.validate``)."""
    for net in ("g", "d"):
        key = f"optim.{net}.schedule"
        schedule = getattr(cfg.optim, net).schedule
        SCHEDULES.get(schedule.type, key=f"{key}.type").check(schedule, key)


def describe(cfg: Config) -> dict:
    """What a checkpoint records of the schedules: each engine's peak lr and its schedule's keys."""
    return {net: {"lr": getattr(cfg.optim, net).lr, "schedule": dataclasses.asdict(getattr(cfg.optim, net).schedule)}
            for net in ("g", "d")}


def changes(saved: dict, now: dict) -> list[str]:
    """``optim.NET.schedule.KEY: OLD -> NEW`` for every schedule key that differs from a checkpoint's record
    (``describe``). A checkpoint written before schedules existed records nothing, and was constant."""
    out = []
    for net, current in now.items():
        before = saved.get(net, {}).get("schedule")
        if before is None:
            before = dataclasses.asdict(ScheduleConfig())
        for key, value in current["schedule"].items():
            if before.get(key) != value:
                out.append(f"optim.{net}.schedule.{key}: {before.get(key)!r} -> {value!r}")
    return out

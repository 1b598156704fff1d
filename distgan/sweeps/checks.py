"""The whole check of a sweep's ``tune`` section, before any trial starts.

Called by ``distgan tune``, ``distgan submit --tune`` and the Python API on top of
``distgan.checks.validate`` (``distgan train`` ignores the section). Every key of the
space must be a config key and every value one it accepts: each is checked, one
key at a time against the rest of the config, so a typo fails before a trial runs.
"""

from __future__ import annotations

import copy

from distgan.checks import validate
from distgan.config import Config, ConfigError, positive, set_dotted
from distgan.metrics.registry import objective, parse
from distgan.sweeps.schedulers import SCHEDULERS
from distgan.sweeps.searchers import SEARCHERS
from distgan.sweeps.space import Domain, parse_space
from distgan.tasks import task_for


def mode(cfg: Config) -> str:
    """Whether the sweep minimizes or maximizes ``tune.metric`` (``auto``: the metric's own direction)."""
    return objective(cfg.tune.metric)[1] if cfg.tune.mode == "auto" else cfg.tune.mode


def check_sweep(cfg: Config) -> Config:
    """Raise a ConfigError naming the key when the sweep cannot run; returns ``cfg``."""
    t = cfg.tune
    producer, _ = objective(t.metric)
    task = task_for(cfg)
    produced = parse(cfg.eval.metrics, task.name, task.default_metrics)
    if producer not in produced:
        raise ConfigError(f"tune.metric: {t.metric} needs {producer!r} in eval.metrics "
                          f"(it is {cfg.eval.metrics!r})")
    if cfg.eval.every <= 0:
        raise ConfigError("eval.every: a sweep ranks trials by evaluation, so eval.every must be > 0")
    if cfg.scaling.is_elastic:
        # Trials are compared step for step; one that ran narrower for a while would not be comparable.
        raise ConfigError(f"scaling.num_workers: {list(cfg.scaling.num_workers)} is an elastic width, for distgan "
                          f"train; the trials of a sweep each have a fixed width (a number)")
    if cfg.train.checkpoint_every % cfg.eval.every:
        raise ConfigError(f"train.checkpoint_every ({cfg.train.checkpoint_every}) must be a multiple of "
                          f"eval.every ({cfg.eval.every}), so every checkpoint a scheduler acts on carries "
                          f"{t.metric}")
    positive("tune.num_samples", t.num_samples)
    positive("tune.max_concurrent", t.max_concurrent, allow_zero=True)
    sched = t.scheduler
    positive("tune.scheduler.grace_period", sched.grace_period, allow_zero=True)
    positive("tune.scheduler.perturbation_interval", sched.perturbation_interval, allow_zero=True)
    for name in ("quantile_fraction", "resample_probability"):
        value = getattr(sched, name)
        if not 0 <= value <= (0.5 if name == "quantile_fraction" else 1):
            raise ConfigError(f"tune.scheduler.{name}: out of range, got {value!r}")
    check_space_given(cfg)
    space = parse_space(t.space)
    SCHEDULERS.get(sched.type, key="tune.scheduler.type").check(cfg, space)
    SEARCHERS.get(t.search, key="tune.search").check(cfg, space)
    check_space(cfg.to_dict(), space)
    return cfg


def check_space_given(cfg: Config) -> None:
    """A sweep searches at least one key (one without a space is a plain run: ``distgan train``)."""
    if not cfg.tune.space:
        raise ConfigError("tune.space: a sweep needs at least one key to search, e.g. "
                          "tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}}")


def check_space(base: dict, space: dict[str, Domain]) -> None:
    """Every key a real config key, every example value one it accepts (``base``: the config as a dict).

    What runs is the base with every key of the space set, never the base alone: a base may leave to the
    space what it cannot do without (a multistep schedule's milestones). So the configs checked are the
    trials' kind: every key at its first example, then each key at each of its examples with the others at
    their first.
    """
    plain = {k: v for k, v in base.items() if k != "tune"}
    for key in space:
        if key.startswith("tune."):
            raise ConfigError(f"tune.space.{key}: a sweep cannot search its own settings")
    firsts = {key: domain.examples()[0] for key, domain in space.items()}
    shown = ", ".join(f"{k} = {v!r}" for k, v in firsts.items())
    _check_point(plain, firsts, f"tune.space.{shown}" if len(firsts) == 1 else
                 f"tune.space (each key at its first value: {shown})")
    for key, domain in space.items():
        for value in domain.examples()[1:]:
            _check_point(plain, {**firsts, key: value}, f"tune.space.{key} = {value!r}")


def _check_point(plain: dict, point: dict, what: str) -> None:
    raw = copy.deepcopy(plain)
    try:
        for key, value in point.items():
            set_dotted(raw, key, value)
        validate(Config.from_dict(raw))
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None

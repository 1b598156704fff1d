"""Search spaces of ``tune.space``: dotted config keys -> domains, parsed and checked without Ray.

In YAML every entry names one domain::

    tune:
      space:
        optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}
        model.g_width: {choice: [16, 32, 64]}
        loss.type: {grid: [nonsaturating, hinge]}

``loguniform`` and ``uniform`` take [low, high], ``randint`` [low, high) of
integers, ``choice`` and ``grid`` a list of values (``grid`` runs every value,
the others are sampled). Each key must be a config key and every value a
value that key accepts: both are checked when the config loads, one key at a
time against the rest of the config, so a typo fails before any trial starts.
``distgan.launch.tune`` turns the domains into Ray Tune's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from distgan.config import Config, ConfigError, positive

KINDS = ("loguniform", "uniform", "randint", "choice", "grid")
# PBT copies a better trial's checkpoint into a worse one, so every trial must keep
# the shapes and layout of the checkpoint; these sections decide them.
FIXED_UNDER_PBT = ("model.", "data.", "scaling.", "deepspeed.")


@dataclass(frozen=True)
class Domain:
    kind: str
    values: tuple
    """[low, high] for the ranges; the options for choice and grid."""

    def examples(self) -> tuple:
        """Values that stand for the domain when checking the config: both ends, or every option."""
        if self.kind == "randint":
            return (self.values[0], self.values[1] - 1)
        return self.values


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    except OverflowError:  # an integer beyond the largest float
        raise ConfigError(f"{where}: expected a number below 1.8e308, got an integer of {len(str(value))} "
                          f"digits") from None


def parse_domain(key: str, raw: Any) -> Domain:
    where = f"tune.space.{key}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{where}: expected one domain such as {{loguniform: [1.0e-4, 1.0e-3]}} or "
                          f"{{choice: [16, 32]}}, got {raw!r}")
    (kind, values), = raw.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown domain {kind!r}; choose one of {', '.join(KINDS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind in ("choice", "grid"):
        return Domain(kind, tuple(values))
    if len(values) != 2:
        raise ConfigError(f"{where}.{kind}: expected [low, high], got {values!r}")
    if kind == "randint":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or values[0] >= values[1]:
            raise ConfigError(f"{where}.randint: expected integers [low, high) with low < high, got {values!r}")
        return Domain(kind, tuple(values))
    low, high = (_number(v, f"{where}.{kind}") for v in values)
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got {values!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform: both ends must be > 0, got {values!r}")
    return Domain(kind, (low, high))


def parse_space(raw: dict) -> dict[str, Domain]:
    return {key: parse_domain(key, value) for key, value in raw.items()}


def check_space(base: dict, space: dict[str, Domain], scheduler: str) -> None:
    """Every key a real config key, every example value one it accepts (``base``: the config as a dict)."""
    from distgan.config import Config, set_dotted

    plain = {k: v for k, v in base.items() if k != "tune"}
    for key, domain in space.items():
        if key.startswith("tune."):
            raise ConfigError(f"tune.space.{key}: a sweep cannot search its own settings")
        if scheduler == "pbt" and key.startswith(FIXED_UNDER_PBT):
            raise ConfigError(f"tune.space.{key}: PBT copies checkpoints between trials, so model, data, scaling "
                              f"and deepspeed settings must be the same in every trial; search them with "
                              f"tune.scheduler.type=asha (or fifo) instead")
        if scheduler == "pbt" and domain.kind == "grid":
            raise ConfigError(f"tune.space.{key}: PBT mutates values as it goes; use choice instead of grid")
        for value in domain.examples():
            raw = copy.deepcopy(plain)
            try:
                set_dotted(raw, key, value)
                Config.from_dict(raw)
            except ConfigError as exc:
                raise ConfigError(f"tune.space.{key} = {value!r}: {exc}") from None


def apply(base: dict, overrides: dict[str, Any]) -> dict:
    """The base config (a dict, without ``tune``) with one trial's sampled values set."""
    from distgan.config import set_dotted

    raw = copy.deepcopy({k: v for k, v in base.items() if k != "tune"})
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return raw


# Which ``eval.metrics`` entry produces each objective, and which way it improves.
TUNE_OBJECTIVES = {"fid": ("fid", "min"), "kid": ("kid", "min"), "precision": ("pr", "max"),
                   "recall": ("pr", "max"), "class_acc": ("class_acc", "max"), "psnr": ("psnr", "max"),
                   "ssim": ("ssim", "max")}


def tune_mode(cfg: Config) -> str:
    return TUNE_OBJECTIVES[cfg.tune.metric][1] if cfg.tune.mode == "auto" else cfg.tune.mode


def check_config(cfg: Config) -> None:
    """The ``tune`` section (called by ``distgan.config_checks.validate`` when it has a search space)."""
    from distgan import evaluate, models

    t = cfg.tune
    if t.metric not in TUNE_OBJECTIVES:
        raise ConfigError(f"tune.metric: {t.metric!r} is not an evaluation metric; choose one of "
                          f"{', '.join(TUNE_OBJECTIVES)} (GAN losses do not measure quality)")
    producer = TUNE_OBJECTIVES[t.metric][0]
    if models.is_super_resolution(cfg.model):
        from distgan import sr_validation

        produced = sr_validation.parse_metrics(cfg.eval.metrics)
    else:
        produced = evaluate.parse_metrics(cfg.eval.metrics)
    if producer not in produced:
        raise ConfigError(f"tune.metric: {t.metric} needs {producer!r} in eval.metrics "
                          f"(it is {cfg.eval.metrics!r})")
    if cfg.eval.every <= 0:
        raise ConfigError("eval.every: a sweep ranks trials by evaluation, so eval.every must be > 0")
    if cfg.train.checkpoint_every % cfg.eval.every:
        raise ConfigError(f"train.checkpoint_every ({cfg.train.checkpoint_every}) must be a multiple of "
                          f"eval.every ({cfg.eval.every}), so every checkpoint a scheduler acts on carries "
                          f"{t.metric}")
    positive("tune.num_samples", t.num_samples)
    positive("tune.max_concurrent", t.max_concurrent, allow_zero=True)
    sched = t.scheduler
    positive("tune.scheduler.grace_period", sched.grace_period, allow_zero=True)
    positive("tune.scheduler.perturbation_interval", sched.perturbation_interval, allow_zero=True)
    if sched.reduction_factor < 2:
        raise ConfigError(f"tune.scheduler.reduction_factor: must be >= 2, got {sched.reduction_factor}")
    for name in ("quantile_fraction", "resample_probability"):
        value = getattr(sched, name)
        if not 0 <= value <= (0.5 if name == "quantile_fraction" else 1):
            raise ConfigError(f"tune.scheduler.{name}: out of range, got {value!r}")
    if sched.type == "pbt" and sched.perturbation_interval % cfg.train.checkpoint_every:
        raise ConfigError(f"tune.scheduler.perturbation_interval ({sched.perturbation_interval}) must be a "
                          f"multiple of train.checkpoint_every ({cfg.train.checkpoint_every}): PBT exploits "
                          f"checkpoints")
    space = parse_space(t.space)
    if t.search == "optuna" and any(d.kind == "grid" for d in space.values()):
        raise ConfigError("tune.search: optuna samples its own points; use choice instead of grid")
    check_space(cfg.to_dict(), space, sched.type)

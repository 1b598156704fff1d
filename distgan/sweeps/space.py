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
``to_tune_domain`` turns them into Ray Tune's; ``distgan.sweeps.checks`` checks them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from distgan.config import ConfigError, set_dotted

KINDS = ("loguniform", "uniform", "randint", "choice", "grid")


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


def apply(base: dict, overrides: dict[str, Any]) -> dict:
    """The base config (a dict, without ``tune``) with one trial's sampled values set."""
    raw = copy.deepcopy({k: v for k, v in base.items() if k != "tune"})
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    return raw


def to_tune_domain(domain: Domain):
    """Ray Tune's domain for ``domain``."""
    from ray import tune  # imported here: checking a sweep config needs no Ray

    low_high = domain.values
    return {"loguniform": lambda: tune.loguniform(*low_high), "uniform": lambda: tune.uniform(*low_high),
            "randint": lambda: tune.randint(*low_high), "choice": lambda: tune.choice(list(low_high)),
            "grid": lambda: tune.grid_search(list(low_high))}[domain.kind]()

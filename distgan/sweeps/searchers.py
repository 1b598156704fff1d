"""Searchers of ``tune.search``, one registry entry each: how the next trial's values are chosen.

Building imports Ray Tune inside the function: checking a sweep config needs no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from distgan.config import Config, ConfigError
from distgan.core.registry import Registry
from distgan.sweeps.space import Domain

Space = dict[str, Domain]


@dataclass(frozen=True)
class Searcher:
    build: Callable[[Config, int], Any]
    """Ray Tune's search algorithm for the sweep, running at most the given number of trials at once (each
    searcher limits concurrency itself: Tune ignores ``max_concurrent_trials`` for generators)."""
    check: Callable[[Config, Space], None] = lambda cfg, space: None


SEARCHERS: Registry[Searcher] = Registry("searcher")


def _build_random(cfg: Config, concurrent: int):
    from ray.tune.search import BasicVariantGenerator  # building imports Ray Tune; checking does not

    return BasicVariantGenerator(random_state=cfg.tune.seed, max_concurrent=concurrent)


def _build_optuna(cfg: Config, concurrent: int):
    # Building imports Ray Tune (and Optuna); checking does not.
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(OptunaSearch(seed=cfg.tune.seed), max_concurrent=concurrent)


def _check_optuna(cfg: Config, space: Space) -> None:
    if any(d.kind == "grid" for d in space.values()):
        raise ConfigError("tune.search: optuna samples its own points; use choice instead of grid")


SEARCHERS.register("random")(Searcher(build=_build_random))
SEARCHERS.register("optuna")(Searcher(build=_build_optuna, check=_check_optuna))

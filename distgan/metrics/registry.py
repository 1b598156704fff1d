"""One registry of evaluation metrics for every task, keyed by their ``eval.metrics`` names.

An entry says which task's evaluator computes it, how (a function that
evaluator calls), and which scores it reports with the direction each
improves in. Sweep objectives (``tune.metric``) and their min/max come from
here, so a new metric is one registration beside its function, in the task
that computes it (``distgan.tasks.generation.evaluation``,
``distgan.tasks.super_resolution.validation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from distgan.config import ConfigError
from distgan.core.registry import Registry

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Metric:
    task: str
    """The task whose evaluator computes it (``generation``, ``super_resolution``)."""
    compute: Callable
    """What that evaluator calls; its arguments are the task's own."""
    scores: dict[str, Direction] = field(default_factory=dict)
    """Each score it reports that a sweep may rank trials by, and whether lower (min) or higher (max) is
    better. Companion numbers (``kid_std``, per-class accuracies) are reported but not listed."""
    needs: str = ""
    """What it needs beyond the task's data, for the docs and errors (e.g. a conditional model)."""


METRICS: Registry[Metric] = Registry("evaluation metric")


def parse(spec: str, task: str, default: str) -> list[str]:
    """The names of ``eval.metrics`` for a run of ``task`` (``auto`` means ``default``), each checked."""
    spec = default if spec.strip() == "auto" else spec
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"eval.metrics: {spec!r} names no metric; choose from {', '.join(for_task(task))} "
                          f"(or auto)")
    for name in names:
        metric = METRICS.get(name, key="eval.metrics")
        if metric.task != task:
            raise ConfigError(f"eval.metrics: {name!r} is not a {task.replace('_', '-')} metric; choose from "
                              f"{', '.join(for_task(task))} (or auto)")
    if len(set(names)) != len(names):
        raise ConfigError(f"eval.metrics: {spec!r} names a metric twice")
    return names


def for_task(task: str) -> list[str]:
    return [name for name in METRICS.names() if METRICS.get(name).task == task]


def objectives() -> dict[str, tuple[str, Direction]]:
    """Every score a sweep can rank by -> (the metric that reports it, its direction)."""
    return {score: (name, direction) for name in METRICS.names()
            for score, direction in METRICS.get(name).scores.items()}


def objective(score: str) -> tuple[str, Direction]:
    """``tune.metric`` -> (the ``eval.metrics`` entry that reports it, min or max); a ConfigError otherwise."""
    known = objectives()
    if score not in known:
        raise ConfigError(f"tune.metric: {score!r} is not an evaluation metric; choose one of "
                          f"{', '.join(known)} (GAN losses do not measure quality)")
    return known[score]

"""The task protocol: everything the per-rank loop asks of what it trains.

A task (``distgan.tasks.generation``, ``distgan.tasks.super_resolution``) is
one folder that subclasses ``Task`` and registers it; the loop
(``distgan.runtime.loop``) calls these methods and never asks which task it
runs. One instance exists per rank's run; ``check_config`` and
``evaluate_offline`` work without one (before Ray starts, and for
``distgan evaluate``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Optional, Protocol

import torch
from torch import nn

from distgan.config import Config
from distgan.data.stream import Streamer
from distgan.runtime.algorithm import GANAlgorithm

Scores = dict[str, float]


class Evaluator(Protocol):
    """Built once per run on every rank (may be collective); ``run`` is collective and returns the same
    scores on every rank."""

    def run(self, generator: nn.Module) -> Scores: ...


class Task(ABC):
    """What a task supplies to the loop; a subclass defines every abstract method."""

    name: ClassVar[str]
    """The registry key, recorded as ``task`` in every exported ``generator.json``."""
    default_metrics: ClassVar[str]
    """What ``eval.metrics: auto`` means (names in ``distgan.metrics.registry``)."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Names earlier versions recorded in ``generator.json`` for this task."""
    commands: ClassVar[tuple[str, ...]] = ("evaluate",)
    """The ``distgan`` commands that use its generators (``sample``, ``upscale``, ``evaluate``)."""

    @classmethod
    def made(cls, meta: dict) -> bool:
        """Whether an exported generator's description (``generator.json``) says this task trained it."""
        return meta.get("task") in (cls.name, *cls.aliases)

    def __init__(self, cfg: Config, rank: int = 0, world: int = 1, device: torch.device = torch.device("cpu")):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device

    # -- before anything runs ---------------------------------------------------
    @classmethod
    @abstractmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise a ConfigError naming the key when ``cfg`` cannot work for this task (data, losses,
        evaluation); runs on the driver before Ray starts and again on each worker."""

    # -- data --------------------------------------------------------------------
    @abstractmethod
    def setup_data(self, streamer: Optional[Streamer] = None) -> None:
        """Make this rank's data ready (every rank holds or streams its own share); ``streamer`` decodes
        streamed data (the session's, e.g. Ray tasks; None: a thread of this process)."""

    @abstractmethod
    def next_batch(self) -> Any:
        """This rank's next training batch, in the form the task's algorithm takes."""

    def data_metrics(self) -> dict[str, float]:
        """This rank's data statistics since the last call (``data_wait_s``: seconds the step waited for
        batches; ``data_skipped``: unreadable samples so far); the loop logs each one's maximum over ranks."""
        return {}

    @abstractmethod
    def data_state(self) -> dict:
        """Where the data stream stands, for the checkpoint (global, so it survives a resharded resume)."""

    @abstractmethod
    def load_data_state(self, state: dict) -> None:
        """Continue the data stream from ``data_state``'s output."""

    # -- networks and the step ------------------------------------------------------
    @abstractmethod
    def build_generator(self) -> nn.Module:
        """G as a plain module (called again for G_ema and snapshots: the same architecture each time)."""

    @abstractmethod
    def build_discriminator(self) -> Optional[nn.Module]:
        """None for a task stage that trains without a D (no engine, nothing in the checkpoint)."""

    @abstractmethod
    def build_algorithm(self, engine_g, engine_d, z_generator: torch.Generator) -> GANAlgorithm:
        """The task's step over the two engines; ``z_generator`` is this rank's latent stream."""

    # -- evaluation, samples, export ----------------------------------------------------
    @abstractmethod
    def build_evaluator(self) -> Evaluator:
        """Collective: every rank builds it together (rank 0 may prepare what evaluation compares with)."""

    @abstractmethod
    def render_samples(self, generator: nn.Module, evaluator: Optional[Evaluator]):
        """The sample grid of ``generator`` (a whole module in eval mode) as a PIL image on rank 0, None on
        the others. Every rank calls it: a task may need a collective to make it."""

    @abstractmethod
    def export_metadata(self) -> dict:
        """What ``generator.json`` needs beyond the loop's keys (task, model and data config, step) to rebuild
        and use the generator: at least ``data_shape``."""

    @classmethod
    @abstractmethod
    def evaluate_offline(cls, source: Path, generator: nn.Module, meta: dict, cfg: Config) -> tuple[Scores, dict]:
        """``distgan evaluate``: scores of an exported generator in this process, and what was evaluated."""

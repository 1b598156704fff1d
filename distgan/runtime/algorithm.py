"""The GAN-algorithm base: what every task's step shares with the loop.

A task's algorithm (``distgan.tasks.*.step``) decides the phases of one
training step: which network steps, on what, with which loss. Everything
around the phases lives here once: each network's ``SkipGuard`` (a step whose
loss or gradients are not finite on any rank is skipped on every rank and
counted), gradient norms measured only on logged steps, running statistics
read only when the loop asks, and D's health signals.

Two rules keep DeepSpeed's engines from tangling the networks' gradients, and
every subclass follows them:

* D phases: fakes are made without G's graph (or detached), so D's backward
  ends at the fakes and G's engine sees nothing.
* G phases: D is frozen (``frozen_discriminator``) and run through
  ``engine_d.module``, never the engine. Calling the engine would register
  D's backward hooks on G's graph (DeepSpeed issues #399, #4923): under ZeRO 0
  it raises, under ZeRO 1-3 it silently fills D's gradient buckets. Under
  ZeRO-3 the module's own hooks still gather D's partitioned weights.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ClassVar, Iterator, Optional

import torch
from torch import nn

from distgan.runtime.nonfinite import SkipGuard
from distgan.runtime.stats import RunningStats

D_HEALTH = ("d_real", "d_fake", "d_acc_real", "d_acc_fake", "d_real_sign")
"""``d_real``/``d_fake``: D's mean logit; ``d_acc_*``: shares D classifies right; ``d_real_sign``:
E[sign D(real)], StyleGAN2-ADA's overfitting signal (near 1: D has memorized the reals)."""

BatchSource = Callable[[], Any]
"""Returns this rank's next training batch, in the form the task's algorithm takes."""


class GANAlgorithm:
    """One training step of G and (when there is one) D, as named phases; subclasses define ``step``."""

    stat_names: ClassVar[tuple[str, ...]]
    """The statistics a subclass records, in the order ``pop_stats`` returns them."""

    def __init__(self, engine_g, engine_d, device: torch.device, max_consecutive_skips: int):
        self.engine_g, self.engine_d = engine_g, engine_d
        self.device = device
        self.steps_done = 0
        """Completed ``step`` calls; restored from the checkpoint's step. Schedules lazy phases."""
        self.guards = {"g": SkipGuard(engine_g, "g", max_consecutive_skips)}
        """Each network's backward and optimizer step, skipped on every rank when not finite."""
        if engine_d is not None:
            self.guards["d"] = SkipGuard(engine_d, "d", max_consecutive_skips)
        self.grad_norms: dict[str, float] = {"g": float("nan"), "d": float("nan")}
        """Gradient norm of each network's last optimizer step (set when ``measure_grad_norms``)."""
        self.measure_grad_norms = False
        """Set by the loop before steps whose metrics are logged; norms cost a sync."""
        self._stats = RunningStats(self.stat_names, device)

    # -- what a subclass defines ------------------------------------------------
    def step(self, next_batch: BatchSource, batch_size: int) -> None:
        """One training step on every rank (the same phases in the same order, so collectives line up)."""
        raise NotImplementedError

    def samples_per_step(self, batch_size: int) -> int:
        """Real samples this rank draws per ``step`` (for ``images_seen``)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Training state of the algorithm itself beyond the engines, RNGs and ``steps_done`` (e.g. ADA's p), as
        plain JSON values, the same on every rank; the checkpoint keeps rank 0's. Every rank calls it: it may
        hold a collective."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict``'s output (``{}`` from a checkpoint of an algorithm that kept none)."""

    # -- shared by the phases ---------------------------------------------------
    @contextlib.contextmanager
    def frozen_discriminator(self) -> Iterator[Optional[nn.Module]]:
        """D's bare module with ``requires_grad`` off, for a G phase (None without a D)."""
        if self.engine_d is None:
            yield None
            return
        module = self.engine_d.module
        module.requires_grad_(False)
        try:
            yield module
        finally:
            module.requires_grad_(True)

    def backward(self, net: str, loss: torch.Tensor) -> None:
        self.guards[net].backward(loss)

    def optimizer_step(self, net: str, measure: bool = True) -> None:
        # The step being computed is steps_done + 1 (1-based, as the loop counts them).
        norm = self.guards[net].step(measure and self.measure_grad_norms, self.steps_done + 1)
        if norm is not None:
            self.grad_norms[net] = norm

    def skipped_steps(self) -> dict[str, int]:
        """Optimizer steps each network skipped since the run started (non-finite loss or gradients)."""
        return {net: guard.skipped for net, guard in self.guards.items()}

    # -- statistics -------------------------------------------------------------
    def add_stat(self, name: str, value: torch.Tensor) -> None:
        self._stats.add(name, value)

    def add_d_health(self, loss, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        """D's health signals (``D_HEALTH``) from one D step's detached logits; ``loss`` classifies them."""
        acc_real, acc_fake = loss.d_accuracy(real_logits, fake_logits)
        self.add_stat("d_real", real_logits.float().mean())
        self.add_stat("d_fake", fake_logits.float().mean())
        self.add_stat("d_acc_real", acc_real)
        self.add_stat("d_acc_fake", acc_fake)
        self.add_stat("d_real_sign", real_logits.float().sign().mean())

    def pop_stats(self) -> torch.Tensor:
        """Means since the last call, in ``stat_names`` order (a device tensor); NaN for a stat not seen."""
        return self._stats.pop()

    def pop_stats_seen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``pop_stats`` and which stats a phase produced since the last call (``RunningStats.pop_seen``)."""
        return self._stats.pop_seen()

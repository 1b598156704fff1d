"""The alternating GAN update as named phases (StyleGAN's Dmain / Dreg / Gmain).

One ``step`` is ``n_critic`` D phases, a lazy Dreg phase on the steps it is
due, then one G phase, identical on every rank, so the collectives inside the
engines line up.

Two rules keep DeepSpeed's engines from tangling the networks' gradients:

* D phases: fakes are made under ``no_grad`` through G's bare module, so D's
  backward ends at the fakes and G's engine sees nothing.
* G phase: D is frozen (``requires_grad_(False)``) and run through
  ``engine_d.module``, never the engine. Calling the engine would register
  D's backward hooks on G's graph (DeepSpeed issues #399, #4923): under ZeRO 0
  it raises, under ZeRO 1-3 it silently fills D's gradient buckets. Under
  ZeRO-3 the module's own hooks still gather D's partitioned weights.

A regularizer with ``interval`` 1 joins every Dmain loss (StyleGAN's Dboth);
with a larger interval it runs as its own optimizer step every ``interval``
steps, its loss multiplied by the interval so its average strength is
unchanged (the optimizer correction lives in ``engines``).

Statistics are accumulated as device tensors and read only when the caller
asks, so the hot path never waits on the device (``distgan.gan.stats``).

Every backward and optimizer step goes through a network's ``SkipGuard``
(``distgan.gan.nonfinite``): a step whose loss or gradients are not finite on
any rank is skipped on every rank and counted.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from distgan import engines
from distgan.config import Config, TrainConfig
from distgan.gan.losses import AdversarialLoss
from distgan.gan.nonfinite import SkipGuard
from distgan.gan.regularizers import Regularizer
from distgan.gan.stats import RunningStats

STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake", "reg_d", "d_acc_real", "d_acc_fake", "d_real_sign")
"""``d_real``/``d_fake``: D's mean logit; ``d_acc_*``: shares D classifies right; ``d_real_sign``:
E[sign D(real)], StyleGAN2-ADA's overfitting signal (near 1: D has memorized the reals)."""

Batch = tuple[torch.Tensor, Optional[torch.Tensor]]
"""Samples and their class labels (None for an unconditional GAN)."""
RealSource = Callable[[], Batch]


def _call(net: Callable, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """A network of an unconditional GAN takes only its input; a conditional one also the labels."""
    return net(x) if labels is None else net(x, labels)


class AlternatingGAN:
    stat_names = STAT_NAMES

    def __init__(self, engine_g, engine_d, loss: AdversarialLoss, latent_dim: int, n_critic: int,
                 dtype: torch.dtype, device: torch.device, z_generator: torch.Generator,
                 regularizer: Optional[Regularizer] = None, reg_weight: float = 0.0, reg_interval: int = 1,
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, num_classes: int = 0,
                 adversarial_weight: float = 1.0, max_consecutive_skips: int = TrainConfig.max_consecutive_skips,
                 reuse_fakes: bool = False, layout: torch.memory_format = torch.contiguous_format):
        self.engine_g = engine_g
        self.layout = layout
        """Memory format of real image batches (``train.channels_last``)."""
        self.engine_d = engine_d
        self.loss = loss
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.dtype = dtype
        self.device = device
        self.z_generator = z_generator
        self.regularizer = regularizer
        self.reg_weight = reg_weight
        self.reg_interval = reg_interval
        self.augment = augment or (lambda x: x)
        """Applied to every input of D, real or fake, in every phase (differentiable)."""
        self.reuse_fakes = reuse_fakes
        """G's step trains on the fakes of the D step just before it (made with G's graph) instead of
        drawing new ones: one forward of G per step instead of two. Needs n_critic 1 and no accumulation."""
        self._kept_fake: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.adversarial_weight = adversarial_weight
        """Scales G's loss (with Adam, mostly a change of G's effective learning rate early on)."""
        self.num_classes = num_classes
        """0 for an unconditional GAN; else fakes get uniformly drawn labels of this many classes."""
        self.steps_done = 0
        """Completed ``step`` calls; schedules the lazy Dreg phase (restored from the checkpoint's step)."""
        self.guards = {"g": SkipGuard(engine_g, "g", max_consecutive_skips),
                       "d": SkipGuard(engine_d, "d", max_consecutive_skips)}
        """Each network's backward and optimizer step, skipped on every rank when not finite."""
        self._stats = RunningStats(STAT_NAMES, device)
        self._last_reals: list[Batch] = []
        self.grad_norms: dict[str, float] = {"g": float("nan"), "d": float("nan")}
        """Gradient norm of each network's last optimizer step (set when ``measure_grad_norms``)."""
        self.measure_grad_norms = False
        """Set by the loop before steps whose metrics are logged; norms cost a sync."""

    @classmethod
    def from_config(cls, cfg: Config, engine_g, engine_d, device: torch.device, z_generator: torch.Generator,
                    num_classes: int = 0) -> "AlternatingGAN":
        """The algorithm ``cfg`` describes: loss, regularizer, augmentation, n_critic, precision."""
        from distgan.gan.augment import build_augment
        from distgan.gan.losses import build_loss
        from distgan.gan.regularizers import build_regularizer

        reg = cfg.loss.d_reg
        return cls(engine_g, engine_d, build_loss(cfg.loss.type), cfg.model.latent_dim, cfg.train.n_critic,
                   engines.compute_dtype(cfg), device, z_generator,
                   regularizer=build_regularizer(reg.type) if reg.type != "none" else None,
                   reg_weight=reg.weight, reg_interval=reg.interval,
                   augment=build_augment(cfg.augment.policy) if cfg.augment.policy else None,
                   num_classes=num_classes, adversarial_weight=cfg.loss.adversarial_weight,
                   max_consecutive_skips=cfg.train.max_consecutive_skips, reuse_fakes=cfg.train.reuse_fakes,
                   layout=engines.memory_format(cfg))

    # -- inputs -------------------------------------------------------------
    def latents(self, n: int) -> torch.Tensor:
        # Drawn on the CPU from this rank's generator so the stream is the same
        # on any device and restorable from a checkpoint.
        z = torch.randn(n, self.latent_dim, generator=self.z_generator)
        return z.to(self.device, self.dtype)

    def fake_labels(self, n: int) -> Optional[torch.Tensor]:
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), generator=self.z_generator).to(self.device)

    def real_batch(self, next_real: RealSource) -> Batch:
        x, labels = next_real()
        x = engines.to_compute(x, self.device, self.dtype, self.layout)
        return x, None if labels is None else labels.to(self.device)

    def fakes_without_graph(self, labels: Optional[torch.Tensor], n: int) -> torch.Tensor:
        with torch.no_grad():
            return _call(self.engine_g.module, self.latents(n), labels)

    def d_for_penalty(self, labels: Optional[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """D's bare module behind the augmentation, for the reals' labels: what penalties differentiate."""
        module: nn.Module = self.engine_d.module
        return lambda x: _call(module, self.augment(x), labels)

    @property
    def reg_every_step(self) -> bool:
        return self.regularizer is not None and self.reg_interval == 1

    # -- phases -------------------------------------------------------------
    def d_phase(self, next_real: RealSource) -> None:
        """Dmain: one optimizer step of D (gradient_accumulation_steps micro-batches)."""
        self._last_reals = []
        for _ in range(self.engine_d.gradient_accumulation_steps()):
            real, real_labels = self.real_batch(next_real)
            self._last_reals.append((real, real_labels))
            fake_labels = self.fake_labels(real.shape[0])
            if self.reuse_fakes:
                # With G's graph, kept for G's step; D's backward still ends at the detached copy.
                kept = _call(self.engine_g, self.latents(real.shape[0]), fake_labels)
                self._kept_fake = (kept, fake_labels)
                fake = kept.detach()
            else:
                fake = self.fakes_without_graph(fake_labels, real.shape[0])
            real_logits = _call(self.engine_d, self.augment(real), real_labels)
            fake_logits = _call(self.engine_d, self.augment(fake), fake_labels)
            loss = self.loss.d_loss(real_logits, fake_logits)
            self._add("loss_d", loss)
            if self.reg_every_step:
                penalty = self.regularizer.penalty(self.d_for_penalty(real_labels), real, fake)
                self._add("reg_d", penalty)
                loss = loss + self.reg_weight * penalty
            self.guards["d"].backward(loss)
            self._optimizer_step("d")
            self._add_d_health(real_logits.detach(), fake_logits.detach())

    def dreg_phase(self) -> None:
        """Dreg: the lazy regularizer as its own D step, on the reals of the last Dmain."""
        for real, labels in self._last_reals:
            # The interpolates of a penalty on fakes take the reals' labels, as they do at every step.
            fake = self.fakes_without_graph(labels, real.shape[0]) if self.regularizer.needs_fake else None
            penalty = self.regularizer.penalty(self.d_for_penalty(labels), real, fake)
            self._add("reg_d", penalty)
            self.guards["d"].backward(self.reg_weight * self.reg_interval * penalty)
            self._optimizer_step("d", measure=False)

    def g_phase(self, batch_size: int, next_real: Optional[RealSource] = None) -> None:
        """Gmain: one optimizer step of G through a frozen D."""
        d_module = self.engine_d.module
        d_module.requires_grad_(False)
        try:
            for _ in range(self.engine_g.gradient_accumulation_steps()):
                real_logits = None
                if self.loss.g_needs_real:
                    with torch.no_grad():  # D is frozen and reals do not depend on G: no graph needed
                        real, real_labels = self.real_batch(next_real)
                        real_logits = _call(d_module, self.augment(real), real_labels)
                if self._kept_fake is not None:
                    (fake, labels), self._kept_fake = self._kept_fake, None
                else:
                    labels = self.fake_labels(batch_size)
                    fake = _call(self.engine_g, self.latents(batch_size), labels)
                loss = self.loss.g_loss(_call(d_module, self.augment(fake), labels), real_logits)
                self.guards["g"].backward(self.adversarial_weight * loss)
                self._optimizer_step("g")
                self._add("loss_g", loss)
        finally:
            d_module.requires_grad_(True)

    def step(self, next_real: RealSource, batch_size: int) -> None:
        for _ in range(self.n_critic):
            self.d_phase(next_real)
        if self.regularizer is not None and self.reg_interval > 1 and (self.steps_done + 1) % self.reg_interval == 0:
            self.dreg_phase()
        self.g_phase(batch_size, next_real)
        self.steps_done += 1

    def _optimizer_step(self, net: str, measure: bool = True) -> None:
        # The step being computed is steps_done + 1 (1-based, as the loop counts them).
        norm = self.guards[net].step(measure and self.measure_grad_norms, self.steps_done + 1)
        if norm is not None:
            self.grad_norms[net] = norm

    def skipped_steps(self) -> dict[str, int]:
        """Optimizer steps each network skipped since the run started (non-finite loss or gradients)."""
        return {net: guard.skipped for net, guard in self.guards.items()}

    # -- statistics ---------------------------------------------------------
    def _add(self, name: str, value: torch.Tensor) -> None:
        self._stats.add(name, value)

    def _add_d_health(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        acc_real, acc_fake = self.loss.d_accuracy(real_logits, fake_logits)
        self._add("d_real", real_logits.float().mean())
        self._add("d_fake", fake_logits.float().mean())
        self._add("d_acc_real", acc_real)
        self._add("d_acc_fake", acc_fake)
        self._add("d_real_sign", real_logits.float().sign().mean())

    def pop_stats(self) -> torch.Tensor:
        """Means since the last call, in ``STAT_NAMES`` order (a device tensor); NaN for a stat not seen."""
        return self._stats.pop()

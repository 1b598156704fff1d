"""The generation step (unconditional and conditional GANs) as named phases: Dmain, Dreg, Gmain, Greg.

One ``step`` is ``n_critic`` D phases, a lazy Dreg phase on the steps it is
due, then one G phase, identical on every rank, so the collectives inside the
engines line up. The DeepSpeed rules of ``distgan.runtime.algorithm`` hold:
fakes for D are made under ``no_grad`` through G's bare module, and G's phase
runs a frozen D's bare module.

G and D may compute in different dtypes (``deepspeed.{g,d}.precision``): latents
are drawn in G's, reals in D's, and G's fakes are cast to D's dtype on their way
in (``for_d``); the cast is differentiable, so G's gradient comes back in G's
dtype. D's logits reach the losses, which compute in fp32.

A regularizer with ``interval`` 1 joins every Dmain loss (StyleGAN's Dboth);
with a larger interval it runs as its own optimizer step every ``interval``
steps, its loss multiplied by the interval so its average strength is
unchanged (the optimizer correction lives in ``distgan.runtime.engines``). G's regularizer (StyleGAN2's
path length, ``loss.g_reg``) is scheduled the same way, as the Greg phase; it and style mixing, for the
generators that can take them, live in ``phases_stylegan``."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from distgan.config import Config, TrainConfig, reuses_fakes
from distgan.gan.ada import AdaptiveAugment, build_d_augment
from distgan.gan.losses import AdversarialLoss, build_loss
from distgan.gan.regularizers import Regularizer, build_regularizer
from distgan.runtime import engines
from distgan.runtime.algorithm import D_HEALTH, GANAlgorithm
from distgan.tasks.generation.phases_stylegan import PathLengthRegularizer, StyleMixing, mixes_styles

STAT_NAMES = ("loss_d", "loss_g", "reg_d") + D_HEALTH

Batch = tuple[torch.Tensor, Optional[torch.Tensor]]
"""Samples and their class labels (None for an unconditional GAN)."""
RealSource = Callable[[], Batch]


def _call(net: Callable, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """A network of an unconditional GAN takes only its input; a conditional one also the labels."""
    return net(x) if labels is None else net(x, labels)


class AlternatingGAN(GANAlgorithm):
    stat_names = STAT_NAMES

    def __init__(self, engine_g, engine_d, loss: AdversarialLoss, latent_dim: int, n_critic: int,
                 dtype: torch.dtype, device: torch.device, z_generator: torch.Generator,
                 regularizer: Optional[Regularizer] = None, reg_weight: float = 0.0, reg_interval: int = 1,
                 augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, num_classes: int = 0,
                 adversarial_weight: float = 1.0, max_consecutive_skips: int = TrainConfig.max_consecutive_skips,
                 reuse_fakes: bool = False, layout: torch.memory_format = torch.contiguous_format,
                 dtype_d: Optional[torch.dtype] = None, style_mixing_prob: float = 0.0,
                 g_reg: Optional[PathLengthRegularizer] = None):
        # Set before the base sizes the statistics: ADA's p (mean over the window), G's penalty and pl_mean.
        self.stat_names = (STAT_NAMES + (("ada_p",) if isinstance(augment, AdaptiveAugment) else ())
                           + (("reg_g", "pl_mean") if g_reg is not None else ()))
        super().__init__(engine_g, engine_d, device, max_consecutive_skips)
        self.layout = layout
        """Memory format of real image batches (``train.channels_last``)."""
        self.loss = loss
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.dtype = dtype
        """G's compute dtype: its latents'."""
        self.dtype_d = dtype if dtype_d is None else dtype_d
        """D's compute dtype: reals', and fakes' once cast (``for_d``)."""
        self.z_generator = z_generator
        self.regularizer = regularizer
        self.reg_weight = reg_weight
        self.reg_interval = reg_interval
        self.augment = augment or (lambda x: x)
        """Applied to every input of D, real or fake, in every phase (differentiable)."""
        self.ada = augment if isinstance(augment, AdaptiveAugment) else None
        """The augmentation when it is ADA's: fed D's logits on the reals, its p logged (``ada_p``) and saved."""
        self.reuse_fakes = reuse_fakes
        """G's step trains on the fakes of the D step just before it (made with G's graph) instead of
        drawing new ones: one forward of G per step instead of two. Needs n_critic 1 and no accumulation."""
        self._kept_fake: Optional[tuple[torch.Tensor, Optional[torch.Tensor]]] = None
        self.adversarial_weight = adversarial_weight
        """Scales G's loss (with Adam, mostly a change of G's effective learning rate early on)."""
        self.num_classes = num_classes
        """0 for an unconditional GAN; else fakes get uniformly drawn labels of this many classes."""
        self._last_reals: list[Batch] = []
        module = engine_g.module
        self.mixing = (StyleMixing(style_mixing_prob, module.num_ws, z_generator)
                       if style_mixing_prob > 0 and mixes_styles(module) else None)
        """Style mixing of every batch of fakes, for D and G alike (None: G cannot, or the probability is 0)."""
        self.g_reg = g_reg
        """Path-length regularization of G (``loss.g_reg``), or None."""

    @classmethod
    def from_config(cls, cfg: Config, engine_g, engine_d, device: torch.device, z_generator: torch.Generator,
                    num_classes: int = 0) -> "AlternatingGAN":
        """The algorithm ``cfg`` describes: loss, regularizer, augmentation, n_critic, precision."""
        reg = cfg.loss.d_reg
        return cls(engine_g, engine_d, build_loss(cfg.loss.type), cfg.model.latent_dim, cfg.train.n_critic,
                   engines.compute_dtype(cfg, "g"), device, z_generator,
                   regularizer=build_regularizer(reg.type) if reg.type != "none" else None,
                   reg_weight=reg.weight, reg_interval=reg.interval,
                   augment=build_d_augment(cfg.augment),
                   num_classes=num_classes, adversarial_weight=cfg.loss.adversarial_weight,
                   max_consecutive_skips=cfg.train.max_consecutive_skips, reuse_fakes=reuses_fakes(cfg),
                   layout=engines.memory_format(cfg), dtype_d=engines.compute_dtype(cfg, "d"),
                   style_mixing_prob=cfg.model.stylegan2.style_mixing_prob,
                   g_reg=PathLengthRegularizer.from_config(cfg.loss.g_reg, engine_g.module, device))

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

    def generate(self, net: Callable, labels: Optional[torch.Tensor], n: int) -> torch.Tensor:
        """``n`` fakes from G's engine or module on fresh latents, style-mixed when G mixes styles."""
        z = self.latents(n)
        mixing = self.mixing.draw(self.latents, n) if self.mixing is not None else {}
        return net(z, **mixing) if labels is None else net(z, labels, **mixing)

    def real_batch(self, next_real: RealSource) -> Batch:
        """Reals go only to D: in D's dtype."""
        x, labels = next_real()
        x = engines.to_compute(x, self.device, self.dtype_d, self.layout)
        return x, None if labels is None else labels.to(self.device)

    def for_d(self, x: torch.Tensor) -> torch.Tensor:
        """G's output in D's dtype (the same tensor when they agree); gradients flow back through the cast."""
        return x.to(self.dtype_d)

    def fakes_without_graph(self, labels: Optional[torch.Tensor], n: int) -> torch.Tensor:
        """Fakes for a D phase, in D's dtype."""
        with torch.no_grad():
            return self.for_d(self.generate(self.engine_g.module, labels, n))

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
                kept = self.generate(self.engine_g, fake_labels, real.shape[0])
                self._kept_fake = (kept, fake_labels)
                fake = self.for_d(kept.detach())
            else:
                fake = self.fakes_without_graph(fake_labels, real.shape[0])
            real_logits = _call(self.engine_d, self.augment(real), real_labels)
            fake_logits = _call(self.engine_d, self.augment(fake), fake_labels)
            loss = self.loss.d_loss(real_logits, fake_logits)
            self.add_stat("loss_d", loss)
            if self.ada is not None:
                self.ada.observe(real_logits)
            if self.reg_every_step:
                penalty = self.regularizer.penalty(self.d_for_penalty(real_labels), real, fake)
                self.add_stat("reg_d", penalty)
                loss = loss + self.reg_weight * penalty
            self.backward("d", loss)
            self.optimizer_step("d")
            self.add_d_health(self.loss, real_logits.detach(), fake_logits.detach())
        if self.ada is not None:
            self.ada.end_d_step()  # every ada.interval D steps a collective, on every rank alike
            self.add_stat("ada_p", torch.tensor(self.ada.p))

    def dreg_phase(self) -> None:
        """Dreg: the lazy regularizer as its own D step, on the reals of the last Dmain."""
        for real, labels in self._last_reals:
            # The interpolates of a penalty on fakes take the reals' labels, as they do at every step.
            fake = self.fakes_without_graph(labels, real.shape[0]) if self.regularizer.needs_fake else None
            penalty = self.regularizer.penalty(self.d_for_penalty(labels), real, fake)
            self.add_stat("reg_d", penalty)
            self.backward("d", self.reg_weight * self.reg_interval * penalty)
            self.optimizer_step("d", measure=False)

    def g_phase(self, batch_size: int, next_real: Optional[RealSource] = None) -> None:
        """Gmain: one optimizer step of G through a frozen D."""
        with self.frozen_discriminator() as d_module:
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
                    fake = self.generate(self.engine_g, labels, batch_size)
                loss = self.loss.g_loss(_call(d_module, self.augment(self.for_d(fake)), labels), real_logits)
                self.add_stat("loss_g", loss)
                loss = self.adversarial_weight * loss
                if self.g_reg is not None and self.g_reg.every_step:
                    loss = loss + self.g_reg.weight * self.path_length(batch_size)
                self.backward("g", loss)
                self.optimizer_step("g")

    def greg_phase(self, batch_size: int) -> None:
        """Greg: the lazy path-length penalty as its own G step, scaled by its interval (StyleGAN2 app. B)."""
        for _ in range(self.engine_g.gradient_accumulation_steps()):
            penalty = self.path_length(batch_size)
            self.backward("g", self.g_reg.weight * self.g_reg.interval * penalty)
            self.optimizer_step("g", measure=False)

    def path_length(self, batch_size: int) -> torch.Tensor:
        """The path-length penalty on a fresh batch (``batch_shrink`` times smaller), logged as ``reg_g``.

        G's halves run through its bare module, the backward through its engine (the caller's)."""
        n = self.g_reg.batch(batch_size)
        labels = self.fake_labels(n)
        z = self.latents(n)
        mixing = self.mixing.draw(self.latents, n) if self.mixing is not None else {}
        penalty = self.g_reg.penalty(self.engine_g.module, z, labels, mixing, self.z_generator)
        self.add_stat("reg_g", penalty)
        return penalty

    def step(self, next_real: RealSource, batch_size: int) -> None:
        for _ in range(self.n_critic):
            self.d_phase(next_real)
        if self.regularizer is not None and self.reg_interval > 1 and (self.steps_done + 1) % self.reg_interval == 0:
            self.dreg_phase()
        self.g_phase(batch_size, next_real)
        if self.g_reg is not None:
            if self.g_reg.due(self.steps_done):
                self.greg_phase(batch_size)
            self.add_stat("pl_mean", self.g_reg.pl_mean)  # every step: the logged value is never missing
        self.steps_done += 1

    def state_dict(self) -> dict:
        state = {"ada": self.ada.state_dict()} if self.ada is not None else {}
        if self.g_reg is not None:
            state["g_reg"] = self.g_reg.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.ada is not None and "ada" in state:
            self.ada.load_state_dict(state["ada"])
        if self.g_reg is not None and "g_reg" in state:
            self.g_reg.load_state_dict(state["g_reg"])

    def samples_per_step(self, batch_size: int) -> int:
        """D's micro-batches of every critic step, and G's when its loss compares with reals."""
        d_batches = self.engine_d.gradient_accumulation_steps() * self.n_critic
        g_batches = self.engine_g.gradient_accumulation_steps() if self.loss.g_needs_real else 0
        return batch_size * (d_batches + g_batches)

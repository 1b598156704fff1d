"""The alternating GAN update as named phases (StyleGAN's Dmain / Gmain).

One ``step`` is ``n_critic`` D phases followed by one G phase, identical on
every rank, so the collectives inside the engines line up.

Two rules keep DeepSpeed's engines from tangling the networks' gradients:

* D phase: fakes are made under ``no_grad`` through G's bare module, so D's
  backward ends at the fakes and G's engine sees nothing.
* G phase: D is frozen (``requires_grad_(False)``) and run through
  ``engine_d.module``, never the engine. Calling the engine would register
  D's backward hooks on G's graph (DeepSpeed issues #399, #4923): under ZeRO 0
  it raises, under ZeRO 1-3 it silently fills D's gradient buckets. Under
  ZeRO-3 the module's own hooks still gather D's partitioned weights.

Statistics are accumulated as device tensors and read only when the caller
asks, so the hot path never waits on the device.
"""

from __future__ import annotations

from typing import Callable

import torch

from distgan import engines
from distgan.gan.losses import AdversarialLoss

STAT_NAMES = ("loss_d", "loss_g", "d_real", "d_fake")


class AlternatingGAN:
    def __init__(self, engine_g, engine_d, loss: AdversarialLoss, latent_dim: int, n_critic: int,
                 dtype: torch.dtype, device: torch.device, z_generator: torch.Generator):
        self.engine_g = engine_g
        self.engine_d = engine_d
        self.loss = loss
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.dtype = dtype
        self.device = device
        self.z_generator = z_generator
        self._sums = torch.zeros(len(STAT_NAMES), device=device)
        self._counts = torch.zeros(len(STAT_NAMES), device=device)
        self.grad_norms: dict[str, float] = {"g": float("nan"), "d": float("nan")}
        """Gradient norm of each network's last optimizer step (set when ``measure_grad_norms``)."""
        self.measure_grad_norms = False
        """Set by the loop before steps whose metrics are logged; norms cost a sync."""

    # -- inputs -------------------------------------------------------------
    def latents(self, n: int) -> torch.Tensor:
        # Drawn on the CPU from this rank's generator so the stream is the same
        # on any device and restorable from a checkpoint.
        z = torch.randn(n, self.latent_dim, generator=self.z_generator)
        return z.to(self.device, self.dtype)

    # -- phases -------------------------------------------------------------
    def d_phase(self, next_real: Callable[[], torch.Tensor]) -> None:
        """Dmain: one optimizer step of D (gradient_accumulation_steps micro-batches)."""
        for _ in range(self.engine_d.gradient_accumulation_steps()):
            real = next_real().to(self.device, self.dtype)
            with torch.no_grad():
                fake = self.engine_g.module(self.latents(real.shape[0]))
            real_logits = self.engine_d(real)
            fake_logits = self.engine_d(fake)
            loss = self.loss.d_loss(real_logits, fake_logits)
            self.engine_d.backward(loss)
            self._optimizer_step("d", self.engine_d)
            self._add(0, loss)
            self._add(2, real_logits.detach().float().mean())
            self._add(3, fake_logits.detach().float().mean())

    def g_phase(self, batch_size: int) -> None:
        """Gmain: one optimizer step of G through a frozen D."""
        d_module = self.engine_d.module
        d_module.requires_grad_(False)
        try:
            for _ in range(self.engine_g.gradient_accumulation_steps()):
                fake = self.engine_g(self.latents(batch_size))
                loss = self.loss.g_loss(d_module(fake))
                self.engine_g.backward(loss)
                self._optimizer_step("g", self.engine_g)
                self._add(1, loss)
        finally:
            d_module.requires_grad_(True)

    def step(self, next_real: Callable[[], torch.Tensor], batch_size: int) -> None:
        for _ in range(self.n_critic):
            self.d_phase(next_real)
        self.g_phase(batch_size)

    def _optimizer_step(self, net: str, engine) -> None:
        if not (self.measure_grad_norms and engine.is_gradient_accumulation_boundary()):
            engine.step()
            return
        # Under plain ZeRO-0 the gradients are whole and reduced here, and gone after the step.
        manual = engines.grad_norm(engine.module) if engine.zero_optimization_stage() == 0 else None
        engine.step()
        norm = engines.deepspeed_grad_norm(engine)
        self.grad_norms[net] = float(norm if norm is not None else manual if manual is not None else float("nan"))

    # -- statistics ---------------------------------------------------------
    def _add(self, index: int, value: torch.Tensor) -> None:
        self._sums[index] += value.detach().float()
        self._counts[index] += 1

    def pop_stats(self) -> torch.Tensor:
        """Means since the last call, in ``STAT_NAMES`` order (a device tensor)."""
        means = self._sums / self._counts.clamp(min=1)
        self._sums.zero_()
        self._counts.zero_()
        return means

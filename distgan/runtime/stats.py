"""What every GAN algorithm shares with the loop: running statistics and a measured optimizer step.

Statistics are accumulated as device tensors and read only when the loop asks
(at log steps), so the hot path never waits on the device.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from distgan.runtime import engines


class RunningStats:
    """Sums and counts of named scalars since the last ``pop``."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = tuple(names)
        self._index = {name: i for i, name in enumerate(self.names)}
        self._sums = torch.zeros(len(self.names), device=device)
        self._counts = torch.zeros(len(self.names), device=device)

    def add(self, name: str, value: torch.Tensor) -> None:
        index = self._index[name]
        self._sums[index] += value.detach().float()
        self._counts[index] += 1

    def pop(self) -> torch.Tensor:
        """Means since the last call, in ``names`` order (a device tensor); NaN for a name not seen."""
        return self.pop_seen()[0]

    def pop_seen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``pop``'s means, and which names were seen: a NaN mean is a name not seen, or a value that went
        non-finite, which only the second tells apart."""
        seen = self._counts > 0
        means = torch.where(seen, self._sums / self._counts.clamp(min=1), torch.full_like(self._sums, float("nan")))
        self._sums.zero_()
        self._counts.zero_()
        return means, seen


def optimizer_step(engine, measure_grad_norm: bool) -> Optional[float]:
    """``engine.step()``; with ``measure_grad_norm`` at an accumulation boundary, also the gradient norm.

    The norm costs a host sync, so the loop asks for it only before logged steps.
    """
    if not (measure_grad_norm and engine.is_gradient_accumulation_boundary()):
        engine.step()
        return None
    # Under plain ZeRO-0 the gradients are whole and reduced here, and gone after the step.
    manual = engines.grad_norm(engine.module) if engine.zero_optimization_stage() == 0 else None
    engine.step()
    norm = engines.deepspeed_grad_norm(engine)
    return float(norm if norm is not None else manual if manual is not None else float("nan"))

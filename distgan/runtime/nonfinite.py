"""Skipping a network's optimizer step when any rank saw a non-finite loss or gradient.

A NaN on one rank must not reach the weights, must not make the replicas
differ, and must not hang a collective. Three pieces give that:

* ``SkipGuard.backward`` makes a non-finite loss always give non-finite
  gradients (the loss is multiplied by 1, or by NaN when it is not finite;
  without that a NaN loss term can still give finite gradients). Finite losses
  are untouched bit for bit.
* The data-parallel reduction spreads a non-finite gradient of any rank to the
  reduced gradients of every rank (NaN and inf survive a sum), and DeepSpeed
  skips such a step itself in every optimizer it wraps a torch optimizer in:
  ZeRO 1-2 (``stage_1_and_2.py`` ``step``: an invalid global norm, or
  ``check_overflow`` for bf16/fp16, sets ``overflow``, clears the gradient
  buffers and returns before the optimizer runs), ZeRO-3 (``stage3.py`` ``step``
  -> ``_loss_scale_update_and_overflow_cleanup``) and the bf16/fp16 ZeRO-0
  optimizer (``fp16/unfused_optimizer.py`` ``_skip_invalid_grad_norm``). Those
  decisions are agreed across ranks (an all-reduced norm or overflow flag), and
  the engine then counts the step in ``engine.skipped_steps``
  (``engine.py`` ``_take_model_step``). fp16's loss-scale overflows are such
  skips too, and are counted the same way.
* Plain fp32 ZeRO-0 hands DeepSpeed's engine the bare torch optimizer, which has
  no such check: it would write NaN into the weights. There the guard checks the
  (already reduced, whole) gradients itself, agrees with the other ranks, and on
  a skip runs ``engine.step()`` with the optimizer's update left out, so the
  engine still clips, clears the gradients and advances its counters as on any
  step, and counts the skip in ``engine.skipped_steps`` as DeepSpeed would.

Host syncs: none per micro-batch (the loss factor is two device ops). Per
optimizer step, the wrapped optimizers already read their overflow flag on the
host and the guard only reads that Python bool; the bare-optimizer path adds
one all-reduce and one host read. DeepSpeed's checks depend on two of its
defaults that ``distgan.runtime.engines`` leaves alone: ``zero_optimization.
compute_grad_norm`` and ``bf16.check_grad_overflow`` (both true);
tests/runtime/test_nonfinite.py covers every ZeRO stage in fp32 and bf16.

``engine.skipped_steps`` is saved in DeepSpeed's checkpoint of each engine, so
the cumulative counts survive a resume exactly. The run of consecutive skips is
not saved: after a resume it starts again from 0, which can only delay the stop.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.distributed as dist

from distgan.runtime.stats import optimizer_step

NETWORK_NAMES = {"g": "G", "d": "D"}


class NonFiniteError(RuntimeError):
    """A network skipped ``train.max_consecutive_skips`` optimizer steps in a row: training has diverged."""


def nan_unless_finite(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` itself when finite, else NaN, with the same graph: its gradients are then non-finite too."""
    factor = torch.ones_like(loss).masked_fill_(~torch.isfinite(loss.detach()), float("nan"))
    return loss * factor


@contextlib.contextmanager
def _update_left_out(optimizer) -> Iterator[None]:
    """The torch optimizer's ``step`` does nothing inside: no parameter and no state (moments, step count) moves."""
    optimizer.step = lambda *args, **kwargs: None  # shadows the class's method on this instance only
    try:
        yield
    finally:
        del optimizer.step


class SkipGuard:
    """The optimizer steps of one network's engine, skipped on every rank together when not finite."""

    def __init__(self, engine, net: str, max_consecutive: int):
        self.engine = engine
        self.net = net
        self.max_consecutive = max_consecutive
        """Consecutive skipped steps that stop the run (``NonFiniteError``); 0 never stops."""
        self.consecutive = 0
        """Skipped optimizer steps since the last applied one."""
        # DeepSpeed's wrappers (ZeRO 1-3, bf16, fp16) report ``overflow``; a bare torch optimizer does not.
        self.checks_itself = not hasattr(engine.optimizer, "overflow")

    @property
    def skipped(self) -> int:
        """Optimizer steps skipped since the run started (DeepSpeed's counter, kept in its checkpoints)."""
        return int(self.engine.skipped_steps)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(nan_unless_finite(loss))

    def step(self, measure_grad_norm: bool, training_step: int) -> Optional[float]:
        """``engine.step()``; at an accumulation boundary, skipped on every rank when any rank was not finite.

        Returns the gradient norm when asked for one (inf for a skipped step); raises ``NonFiniteError``, the
        same on every rank, at the ``max_consecutive``-th skip in a row.
        """
        engine = self.engine
        if not engine.is_gradient_accumulation_boundary():
            engine.step()
            return None
        if self.checks_itself and not self._gradients_finite():
            # The engine's own step, so it clips, clears the gradients and advances its counters as on any
            # step; only the update is left out. (Clearing the gradients first instead would break the
            # engine's clipping: DeepSpeed's clip_grad_norm_ indexes the first parameter with a gradient.)
            with _update_left_out(engine.optimizer):
                engine.step()
            engine.skipped_steps += 1
            skipped, norm = True, float("inf") if measure_grad_norm else None
        else:
            norm = optimizer_step(engine, measure_grad_norm)
            # Set by DeepSpeed's own check, already agreed across ranks: a Python bool, no device sync.
            skipped = bool(getattr(engine.optimizer, "overflow", False))
        self.consecutive = self.consecutive + 1 if skipped else 0
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise NonFiniteError(self._message(training_step))
        return norm

    def _gradients_finite(self) -> bool:
        """Whether the reduced gradients are finite on every rank.

        One all-reduce and one host read per optimizer step (not per micro-batch): cheap next to the step, and
        the decision must be on the host to choose the path. Only the bare-optimizer path (fp32 ZeRO-0) pays it.
        """
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        bad = torch.zeros((), device=self.engine.device)  # 0 without gradients: still joins the all-reduce
        if grads:
            # GradScaler's fused check: one pass over every gradient without a temporary per tensor (20x
            # faster than isfinite/all per tensor on CPU). "Unscaling" by 1 leaves the gradients bit for bit.
            torch._amp_foreach_non_finite_check_and_unscale_(grads, bad, torch.ones((), device=bad.device))
        if dist.is_initialized() and dist.get_world_size() > 1:
            # The reduced gradients are the same on every rank, so the answer is too; the all-reduce makes
            # sure of it rather than trusting bitwise-equal reductions.
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        return not bool(bad.item())

    def _message(self, training_step: int) -> str:
        name, net = NETWORK_NAMES[self.net], self.net
        return (f"{name} skipped {self.consecutive} consecutive optimizer steps, at training step {training_step} "
                f"({name}'s optimizer step {self.engine.global_steps}): its loss or gradients were not finite "
                f"(NaN or inf) on at least one worker, so no update was applied (train.max_consecutive_skips="
                f"{self.max_consecutive}). Training has diverged. Try a lower learning rate (optim.{net}.lr), "
                f"fp32 instead of bf16/fp16 (deepspeed.precision=fp32), or gradient clipping "
                f"(deepspeed.{net}.gradient_clipping=1.0), and check the data for NaN or inf. "
                f"train.max_consecutive_skips=0 never stops.")

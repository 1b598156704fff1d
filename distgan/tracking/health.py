"""Training-health warnings from the logged metrics, shown on the driver's console.

Two failure modes that a loss curve shows late and a person notices even
later: D winning outright (it classifies every real and every fake right, so
G's gradient carries no information) and G's loss running away or going
non-finite. Each warning is raised once per episode, not on every log line.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Optional


class HealthMonitor:
    def __init__(self, patience: int = 5, d_win_accuracy: float = 0.99, divergence_factor: float = 5.0,
                 history: int = 20):
        self.patience = patience
        """Consecutive logged steps a condition must hold before it is reported."""
        self.d_win_accuracy = d_win_accuracy
        self.divergence_factor = divergence_factor
        """G's loss counts as diverging above this multiple of its recent median."""
        self._g_history: deque[float] = deque(maxlen=history)
        self._d_wins = 0
        self._g_high = 0
        self._reported: set[str] = set()

    def observe(self, record: dict) -> list[str]:
        """Warnings (possibly none) that ``record`` triggers."""
        warnings = [w for w in (self._check_d_wins(record), self._check_g_loss(record)) if w]
        return warnings

    def _once(self, key: str, active: bool, message: str) -> Optional[str]:
        if not active:
            self._reported.discard(key)  # the episode ended; a new one is worth a new warning
            return None
        if key in self._reported:
            return None
        self._reported.add(key)
        return message

    def _check_d_wins(self, record: dict) -> Optional[str]:
        acc_real, acc_fake = record.get("d_acc_real"), record.get("d_acc_fake")
        if acc_real is None or acc_fake is None:
            return None
        winning = acc_real >= self.d_win_accuracy and acc_fake >= self.d_win_accuracy
        self._d_wins = self._d_wins + 1 if winning else 0
        return self._once(
            "d_wins", self._d_wins >= self.patience,
            f"D has classified {acc_real:.0%} of reals and {acc_fake:.0%} of fakes right for {self._d_wins} logged "
            f"steps in a row (step {record.get('step')}): G's gradient carries little information. Consider a lower "
            f"optim.d.lr, a regularizer (loss.d_reg.type=r1) or more data.")

    def _check_g_loss(self, record: dict) -> Optional[str]:
        loss_g = record.get("loss_g")
        if loss_g is None:
            return None
        if not math.isfinite(loss_g):
            return self._once("g_nonfinite", True,
                              f"G's loss went {loss_g} in the window ending at step {record.get('step')} (a step "
                              f"with a non-finite loss is skipped; train.max_consecutive_skips of them in a row "
                              f"stop the run). If it stays so, training has diverged: resume from an earlier "
                              f"checkpoint with a lower optim.g.lr, or use bf16/fp32.")
        self._reported.discard("g_nonfinite")
        baseline = statistics.median(self._g_history) if len(self._g_history) >= self.patience else None
        high = baseline is not None and abs(loss_g) > self.divergence_factor * max(abs(baseline), 1e-3)
        self._g_high = self._g_high + 1 if high else 0
        if not high:
            self._g_history.append(loss_g)  # the baseline only learns from healthy values
        return self._once(
            "g_diverges", self._g_high >= self.patience,
            f"G's loss {loss_g:.3g} has stayed above {self.divergence_factor:g}x its recent median "
            f"({baseline:.3g}) for {self._g_high} logged steps (step {record.get('step')}): G may be diverging."
            if baseline is not None else "")

"""Console health warnings from sequences of logged metrics."""

from __future__ import annotations

from distgan.tracking.health import HealthMonitor


def feed(monitor: HealthMonitor, records: list[dict]) -> list[tuple[int, str]]:
    return [(r["step"], w) for r in records for w in monitor.observe(r)]


def healthy(step: int, loss_g: float = 1.0) -> dict:
    return {"step": step, "loss_g": loss_g, "d_acc_real": 0.7, "d_acc_fake": 0.6}


def test_d_winning_is_reported_once_after_patience_and_again_after_recovery():
    monitor = HealthMonitor(patience=3)
    winning = [{"step": s, "loss_g": 1.0, "d_acc_real": 1.0, "d_acc_fake": 0.995} for s in range(1, 7)]
    warnings = feed(monitor, winning)
    assert [step for step, _ in warnings] == [3]
    assert "D has classified 100% of reals" in warnings[0][1] and "loss.d_reg.type=r1" in warnings[0][1]
    assert feed(monitor, [healthy(7)]) == []
    assert [s for s, _ in feed(monitor, [{**w, "step": 7 + w["step"]} for w in winning])] == [10]


def test_a_brief_d_win_is_not_reported():
    monitor = HealthMonitor(patience=3)
    records = [{"step": 1, "loss_g": 1, "d_acc_real": 1, "d_acc_fake": 1},
               {"step": 2, "loss_g": 1, "d_acc_real": 1, "d_acc_fake": 1}, healthy(3),
               {"step": 4, "loss_g": 1, "d_acc_real": 1, "d_acc_fake": 1}]
    assert feed(monitor, records) == []


def test_non_finite_g_loss_is_reported_at_once():
    monitor = HealthMonitor()
    warnings = feed(monitor, [healthy(1), healthy(2, float("nan")), healthy(3, float("inf"))])
    assert [s for s, _ in warnings] == [2] and "diverged" in warnings[0][1]


def test_g_loss_running_away_from_its_median():
    monitor = HealthMonitor(patience=3, divergence_factor=5)
    steady = [healthy(s, 1.0 + 0.1 * (s % 2)) for s in range(1, 11)]
    runaway = [healthy(s, 20.0) for s in range(11, 16)]
    warnings = feed(monitor, steady + runaway)
    assert [s for s, _ in warnings] == [13]
    assert "20" in warnings[0][1] and "median" in warnings[0][1]


def test_steady_training_raises_nothing():
    monitor = HealthMonitor(patience=2)
    assert feed(monitor, [healthy(s, 1.0 + (s % 3) * 0.5) for s in range(1, 50)]) == []

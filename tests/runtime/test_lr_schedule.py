"""Learning-rate schedules (``distgan.runtime.lr_schedule``): the lr at a step is the published formula, on the
engines of the real loop (in-process, DeepSpeed, world size 1), and across a resume and a reshard."""

from __future__ import annotations

import json
import logging
import math
import shutil

import pytest

from distgan import load_config
from distgan.checks import validate
from distgan.config import ConfigError
from distgan.runtime import engines, lr_schedule
from distgan.tracking.jsonl import read_metrics
from local_runs import make_trainer, small_config

LR = 2e-4
ESRGAN = ("optim.g.schedule.type=multistep", "optim.g.schedule.milestones=[50000, 100000, 200000, 300000]",
          "optim.g.schedule.gamma=0.5")


def lr_at(step: int, *overrides: str, net: str = "g") -> float:
    return lr_schedule.build(load_config(None, overrides), net)(step)


def test_constant_is_the_lr_at_every_step():
    assert [lr_at(k) for k in (0, 1, 10**6)] == [LR, LR, LR]


def test_multistep_halves_at_esrgans_milestones():
    # torch's MultiStepLR: the decay applies from the milestone's step on (after that many steps done).
    expected = {0: LR, 49_999: LR, 50_000: LR / 2, 99_999: LR / 2, 100_000: LR / 4, 200_000: LR / 8,
                300_000: LR / 16, 399_999: LR / 16}
    assert {k: lr_at(k, *ESRGAN) for k in expected} == expected


def test_cosine_restarts_follows_basicsrs_formula():
    cfg = ("optim.g.schedule.type=cosine_restarts", "optim.g.schedule.periods=[100, 50]",
           "optim.g.schedule.restart_weights=[1, 0.5]", "optim.g.schedule.eta_min=1e-7")
    eta = 1e-7

    def basicsr(step):  # CosineAnnealingRestartLR.get_lr, written out
        start, period, weight = (0, 100, 1.0) if step < 100 else (100, 50, 0.5)
        return eta + weight * 0.5 * (LR - eta) * (1 + math.cos(math.pi * (step - start) / period))

    for step in (0, 1, 25, 50, 99, 100, 110, 125, 149):
        assert lr_at(step, *cfg) == pytest.approx(basicsr(step), rel=1e-12)
    assert lr_at(50, *cfg) == pytest.approx((LR + eta) / 2)
    assert lr_at(100, *cfg) == pytest.approx(eta + 0.5 * (LR - eta))  # a restart at half the peak
    assert lr_at(150, *cfg) == lr_at(10**6, *cfg) == eta  # past the last cycle it stays at eta_min


@pytest.mark.parametrize("schedule", [(), ESRGAN, ("optim.g.schedule.type=cosine_restarts",
                                                   "optim.g.schedule.periods=[1000]")])
def test_warmup_ramps_linearly_into_any_schedule(schedule):
    warm = (*schedule, "optim.g.schedule.warmup_steps=4")
    for step in range(4):
        assert lr_at(step, *warm) == pytest.approx(lr_at(step, *schedule) * (step + 1) / 4)
    assert [lr_at(k, *warm) for k in (4, 60_000)] == [lr_at(k, *schedule) for k in (4, 60_000)]


def test_lazy_regularization_rescales_ds_scheduled_lr():
    cfg = load_config(None, ("loss.d_reg.type=r1", "loss.d_reg.interval=4", "optim.d.schedule.type=multistep",
                             "optim.d.schedule.milestones=[10]"))
    assert engines.optimizer_hyperparameters(cfg, "d", 10)["lr"] == pytest.approx(LR * 0.5 * 4 / 5)
    assert engines.deepspeed_config(cfg, "d", 1, False)["optimizer"]["params"]["lr"] == pytest.approx(LR * 4 / 5)


@pytest.mark.parametrize("overrides,message", [
    (("optim.g.schedule.milestones=[100, 100]",), r"optim\.g\.schedule\.milestones: must be strictly increasing"),
    (("optim.d.schedule.milestones=[0, 5]",), r"optim\.d\.schedule\.milestones\[0\]: must be > 0"),
    (("optim.g.schedule.milestones=100",), r"optim\.g\.schedule\.milestones: expected a list"),
    (("optim.d.schedule.periods=[10, 10]", "optim.d.schedule.restart_weights=[1]"),
     r"optim\.d\.schedule\.restart_weights: one per period \(2 in optim\.d\.schedule\.periods\), got 1"),
    (("optim.g.schedule.periods=[10, 0]",), r"optim\.g\.schedule\.periods\[1\]: must be > 0"),
    (("optim.g.schedule.warmup_steps=-5",), r"optim\.g\.schedule\.warmup_steps: must be >= 0"),
    (("optim.g.schedule.gamma=0",), r"optim\.g\.schedule\.gamma: must be > 0"),
    (("optim.g.schedule.eta_min=1",), r"optim\.g\.schedule\.eta_min: .* must not exceed optim\.g\.lr"),
    (("optim.g.schedule.type=multistep",), r"optim\.g\.schedule\.milestones: multistep needs at least one"),
    (("optim.d.schedule.type=cosine_restarts",), r"optim\.d\.schedule\.periods: cosine_restarts needs"),
    (("optim.g.schedule.type=multistpe",), r"optim\.g\.schedule\.type: unknown learning-rate schedule .*did you"),
])
def test_bad_schedules_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(load_config(None, overrides))


# -- on the engines of the real loop ----------------------------------------------------

G_SCHEDULE = {"type": "multistep", "milestones": [1, 3], "gamma": 0.5}
D_SCHEDULE = {"type": "cosine_restarts", "periods": [2, 2], "restart_weights": [1.0, 0.5], "eta_min": 1e-5,
              "warmup_steps": 2}
# By hand: the lr each engine trains with in run step k (0-based), from the formulas above.
EXPECTED_G = [2e-4, 1e-4, 1e-4, 5e-5]
EXPECTED_D = [1e-4,  # cycle 1 at its peak, halved by the first of 2 warm-up steps
              1e-5 + 0.5 * 1.9e-4,  # half-way down cycle 1
              1e-5 + 0.5 * 1.9e-4,  # restart at half the peak
              1e-5 + 0.25 * 1.9e-4]  # half-way down cycle 2


def scheduled_config(steps: int, d_schedule: dict = D_SCHEDULE):
    cfg = small_config(0, steps=steps)
    cfg.train.log_every = 1
    cfg.train.sample_every = 100
    cfg.eval.every = 0
    for key, value in G_SCHEDULE.items():
        setattr(cfg.optim.g.schedule, key, value)
    for key, value in d_schedule.items():
        setattr(cfg.optim.d.schedule, key, value)
    return cfg


def logged(run_dir) -> dict[int, tuple[float, float]]:
    return {r["step"]: (r["lr_g"], r["lr_d"]) for r in read_metrics(run_dir / "metrics.jsonl")}


def expected(steps) -> dict[int, tuple[float, float]]:
    # A record of step t reports the lr its optimizer steps used: that of 0-based step t - 1.
    return {t: (pytest.approx(EXPECTED_G[t - 1]), pytest.approx(EXPECTED_D[t - 1])) for t in steps}


def test_engines_train_at_the_scheduled_lr_across_a_resume_and_a_reshard(process_group, tmp_path, caplog):
    first, session = make_trainer(scheduled_config(2), tmp_path, "first")
    first.run()
    assert logged(tmp_path / "first") == expected([1, 2])
    saved = session.checkpoints[-1]
    record = json.loads((saved / "train_state.json").read_text())["lr_schedule"]
    assert record["g"]["schedule"]["milestones"] == [1, 3] and record["d"]["schedule"]["periods"] == [2, 2]

    # Resumed on the same worker count: steps 3 and 4 at the lr of steps 2 and 3, though the engines' optimizer
    # state was saved with step 1's lr.
    resumed, _ = make_trainer(scheduled_config(4), tmp_path, "resumed", resume_from=saved)
    resumed.run()
    assert logged(tmp_path / "resumed") == expected([3, 4])

    # Resharded: the same checkpoint as if 2 workers had written it (ZeRO-0 loads as it is; the loop takes the
    # resharding path: fresh RNG streams, the step carried over). The lr depends on the step alone.
    twice = tmp_path / "store-2" / saved.name
    shutil.copytree(saved, twice)
    state = json.loads((twice / "train_state.json").read_text())
    (twice / "train_state.json").write_text(json.dumps({**state, "world_size": 2}, indent=2, sort_keys=True))
    manifest = json.loads((twice / "manifest_rank0.json").read_text())
    manifest["files"]["train_state.json"] = (twice / "train_state.json").stat().st_size
    (twice / "manifest_rank0.json").write_text(json.dumps(manifest))
    (twice / "manifest_rank1.json").write_text(json.dumps({"rank": 1, "files": {}}))
    resharded, _ = make_trainer(scheduled_config(4), tmp_path, "resharded", resume_from=twice)
    with caplog.at_level(logging.WARNING, logger="distgan.runtime.loop"):
        resharded.run()
    assert "resharded" in caplog.text
    assert logged(tmp_path / "resharded") == expected([3, 4])


def test_a_resume_with_another_schedule_follows_the_config_and_says_so(process_group, tmp_path, caplog):
    first, session = make_trainer(scheduled_config(2), tmp_path, "first")
    first.run()
    changed, _ = make_trainer(scheduled_config(3, {"type": "constant"}), tmp_path, "changed",
                              resume_from=session.checkpoints[-1])
    changed.restore()
    assert changed.engine_g.get_lr()[0] == pytest.approx(EXPECTED_G[2])  # set at restore, before any step
    assert changed.engine_d.get_lr()[0] == pytest.approx(2e-4)
    assert "optim.d.schedule.type: 'cosine_restarts' -> 'constant'" in caplog.text
    assert "optim.d.schedule.warmup_steps: 2 -> 0" in caplog.text
    assert "optim.g.schedule" not in caplog.text  # G's is unchanged

"""Non-finite losses and gradients: the step is skipped whole (weights, master weights, Adam moments and step
counts untouched), counted, the next finite step trains, and a run of skips stops with a clear error.

In-process at world size 1 on real DeepSpeed engines; the two-worker version, with the NaN on one rank only,
runs on Ray in tests/e2e/test_nonfinite_replicas.py.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from distgan.config import ConfigError
from distgan import load_config
from distgan.runtime.nonfinite import NonFiniteError, nan_unless_finite
from engine_steps import build_gan, build_sr, moved, pairs, real_batches, snapshot, sr_config, tiny_config

NAN = float("nan")


@contextlib.contextmanager
def nan_gradient(module: torch.nn.Module):
    """Inside, every gradient computed for ``module``'s first parameter is NaN."""
    handle = next(module.parameters()).register_hook(lambda grad: torch.full_like(grad, NAN))
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def nan_loss(gan, name: str):
    """Inside, the adversarial loss ``name`` ("d_loss"/"g_loss") is NaN plus a constant: its gradients stay
    finite, so only the guard's own loss check can catch it."""
    original = getattr(gan.loss, name)
    setattr(gan.loss, name, lambda *args: original(*args) + NAN)
    try:
        yield
    finally:
        delattr(gan.loss, name)


def optimizer_snapshot(engine) -> list[torch.Tensor]:
    """What the torch optimizer holds: its (master, fp32) parameters and their state (moments, step count)."""
    out = []
    for param, state in engine.basic_optimizer.state.items():
        out.append(param.detach().clone())
        out += [torch.as_tensor(v).detach().clone() for _, v in sorted(state.items())]
    return out


def identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def finite(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


FAULTS = {"loss": lambda gan: nan_loss(gan, "d_loss"), "gradient": lambda gan: nan_gradient(gan.engine_d.module)}
CASES = [(s, p) for s in (0, 1, 2, 3) for p in ("fp32", "bf16")]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("stage, precision", CASES, ids=lambda v: str(v))
def test_skipped_d_step_changes_nothing_and_the_next_one_trains(process_group, stage, precision, fault):
    gan = build_gan(tiny_config(stage, precision))
    real = real_batches()
    gan.d_phase(real)  # one real step first, so the optimizer has moments and a step count to keep
    engine = gan.engine_d
    weights, state, g_weights = snapshot(engine), optimizer_snapshot(engine), snapshot(gan.engine_g)
    assert state and finite(state)

    gan.measure_grad_norms = True
    with FAULTS[fault](gan):
        gan.d_phase(real)
    assert identical(snapshot(engine), weights), "a non-finite step moved D's weights"
    assert identical(optimizer_snapshot(engine), state), "a non-finite step changed D's optimizer state"
    assert identical(snapshot(gan.engine_g), g_weights)
    assert gan.skipped_steps() == {"g": 0, "d": 1}
    assert engine.global_steps == 2 and gan.guards["d"].consecutive == 1
    assert gan.grad_norms["d"] == math.inf

    gan.d_phase(real)
    assert moved(weights, snapshot(engine)), "the finite step after a skipped one must train"
    assert finite(snapshot(engine)) and finite(optimizer_snapshot(engine))
    assert gan.skipped_steps() == {"g": 0, "d": 1} and gan.guards["d"].consecutive == 0
    assert 0 < gan.grad_norms["d"] < math.inf


@pytest.mark.parametrize("stage", [0, 3])
def test_skipped_g_step(process_group, stage):
    gan = build_gan(tiny_config(stage))
    real = real_batches()
    gan.step(real, 8)
    engine = gan.engine_g
    weights, state = snapshot(engine), optimizer_snapshot(engine)
    with nan_gradient(engine.module):
        gan.g_phase(8)
    assert identical(snapshot(engine), weights) and identical(optimizer_snapshot(engine), state)
    assert gan.skipped_steps() == {"g": 1, "d": 0}
    gan.g_phase(8)
    assert moved(weights, snapshot(engine)) and finite(snapshot(engine))


@pytest.mark.parametrize("stage", [0, 1])
def test_skipped_step_with_gradient_clipping(process_group, stage):
    """fp32 ZeRO-0 clips in the engine (over NaN gradients here) before the update the guard leaves out."""
    cfg = tiny_config(stage)
    cfg.deepspeed.d.gradient_clipping = 1.0
    gan = build_gan(cfg)
    real = real_batches()
    gan.d_phase(real)
    weights, state = snapshot(gan.engine_d), optimizer_snapshot(gan.engine_d)
    with nan_gradient(gan.engine_d.module):
        gan.d_phase(real)
    assert identical(snapshot(gan.engine_d), weights) and identical(optimizer_snapshot(gan.engine_d), state)
    gan.d_phase(real)
    assert moved(weights, snapshot(gan.engine_d)) and finite(snapshot(gan.engine_d))
    assert gan.skipped_steps()["d"] == 1


@pytest.mark.parametrize("stage", [0, 2])
def test_one_bad_micro_batch_skips_the_whole_accumulated_step(process_group, stage):
    cfg = tiny_config(stage)
    cfg.deepspeed.d.gradient_accumulation_steps = 2
    gan = build_gan(cfg)
    real = real_batches()
    gan.d_phase(real)
    weights, state = snapshot(gan.engine_d), optimizer_snapshot(gan.engine_d)
    calls = iter([True, False])  # NaN in the first micro-batch only
    original = gan.loss.d_loss
    gan.loss.d_loss = lambda *args: original(*args) + (NAN if next(calls) else 0.0)
    gan.d_phase(real)
    del gan.loss.d_loss
    assert identical(snapshot(gan.engine_d), weights) and identical(optimizer_snapshot(gan.engine_d), state)
    assert gan.skipped_steps()["d"] == 1
    gan.d_phase(real)  # accumulation restarts clean: nothing of the bad micro-batch is left over
    assert moved(weights, snapshot(gan.engine_d)) and finite(snapshot(gan.engine_d))


def test_lazy_regularizer_step_is_guarded(process_group):
    cfg = tiny_config(0)
    cfg.loss.d_reg.type, cfg.loss.d_reg.interval = "r1", 2
    gan = build_gan(cfg)
    gan.d_phase(real_batches())
    weights = snapshot(gan.engine_d)
    original = gan.regularizer.penalty
    gan.regularizer.penalty = lambda *args: original(*args) + NAN
    gan.dreg_phase()
    assert identical(snapshot(gan.engine_d), weights) and gan.skipped_steps()["d"] == 1


def test_consecutive_skips_stop_the_run_with_a_clear_message(process_group):
    cfg = tiny_config(0)
    cfg.train.max_consecutive_skips = 3
    gan = build_gan(cfg)
    real = real_batches()
    with nan_gradient(gan.engine_d.module):
        gan.step(real, 8)
        gan.step(real, 8)
        with pytest.raises(NonFiniteError) as info:
            gan.step(real, 8)
    message = str(info.value)
    assert "D skipped 3 consecutive optimizer steps, at training step 3" in message
    for hint in ("optim.d.lr", "deepspeed.precision=fp32", "deepspeed.d.gradient_clipping",
                 "train.max_consecutive_skips"):
        assert hint in message
    assert isinstance(info.value, RuntimeError) and gan.skipped_steps() == {"g": 0, "d": 3}


def test_a_finite_step_resets_the_streak_and_zero_never_stops(process_group):
    cfg = tiny_config(1)
    cfg.train.max_consecutive_skips = 2
    gan = build_gan(cfg)
    real = real_batches()
    for bad in (True, False, True, False):
        with nan_gradient(gan.engine_d.module) if bad else contextlib.nullcontext():
            gan.d_phase(real)
    assert gan.skipped_steps()["d"] == 2 and gan.guards["d"].consecutive == 0

    cfg.train.max_consecutive_skips = 0
    gan = build_gan(cfg)
    with nan_gradient(gan.engine_d.module):
        for _ in range(4):
            gan.d_phase(real)
    assert gan.skipped_steps()["d"] == 4


@pytest.mark.parametrize("stage", [0, 2])
def test_super_resolution_skips_both_networks_on_a_nan_target(process_group, stage):
    gan = build_sr(sr_config(stage))
    draw = pairs()
    gan.step(draw)
    weights = {net: snapshot(guard.engine) for net, guard in gan.guards.items()}
    states = {net: optimizer_snapshot(guard.engine) for net, guard in gan.guards.items()}

    def nan_target():
        lr, hr = draw()
        hr[0, 0, 0, 0] = NAN
        return lr, hr

    gan.step(nan_target)  # G's pixel loss and D's loss on that target are NaN
    for net, guard in gan.guards.items():
        assert identical(snapshot(guard.engine), weights[net]), net
        assert identical(optimizer_snapshot(guard.engine), states[net]), net
    assert gan.skipped_steps() == {"g": 1, "d": 1}
    gan.step(draw)
    assert all(moved(weights[net], snapshot(guard.engine)) for net, guard in gan.guards.items())
    assert gan.skipped_steps() == {"g": 1, "d": 1}


def test_psnr_stage_has_only_g_to_count(process_group):
    gan = build_sr(sr_config(adversarial_weight=0.0))
    assert gan.skipped_steps() == {"g": 0} and gan.guards["g"].max_consecutive == 20


def test_skip_counts_survive_a_deepspeed_checkpoint(process_group, tmp_path):
    """The cumulative counts are DeepSpeed's ``skipped_steps``, which its engine checkpoint keeps."""
    cfg = tiny_config(0)
    gan = build_gan(cfg)
    with nan_gradient(gan.engine_d.module):
        gan.d_phase(real_batches())
    gan.engine_d.save_checkpoint(str(tmp_path), tag="t")
    restored = build_gan(cfg)
    restored.engine_d.load_checkpoint(str(tmp_path), tag="t")
    assert restored.skipped_steps() == {"g": 0, "d": 1}


def test_finite_losses_are_untouched_bit_for_bit():
    x = torch.randn(5, requires_grad=True)
    loss = (x ** 3).sum()
    same = nan_unless_finite(loss)
    assert torch.equal(same, loss)
    (a,) = torch.autograd.grad(loss, x, retain_graph=True)
    (b,) = torch.autograd.grad(same, x)
    assert torch.equal(a, b)
    bad = nan_unless_finite((x ** 3).sum() + math.inf)
    (g,) = torch.autograd.grad(bad, x)
    assert torch.isnan(g).all(), "a non-finite loss must give non-finite gradients"


def test_max_consecutive_skips_is_validated():
    assert load_config(None, ("train.max_consecutive_skips=0",)).train.max_consecutive_skips == 0
    with pytest.raises(ConfigError, match=r"train.max_consecutive_skips: must be >= 0"):
        load_config(None, ("train.max_consecutive_skips=-1",))


def test_the_guard_leaves_finite_steps_bit_identical(process_group):
    cfg = tiny_config(2)
    guarded, plain = build_gan(cfg), build_gan(cfg)
    for guard in plain.guards.values():
        guard.backward = guard.engine.backward  # the loss straight to DeepSpeed, as before the guard
    guarded.step(real_batches(), 8)
    plain.step(real_batches(), 8)
    for net in ("g", "d"):
        assert identical(snapshot(guarded.guards[net].engine), snapshot(plain.guards[net].engine)), net


def test_a_loss_that_went_non_finite_is_logged_and_one_not_produced_is_left_out(process_group, tmp_path):
    """A window's mean is NaN both for a statistic no phase produced (reg_d without a regularizer) and for a
    loss that went NaN: the first is left out of the record, the second kept (metrics.jsonl writes it as
    null), so the health checks and the report see it."""
    from local_runs import make_trainer, small_config

    cfg = small_config()
    cfg.eval.every = 0
    trainer, _ = make_trainer(cfg, tmp_path, "nan")
    trainer.gan.add_stat("loss_g", torch.tensor(float("nan")))
    trainer.gan.add_stat("loss_d", torch.tensor(0.5))
    record = trainer.collect_metrics(0.0)
    assert math.isnan(record["loss_g"]) and record["loss_d"] == 0.5
    assert "reg_d" not in record and "d_real" not in record
    assert "loss_g" not in trainer.collect_metrics(0.0)  # the next window produced nothing

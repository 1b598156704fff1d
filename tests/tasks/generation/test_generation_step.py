"""The alternating step on real DeepSpeed engines (in-process, world size 1), every ZeRO stage.

The two-worker versions of these checks run on Ray in tests/e2e.
"""

from __future__ import annotations

import math

import pytest
import torch

from distgan import models
from distgan.runtime import engines
from distgan.tasks.generation.step import STAT_NAMES, AlternatingGAN
from engine_steps import SHAPE, build_gan, moved, real_batches, snapshot, tiny_config

def counting(source):
    """``source`` wrapped to record each batch drawn; returns (wrapped, list of draws)."""
    drawn: list[int] = []

    def draw():
        drawn.append(1)
        return source()

    return draw, drawn


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_each_phase_moves_only_its_network(process_group, stage, precision):
    gan = build_gan(tiny_config(stage, precision))
    real = real_batches()
    g0, d0 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    gan.measure_grad_norms = True
    gan.d_phase(real)
    g1, d1 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    assert moved(d0, d1), "D did not change in its own phase"
    assert not moved(g0, g1), "G changed during the D phase"
    gan.g_phase(8)
    g2, d2 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    assert moved(g1, g2), "G did not change in its own phase"
    assert not moved(d1, d2), "D changed during the G phase"
    # D is trainable again after the G phase, and both norms were measured.
    assert all(p.requires_grad for p in gan.engine_d.module.parameters())
    assert all(0 < gan.grad_norms[n] < float("inf") for n in ("g", "d"))
    stats = dict(zip(STAT_NAMES, gan.pop_stats().tolist()))
    assert stats["loss_d"] > 0 and stats["loss_g"] > 0
    assert all(math.isfinite(v) for k, v in stats.items() if k != "reg_d")
    assert math.isnan(stats["reg_d"]), "no regularizer ran, so there is no reg_d to report"
    assert 0 <= stats["d_acc_real"] <= 1 and -1 <= stats["d_real_sign"] <= 1


def test_gradient_accumulation_steps_once_per_boundary(process_group):
    cfg = tiny_config(1)
    cfg.deepspeed.d.gradient_accumulation_steps = 3
    gan = build_gan(cfg)
    real, drawn = counting(real_batches())
    gan.d_phase(real)
    assert len(drawn) == 3, "a D phase must consume gradient_accumulation_steps micro-batches"
    assert gan.engine_d.global_steps == 1


def test_n_critic_runs_that_many_d_steps(process_group):
    cfg = tiny_config(0)
    cfg.train.n_critic = 3
    gan = build_gan(cfg)
    gan.step(real_batches(), 8)
    assert gan.engine_d.global_steps == 3 and gan.engine_g.global_steps == 1


REGULARIZED = [("nonsaturating", "r1", 1), ("nonsaturating", "r1", 2), ("wgan", "gp", 1)]


@pytest.mark.parametrize("loss, reg, interval", REGULARIZED, ids=lambda v: str(v))
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_regularized_d_steps_under_zero_0_to_2(process_group, stage, loss, reg, interval):
    """The penalty differentiates D's input gradient: it must train D, not G. G runs at ZeRO-3 alongside
    (D's own stage 3 is refused by the config: DeepSpeed's ZeRO-3 has no double backward)."""
    cfg = tiny_config(3)
    cfg.deepspeed.d.zero_stage = stage
    cfg.loss.type = loss
    cfg.loss.d_reg.type, cfg.loss.d_reg.interval = reg, interval
    gan = build_gan(cfg)
    real = real_batches()
    g0 = snapshot(gan.engine_g)
    for _ in range(2):
        gan.step(real, 8)
    # Dmain twice, plus one lazy Dreg step when the interval is 2.
    assert gan.engine_d.global_steps == 2 + (1 if interval == 2 else 0)
    assert gan.engine_g.global_steps == 2 and moved(g0, snapshot(gan.engine_g))
    stats = dict(zip(STAT_NAMES, gan.pop_stats().tolist()))
    assert stats["reg_d"] > 0 and math.isfinite(stats["reg_d"])


def test_penalty_changes_what_d_learns(process_group):
    """Same seeds, same data: adding R1 must change D's update (the penalty reached D's gradients)."""
    def d_after_one_step(reg_type: str):
        cfg = tiny_config(2)
        cfg.loss.d_reg.type = reg_type
        gan = build_gan(cfg)
        gan.d_phase(real_batches())
        return snapshot(gan.engine_d)

    assert moved(d_after_one_step("none"), d_after_one_step("r1"))


def test_relativistic_g_step_draws_reals(process_group):
    cfg = tiny_config(0)
    cfg.loss.type = "ragan"
    gan = build_gan(cfg)
    real, drawn = counting(real_batches())
    gan.g_phase(8, real)
    assert len(drawn) == 1 and gan.engine_g.global_steps == 1


def assert_phases_move_only_their_network(gan: AlternatingGAN, real) -> None:
    g0, d0 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    gan.d_phase(real)
    g1, d1 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    gan.g_phase(8)
    g2, d2 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    assert moved(d0, d1) and not moved(g0, g1)
    assert moved(g1, g2) and not moved(d1, d2)


def test_augmented_phases_still_move_only_their_network(process_group):
    cfg = tiny_config(2)
    cfg.augment.policy = "color,translation,cutout"
    cfg.loss.d_reg.type = "r1"
    assert_phases_move_only_their_network(build_gan(cfg), real_batches())


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
@pytest.mark.parametrize("stage", [0, 3])
def test_conditional_phases_move_only_their_network(process_group, stage, conditioning):
    cfg = tiny_config(stage)
    cfg.model.conditional, cfg.model.d_conditioning = True, conditioning
    gan = build_gan(cfg, num_classes=3)
    assert_phases_move_only_their_network(gan, real_batches(num_classes=3))
    labels = gan.fake_labels(1000)
    assert labels.min() == 0 and labels.max() == 2, "fake labels must cover the classes"


@pytest.mark.parametrize("stage", [0, 3])
def test_ema_follows_the_gathered_generator_at_every_stage(process_group, stage):
    """Under ZeRO-3 G's parameters are partitioned; the EMA must average the whole, gathered weights."""
    from distgan.gan.ema import GeneratorEMA

    cfg = tiny_config(stage)
    gan = build_gan(cfg)
    ema = GeneratorEMA(models.build_generator(cfg.model, SHAPE), half_life_kimg=1.0, rampup=None)
    with engines.whole_parameters(gan.engine_g) as g:
        ema.copy_from(g)
    start = [p.clone() for p in ema.module.parameters()]
    gan.step(real_batches(), 8)
    with engines.whole_parameters(gan.engine_g) as g:
        ema.update(g, images_seen=10**6, batch=1000)  # beta = 1/2: halfway to the new G
        expected = [(a + b.detach().float()) / 2 for a, b in zip(start, g.parameters())]
    assert all(torch.allclose(e, p) for e, p in zip(expected, ema.module.parameters()))
    assert moved(start, list(ema.module.parameters()))


@pytest.mark.parametrize("stage", [0, 3])
def test_reused_fakes_run_g_once_per_step_and_train_both_networks(process_group, stage):
    cfg = tiny_config(stage)
    cfg.train.reuse_fakes = True
    gan = build_gan(cfg)
    calls = []
    gan.engine_g.module.register_forward_hook(lambda *_: calls.append(1))
    real = real_batches()
    g0, d0 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    gan.d_phase(real)
    assert not moved(g0, snapshot(gan.engine_g)), "G changed during the D phase"
    gan.g_phase(8)
    assert moved(g0, snapshot(gan.engine_g)) and moved(d0, snapshot(gan.engine_d))
    gan.step(real, 8)
    assert len(calls) == 2, "one G forward per step"
    stats = dict(zip(STAT_NAMES, gan.pop_stats().tolist()))
    assert math.isfinite(stats["loss_g"]) and math.isfinite(stats["loss_d"])


def test_reused_fakes_need_one_critic_step():
    from distgan.config import ConfigError
    from distgan import load_config

    with pytest.raises(ConfigError, match="train.reuse_fakes: .*train.n_critic=1"):
        load_config(None, ("train.reuse_fakes=true", "train.n_critic=2"))


@pytest.mark.parametrize("overrides, reused", [
    ((), True),  # the default: auto, with one D step per G step
    (("train.n_critic=5",), False),  # WGAN-GP's critic steps: nothing to reuse, and no error
    (("deepspeed.g.gradient_accumulation_steps=2",), False),
    (("deepspeed.d.gradient_accumulation_steps=2",), False),
    (("train.reuse_fakes=false",), False),
    (("train.reuse_fakes=true",), True),
])
def test_auto_reuses_fakes_exactly_where_it_can(overrides, reused):
    from distgan import load_config
    from distgan.config import reuses_fakes

    assert reuses_fakes(load_config(None, overrides)) is reused


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_worker_at_zero_0_skips_the_gradient_all_reduce_and_trains_the_same(process_group, monkeypatch,
                                                                               precision):
    cfg = tiny_config(0, precision)
    fast = build_gan(cfg)
    reducing = build_gan(cfg)
    for engine in (reducing.engine_g, reducing.engine_d):
        assert engine.enable_backward_allreduce is False
        engine.enable_backward_allreduce = True  # DeepSpeed's default: the world-size-1 all-reduce
    reduced: list[int] = []
    all_reduce = torch.distributed.all_reduce
    monkeypatch.setattr(torch.distributed, "all_reduce",
                        lambda tensor, *a, **k: (reduced.append(tensor.numel()), all_reduce(tensor, *a, **k))[1])
    fast.step(real_batches(), 8)
    # bf16's optimizer still agrees on its overflow flag (one element); no gradient buffer is reduced.
    assert [n for n in reduced if n > 1] == [], "a one-worker ZeRO-0 step reduced gradients"
    reducing.step(real_batches(), 8)
    assert [n for n in reduced if n > 1], "the spy saw no gradient all-reduce where DeepSpeed issues one"
    for net in ("engine_g", "engine_d"):
        assert not moved(snapshot(getattr(fast, net)), snapshot(getattr(reducing, net))), net


def test_zero_1_keeps_its_reduction_path_at_one_worker(process_group):
    gan = build_gan(tiny_config(1))
    assert gan.engine_g.enable_backward_allreduce and gan.engine_d.enable_backward_allreduce

"""The super-resolution step on real DeepSpeed engines (in-process, world size 1).

Checks what can go wrong in an SRGAN step: a phase that moves the other
network, D's gradients leaking into G's step, G run twice per step, content
terms that are not what they claim.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distgan.tasks.super_resolution.step import STAT_NAMES, SuperResolutionGAN
from engine_steps import SR_SHAPE as SHAPE, build_sr as build, moved, pairs, snapshot, sr_config

def stats(gan: SuperResolutionGAN) -> dict[str, float]:
    return dict(zip(STAT_NAMES, gan.pop_stats().tolist()))


def test_psnr_stage_trains_g_alone_on_the_pixel_loss(process_group):
    gan = build(sr_config(adversarial_weight=0.0))
    assert gan.engine_d is None
    draw = pairs()
    lr, hr = draw()
    with torch.no_grad():
        expected = F.l1_loss(gan.engine_g.module(lr), hr).item()
    replay = iter([(lr, hr)])
    g0 = snapshot(gan.engine_g)
    gan.step(lambda: next(replay))
    s = stats(gan)
    assert s["loss_pixel"] == pytest.approx(expected, rel=1e-6)
    assert s["loss_g"] == pytest.approx(expected, rel=1e-6)
    assert math.isnan(s["loss_g_adv"]) and math.isnan(s["loss_d"])
    assert moved(g0, snapshot(gan.engine_g))


def test_psnr_stage_lowers_the_pixel_loss(process_group):
    gan = build(sr_config(adversarial_weight=0.0))
    draw = pairs()
    fixed = draw()
    losses = []
    for _ in range(30):
        gan.step(lambda: fixed)
        losses.append(stats(gan)["loss_pixel"])
    assert losses[-1] < 0.95 * losses[0]  # G starts at bicubic (conv_last zero); a G that never steps stays at 1.0


@pytest.mark.parametrize("stage, precision", [(0, "fp32"), (1, "fp32"), (2, "fp32"), (3, "fp32"), (2, "bf16"),
                                              (3, "bf16")])
def test_gan_step_moves_each_network_in_its_own_phase_only(process_group, stage, precision):
    gan = build(sr_config(stage, precision))
    draw = pairs()
    g0, d0 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    gan.measure_grad_norms = True
    stored = gan.g_phase(draw)
    g1, d1 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    assert moved(g0, g1), "G did not change in its phase"
    assert not moved(d0, d1), "D changed during G's phase"
    gan.d_phase(stored)
    g2, d2 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    assert moved(d1, d2), "D did not change in its phase"
    assert not moved(g1, g2), "G changed during D's phase"
    s = stats(gan)
    for name in ("loss_g", "loss_pixel", "loss_g_adv", "loss_d", "d_real", "d_fake"):
        assert math.isfinite(s[name]), name
    assert math.isfinite(gan.grad_norms["g"]) and math.isfinite(gan.grad_norms["d"])
    assert all(p.requires_grad for p in gan.engine_d.module.parameters()), "D left frozen after G's phase"


def test_one_generator_forward_per_step_serves_both_phases(process_group):
    gan = build(sr_config())
    calls = []
    gan.engine_g.module.register_forward_hook(lambda *_: calls.append(1))
    draw = pairs()
    for _ in range(3):
        gan.step(draw)
    assert len(calls) == 3


def test_d_sees_the_outputs_g_produced_in_the_same_step(process_group):
    """D's fakes are the G-step outputs, detached: no graph back into G."""
    gan = build(sr_config())
    stored = gan.g_phase(pairs())
    (hr, fake), = stored
    assert not fake.requires_grad and fake.shape == hr.shape == (4, *SHAPE)


def test_unet_discriminator_per_pixel_logits_train(process_group):
    gan = build(sr_config(discriminator="unet", loss="nonsaturating"))
    d0 = snapshot(gan.engine_d)
    gan.step(pairs())
    s = stats(gan)
    assert moved(d0, snapshot(gan.engine_d))
    assert 0.0 <= s["d_acc_real"] <= 1.0 and math.isfinite(s["loss_d"])


def test_bf16_content_loss_is_computed_in_fp32(process_group):
    gan = build(sr_config(precision="bf16", adversarial_weight=0.0))
    gan.step(pairs())
    s = stats(gan)
    assert math.isfinite(s["loss_pixel"]) and s["loss_pixel"] > 0


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_activation_checkpointing_gives_the_same_step_under_zero(process_group, stage):
    """Recomputed blocks under DeepSpeed (ZeRO-3 gathers partitioned weights again for the recomputation)."""
    results = []
    for checkpointing in (False, True):
        cfg = sr_config(stage, adversarial_weight=0.0)
        cfg.model.checkpointing = checkpointing
        gan = build(cfg)
        gan.step(pairs())
        results.append(snapshot(gan.engine_g))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert moved(snapshot(build(sr_config(stage, adversarial_weight=0.0)).engine_g), results[1])


def test_gradient_accumulation_steps_each_network_once_per_step_on_all_micro_batches(process_group):
    cfg = sr_config(2)
    cfg.deepspeed.g.gradient_accumulation_steps = cfg.deepspeed.d.gradient_accumulation_steps = 2
    gan = build(cfg)
    draw, drawn = pairs(), []

    def counted():
        drawn.append(1)
        return draw()

    g0, d0 = snapshot(gan.engine_g), snapshot(gan.engine_d)
    stored = gan.g_phase(counted)
    assert len(drawn) == 2 and len(stored) == 2, "G's step takes both micro-batches"
    assert moved(g0, snapshot(gan.engine_g)) and gan.engine_g.global_steps == 1
    gan.d_phase(stored)
    assert moved(d0, snapshot(gan.engine_d)) and gan.engine_d.global_steps == 1

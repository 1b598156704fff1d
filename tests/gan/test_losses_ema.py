"""Losses and the generator EMA, on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distgan.config import ConfigError
from distgan.gan.ema import GeneratorEMA
from distgan.gan.losses import LOSSES, build_loss


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_prefer_a_discriminator_that_separates(name):
    loss = build_loss(name)
    good = loss.d_loss(torch.full((4,), 3.0), torch.full((4,), -3.0))
    bad = loss.d_loss(torch.full((4,), -3.0), torch.full((4,), 3.0))
    assert good < bad
    # G gains by raising D's score of its fakes.
    real = torch.zeros(4)
    assert loss.g_loss(torch.full((4,), 2.0), real) < loss.g_loss(torch.full((4,), -2.0), real)


def test_nonsaturating_values():
    loss = build_loss("nonsaturating")
    zero = torch.zeros(3)
    assert loss.d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert loss.g_loss(zero).item() == pytest.approx(math.log(2))


# Hand-computed on real = [2, 0], fake = [-1, 1] (BasicSR style: tiny tensors, exact numbers).
REAL, FAKE = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("name, d_expected, g_expected", [
    # softplus(-r) + softplus(f), averaged; G: softplus(-f)
    ("nonsaturating", (softplus(-2) + softplus(0)) / 2 + (softplus(-1) + softplus(1)) / 2,
     (softplus(1) + softplus(-1)) / 2),
    # relu(1 - r) + relu(1 + f): reals [0, 1] -> 0.5, fakes [0, 2] -> 1.0; G: -mean f = 0
    ("hinge", 0.5 + 1.0, 0.0),
    # mean f - mean r = 0 - 1
    ("wgan", -1.0, 0.0),
    # 0.5 * (mean (r-1)^2 + mean f^2) = 0.5 * (1 + 1); G: 0.5 * mean (f-1)^2 = 0.5 * 2
    ("lsgan", 1.0, 1.0),
    # mean f = 0, mean r = 1: D: softplus(-(r - 0)) + softplus(f - 1); G: softplus(-(f - 1)) + softplus(r - 0)
    ("ragan", (softplus(-2) + softplus(0)) / 2 + (softplus(-2) + softplus(0)) / 2,
     (softplus(2) + softplus(0)) / 2 + (softplus(2) + softplus(0)) / 2),
])
def test_loss_values_by_hand(name, d_expected, g_expected):
    loss = build_loss(name)
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-6)
    assert loss.g_loss(FAKE, REAL).item() == pytest.approx(g_expected, rel=1e-6, abs=1e-7)


def test_d_accuracy_uses_each_losses_threshold():
    # Logits: reals [2, 0] fakes [-1, 1]; threshold 0 calls one real right and one fake right.
    acc_real, acc_fake = build_loss("nonsaturating").d_accuracy(REAL, FAKE)
    assert (acc_real.item(), acc_fake.item()) == (0.5, 0.5)
    # LSGAN's coding puts the boundary at 0.5: 2 > 0.5 (right), 0 (wrong); -1 < 0.5 (right), 1 (wrong).
    assert [t.item() for t in build_loss("lsgan").d_accuracy(REAL, FAKE)] == [0.5, 0.5]
    # Relativistic: a real is right when above the mean fake (-0.25), a fake when below the mean real (1),
    # so all four are right where a fixed threshold of 0 would call the real 0 wrong.
    fake = torch.tensor([-1.0, 0.5])
    assert [t.item() for t in build_loss("ragan").d_accuracy(REAL, fake)] == [1.0, 1.0]
    # A Wasserstein critic ranks too: shifting every score by a constant must not change its accuracy.
    assert [t.item() for t in build_loss("wgan").d_accuracy(REAL + 5, fake + 5)] == [1.0, 1.0]


def test_relativistic_generator_loss_needs_reals():
    with pytest.raises(ValueError, match="needs D's logits on a real batch"):
        build_loss("ragan").g_loss(FAKE)


def test_bf16_logits_give_fp32_losses():
    loss = build_loss("nonsaturating")
    assert loss.d_loss(torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32


def test_unknown_loss_names_key():
    with pytest.raises(ConfigError, match="loss.type: unknown adversarial loss 'hing'.*did you mean 'hinge'"):
        build_loss("hing")


def test_ema_half_life_and_rampup():
    ema = GeneratorEMA(nn.Linear(2, 2), half_life_kimg=1.0, rampup=None)
    # After exactly one half-life of images the old weights count half.
    assert ema.beta(images_seen=10**6, batch=1000) == pytest.approx(0.5)
    ramped = GeneratorEMA(nn.Linear(2, 2), half_life_kimg=1.0, rampup=0.1)
    assert ramped.beta(images_seen=2000, batch=100) == pytest.approx(0.5 ** (100 / 200))


def test_ema_tracks_source_and_copies_buffers():
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = GeneratorEMA(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), half_life_kimg=1.0, rampup=None)
    ema.copy_from(source)
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        source[0].weight.add_(1.0)
        source[1].running_mean.fill_(3.0)
    ema.update(source, images_seen=10**6, batch=1000)  # beta = 0.5
    assert torch.allclose(ema.module[0].weight, before + 0.5)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))
    assert not any(p.requires_grad for p in ema.module.parameters())

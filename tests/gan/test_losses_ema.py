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
    assert loss.g_loss(torch.full((4,), 2.0)) < loss.g_loss(torch.full((4,), -2.0))


def test_nonsaturating_values():
    loss = build_loss("nonsaturating")
    zero = torch.zeros(3)
    assert loss.d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert loss.g_loss(zero).item() == pytest.approx(math.log(2))


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

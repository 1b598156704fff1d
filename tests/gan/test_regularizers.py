"""Regularizers on a linear discriminator, whose input gradient is its weight vector: exact values by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distgan.config import ConfigError
from distgan import load_config
from distgan.gan.regularizers import REGULARIZERS, build_regularizer


def linear_d(weights: list[float]) -> nn.Module:
    d = nn.Sequential(nn.Flatten(), nn.Linear(len(weights), 1), nn.Flatten(0))
    with torch.no_grad():
        d[1].weight.copy_(torch.tensor([weights]))
        d[1].bias.fill_(0.5)
    return d


def test_r1_is_half_the_squared_input_gradient():
    d = linear_d([3.0, 4.0])  # grad D(x) = (3, 4) everywhere, |.|^2 = 25
    real = torch.randn(5, 2)
    assert build_regularizer("r1").penalty(d, real, None).item() == pytest.approx(12.5)


def test_gp_is_the_squared_distance_of_the_gradient_norm_from_one():
    d = linear_d([3.0, 4.0])  # |grad| = 5 at every interpolate
    penalty = build_regularizer("gp").penalty(d, torch.randn(5, 2), torch.randn(5, 2))
    assert penalty.item() == pytest.approx(16.0)
    assert build_regularizer("gp").penalty(linear_d([0.6, 0.8]), torch.randn(5, 2), torch.randn(5, 2)).item() \
        == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_penalty_trains_d_not_its_inputs(name):
    """The penalty's gradient reaches D's weights (create_graph kept), and it does not leak into the samples."""
    d = linear_d([3.0, 4.0])
    real, fake = torch.randn(4, 2), torch.randn(4, 2, requires_grad=True)
    build_regularizer(name).penalty(d, real, fake).backward()
    assert d[1].weight.grad is not None and d[1].weight.grad.abs().sum() > 0
    assert fake.grad is None, "the penalty must not train G through its fakes"
    # d/dw of 1/2|w|^2 is w; of (|w| - 1)^2 is 2(|w| - 1) w/|w| = 1.6 w.
    expected = torch.tensor([[3.0, 4.0]]) * (1.0 if name == "r1" else 1.6)
    assert torch.allclose(d[1].weight.grad, expected)


@pytest.mark.parametrize("overrides, needle", [
    (["loss.type=wgan"], "needs a Lipschitz discriminator"),
    (["loss.type=wgan", "loss.d_reg.type=gp", "loss.d_reg.interval=4"], "leaves the critic unbounded"),
    (["loss.d_reg.type=r1", "deepspeed.zero_stage=3"], "deepspeed.d.zero_stage"),
    (["model.d_spectral_norm=true"], "model.d_norm=none"),
    (["loss.d_reg.type=gpp"], "did you mean 'gp'"),
    (["loss.d_reg.type=r1", "loss.d_reg.weight=0"], "loss.d_reg.weight"),
])
def test_impossible_combinations_are_refused_with_the_reason(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, tuple(overrides))


@pytest.mark.parametrize("overrides", [
    ["loss.type=wgan", "loss.d_reg.type=gp", "train.n_critic=5", "model.d_norm=none"],
    ["loss.type=wgan", "model.d_spectral_norm=true", "model.d_norm=none"],
    ["loss.d_reg.type=r1", "loss.d_reg.interval=16", "deepspeed.zero_stage=3", "deepspeed.d.zero_stage=2"],
])
def test_sound_combinations_load(overrides):
    load_config(None, tuple(overrides))


def test_lazy_r1_rescales_only_d_adam():
    """StyleGAN2's correction: with interval k, D's lr x k/(k+1) and betas ** (k/(k+1)); G untouched."""
    from distgan.runtime.engines import deepspeed_config

    cfg = load_config(None, ("loss.d_reg.type=r1", "loss.d_reg.interval=16", "optim.d.lr=0.002",
                             "optim.d.betas=[0.0,0.99]"))
    d = deepspeed_config(cfg, "d", 2, False)["optimizer"]["params"]
    g = deepspeed_config(cfg, "g", 2, False)["optimizer"]["params"]
    ratio = 16 / 17
    assert d["lr"] == pytest.approx(0.002 * ratio)
    assert d["betas"] == pytest.approx([0.0, 0.99 ** ratio])
    assert g["lr"] == cfg.optim.g.lr and g["betas"] == list(cfg.optim.g.betas)
    every_step = load_config(None, ("loss.d_reg.type=r1", "optim.d.lr=0.002"))
    assert deepspeed_config(every_step, "d", 2, False)["optimizer"]["params"]["lr"] == 0.002

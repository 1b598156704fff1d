"""Model families: shapes, init, depth, dtypes and the config checks, on tiny networks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from distgan import models
from distgan.data import data_shape
from distgan.config import Config, ConfigError, ModelConfig


def model_cfg(family: str, **overrides) -> ModelConfig:
    base = dict(family=family, latent_dim=8, g_width=8, d_width=8)
    return ModelConfig(**{**base, **overrides})


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


SHAPES = [("mlp", (2,)), ("mlp", (1, 16, 16)), ("dcgan", (1, 8, 8)), ("dcgan", (3, 8, 8)),
          ("dcgan", (1, 16, 16)), ("dcgan", (3, 16, 16)), ("dcgan", (1, 32, 32)), ("dcgan", (3, 32, 32))]


@pytest.mark.parametrize("family, shape", SHAPES, ids=lambda v: str(v))
def test_generator_and_discriminator_shapes(family, shape):
    cfg = model_cfg(family)
    g, d = models.build_generator(cfg, shape), models.build_discriminator(cfg, shape)
    assert g.latent_dim == 8
    fake = g(torch.randn(5, g.latent_dim))
    assert fake.shape == (5, *shape)
    logits = d(fake)
    assert logits.shape == (5,)
    # One sample must still give a 1-D batch, not a scalar (in eval mode: BatchNorm cannot train on one).
    assert d.eval()(fake[:1]).shape == (1,)


@pytest.mark.parametrize("family, shape", [("mlp", (1, 8, 8)), ("dcgan", (3, 16, 16))])
def test_image_generators_end_in_tanh(family, shape):
    g = models.build_generator(model_cfg(family), shape)
    with torch.no_grad():
        # Huge weights push any unbounded output far outside [-1, 1] (BatchNorm would undo huge latents).
        for p in g.parameters():
            p.mul_(100)
        out = g(torch.randn(16, g.latent_dim))
    assert out.abs().max() <= 1.0
    assert out.abs().max() > 0.5


def test_point_generator_is_unbounded():
    g = models.build_generator(model_cfg("mlp", g_norm="none"), (2,))
    with torch.no_grad():
        # ring8 points sit at radius 2, so a tanh-capped generator could never reach them.
        out = g(1e4 * torch.randn(64, g.latent_dim))
    assert out.abs().max() > 1.0


@pytest.mark.parametrize("family, shape", [("mlp", (2,)), ("dcgan", (1, 16, 16))])
def test_same_seed_gives_identical_weights(family, shape):
    cfg = model_cfg(family, g_norm="batch", d_norm="batch")

    def build(seed: int) -> dict:
        torch.manual_seed(seed)
        state = models.build_generator(cfg, shape).state_dict()
        state.update({f"d.{k}": v for k, v in models.build_discriminator(cfg, shape).state_dict().items()})
        return state

    a, b, c = build(1), build(1), build(2)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_dcgan_init_follows_radford():
    torch.manual_seed(0)
    g = models.build_generator(model_cfg("dcgan", g_width=32, g_norm="batch"), (1, 32, 32))
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert convs and bns
    assert convs[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.cat([b.weight for b in bns]).mean().item() == pytest.approx(1.0, abs=0.01)
    assert all(b.bias.abs().sum() == 0 for b in bns)


@pytest.mark.parametrize("family, shape", [("mlp", (2,)), ("dcgan", (1, 16, 16))])
def test_depth_adds_layers(family, shape):
    shallow, deep = model_cfg(family), model_cfg(family, g_depth=2, d_depth=1)
    assert num_params(models.build_generator(deep, shape)) > num_params(models.build_generator(shallow, shape))
    assert (num_params(models.build_discriminator(deep, shape))
            > num_params(models.build_discriminator(shallow, shape)))
    assert models.build_generator(deep, shape)(torch.randn(3, 8)).shape == (3, *shape)


def test_dcgan_channels_halve_and_are_capped():
    g = models.build_generator(model_cfg("dcgan", g_width=4), (1, 128, 128))
    d = models.build_discriminator(model_cfg("dcgan", d_width=4), (1, 128, 128))
    ups = [m.out_channels for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    downs = [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert ups == [32, 32, 16, 8, 4]  # 4 -> 128 px is 5 up-blocks; the 4x4 map holds 8 x width
    assert downs == [4, 8, 16, 32, 32]


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("family, shape", [("mlp", (2,)), ("mlp", (1, 8, 8)), ("dcgan", (3, 16, 16))])
def test_bf16_forward_and_backward(family, shape, norm):
    cfg = model_cfg(family, g_norm=norm, d_norm=norm)
    g = models.build_generator(cfg, shape).to(torch.bfloat16)
    d = models.build_discriminator(cfg, shape).to(torch.bfloat16)
    logits = d(g(torch.randn(4, 8, dtype=torch.bfloat16)))
    assert logits.dtype == torch.bfloat16 and logits.shape == (4,)
    logits.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad.float()).all() for p in g.parameters())


def config(**sections) -> Config:
    cfg = Config()
    for section, values in sections.items():
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **values))
    return cfg


def check(cfg: Config) -> None:
    """The family's check on the shape the data registry gives (what the generation task runs)."""
    models.check(cfg, data_shape(cfg.data))


def test_check_accepts_the_defaults():
    check(Config())
    check(config(model={"family": "mlp"}, data={"name": "ring8"}))
    check(config(model={"family": "mlp"}, data={"resolution": 8}))


def test_dcgan_on_points_names_the_family():
    with pytest.raises(ConfigError, match=r"model.family: dcgan needs image data.*'ring8'.*model.family=mlp"):
        check(config(data={"name": "ring8"}))


@pytest.mark.parametrize("resolution", [24, 4, 48])
def test_dcgan_resolution_must_be_a_power_of_two(tmp_path, resolution):
    with pytest.raises(ConfigError, match=rf"data.resolution: .*power of two.*got {resolution}"):
        check(config(data={"path": str(tmp_path), "resolution": resolution}))


def test_unknown_family_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"model.family: unknown model family 'dcgn'.*did you mean 'dcgan'"):
        check(config(model={"family": "dcgn"}))
    with pytest.raises(ConfigError, match="choose one of dcgan, mlp"):
        models.build_generator(model_cfg("stylegan"), (1, 8, 8))

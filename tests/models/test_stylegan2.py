"""The StyleGAN2 family on tiny networks: layer math (equalized lr, demodulation, minibatch std), the mapping's
w_avg and truncation, style mixing, conditioning, gradients, seeding, the config check and the export."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distgan import load_config, models
from distgan.config import Config, ConfigError, ModelConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.models.conditional import ConcatDiscriminator, ProjectionDiscriminator
from distgan.models.stylegan2 import (StyleGAN2Discriminator, StyleGAN2Generator, channels_at, draw_crossover)
from distgan.models.stylegan2_layers import EqualConv2d, EqualLinear, MinibatchStd, ModulatedConv2d
from distgan.persist.export import load_generator, save_generator
from distgan.runtime.loop import RunInfo
from distgan.tasks import build_trainer
from sessions import LocalSession

Z = 8


def model_cfg(**overrides) -> ModelConfig:
    style = dict(w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    style.update(overrides.pop("stylegan2", {}))
    return ModelConfig(**{"family": "stylegan2", "latent_dim": Z, "embed_dim": 4, **overrides},
                       stylegan2=StyleGAN2Config(**style))


def build(shape=(3, 16, 16), num_classes: int = 0, seed: int = 0, **overrides):
    cfg = model_cfg(**overrides)
    torch.manual_seed(seed)
    return (models.build_generator(cfg, shape, num_classes), models.build_discriminator(cfg, shape, num_classes))


# -- shapes and channels -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 16, 16), (3, 32, 32), (1, 64, 64)], ids=str)
def test_generator_and_discriminator_shapes(shape):
    g, d = build(shape)
    assert isinstance(g, StyleGAN2Generator) and isinstance(d, StyleGAN2Discriminator)
    assert g.latent_dim == Z
    assert g.num_ws == 2 * int(math.log2(shape[-1])) - 2  # two convs per doubling, one at 4x4, the last ToRGB
    fake = g(torch.randn(4, Z))
    assert fake.shape == (4, *shape) and torch.isfinite(fake).all()
    assert d(fake).shape == (4,)
    assert d(fake[:3]).shape == (3,)  # a batch the mbstd group size does not divide still works
    ws = g.mapping(torch.randn(2, Z))
    assert ws.shape == (2, g.num_ws, 8)
    assert g.synthesis(ws, noise_mode="none").shape == (2, *shape)


def test_channels_follow_base_over_resolution_capped_at_max():
    cfg = model_cfg(stylegan2=dict(channel_base=256, channel_max=32))
    assert [channels_at(r, cfg.stylegan2) for r in (4, 8, 16, 32, 64)] == [32, 32, 16, 8, 4]
    g = models.build_generator(cfg, (3, 64, 64))
    assert [b.conv1.conv.out_channels for b in g.synthesis.blocks] == [32, 32, 16, 8, 4]
    d = models.build_discriminator(cfg, (3, 64, 64))
    assert d.blocks[0].fromrgb.out_channels == 4 and d.conv.out_channels == 32
    assert [b.conv1.out_channels for b in d.blocks] == [8, 16, 32, 32]


# -- layer math -------------------------------------------------------------------------------------


def test_equalized_lr_scales_weights_at_run_time():
    torch.manual_seed(0)
    fc = EqualLinear(400, 3, bias_init=0.5, lr_mult=0.01)
    # Stored N(0, 1) / lr_mult, so Adam's scale-free steps move every layer equally fast (times lr_mult).
    assert fc.weight.std().item() == pytest.approx(100.0, rel=0.1)
    assert fc.weight_gain == pytest.approx(0.01 / math.sqrt(400))
    x = torch.randn(5, 400)
    assert torch.allclose(fc(x), x @ (fc.weight * 0.01 / 20.0).t() + 0.5 * 0.01, atol=1e-5)

    conv = EqualConv2d(6, 4, 3)
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(6 * 3 * 3))
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 6, 8, 8)
    expected = F.conv2d(x, conv.weight / math.sqrt(54), conv.bias, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    g = models.build_generator(model_cfg(), (3, 16, 16))
    assert all(layer.weight_gain == pytest.approx(0.01 / math.sqrt(layer.in_features)) for layer in g.mapping.layers)


def test_demodulation_matches_a_hand_computed_case():
    conv = ModulatedConv2d(2, 1, 1, w_dim=3)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).reshape(1, 2, 1, 1))
        conv.affine.weight.zero_()
        conv.affine.bias.copy_(torch.tensor([3.0, 0.5]))  # styles s = (3, 0.5) for any w
    x = torch.tensor([1.0, 4.0]).reshape(1, 2, 1, 1)
    # w' = s w / ||s w||: (6, -0.5) / sqrt(36.25); the 1/sqrt(fan_in) gain cancels out (eq. 3)
    expected = (6.0 * 1.0 - 0.5 * 4.0) / math.sqrt(36.25)
    assert conv(x, torch.randn(1, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_demodulation_gives_unit_variance_outputs_for_unit_variance_inputs():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 16, 3, w_dim=8)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.2, 5.0, 16).reshape(16, 1, 1, 1))  # output channels of unequal scale
        conv.affine.bias.fill_(3.0)  # styles far from 1, and unequal across samples (w of growing size)
    x, w = torch.randn(8, 64, 16, 16), torch.randn(8, 8) * torch.linspace(0.5, 4.0, 8)[:, None]
    with torch.no_grad():
        out = conv(x, w)[:, :, 1:-1, 1:-1]  # the border sees zero padding
        conv.demodulate = False
        plain = conv(x, w)[:, :, 1:-1, 1:-1]
    # Unit variance for every output channel and every sample (demodulation is per sample, eq. 3) ...
    assert out.var(dim=(0, 2, 3)).sub(1).abs().max().item() < 0.15
    assert out.var(dim=(1, 2, 3)).sub(1).abs().max().item() < 0.15
    # ... which plain modulation is far from.
    assert plain.var(dim=(0, 2, 3)).max().item() > 10 * plain.var(dim=(0, 2, 3)).min().item()


def test_minibatch_std_adds_the_group_std_channel():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0]).reshape(4, 1, 1, 1).repeat(1, 2, 2, 2)
    x[:, 1] *= 3  # a second channel with 3x the spread
    out = MinibatchStd(group_size=2, num_channels=1)(x)
    assert out.shape == (4, 3, 2, 2) and torch.equal(out[:, :2], x)
    # Sample i joins group i mod 2: {1, 3} and {2, 6}; population std per feature, averaged over channels.
    # The population std of a pair is half its gap: 1 and 2 in channel 0, three times that in channel 1.
    g0, g1 = (1.0 + 3.0) / 2, (2.0 + 6.0) / 2
    expected = torch.tensor([g0, g1, g0, g1]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert torch.allclose(out[:, 2:], expected, atol=1e-3)
    assert MinibatchStd(group_size=4, num_channels=2)(torch.randn(8, 4, 3, 3)).shape == (8, 6, 3, 3)


# -- mapping: w_avg, truncation, style mixing ------------------------------------------------------------


def test_w_avg_moves_toward_the_mapping_outputs_in_training_only():
    g, _ = build(stylegan2=dict(w_avg_beta=0.9))
    z = torch.randn(16, Z)
    assert torch.equal(g.mapping.w_avg, torch.zeros(8))
    g.train()
    ws = g.mapping(z)
    assert torch.allclose(g.mapping.w_avg, 0.1 * ws[:, 0].mean(0), atol=1e-6)
    before = g.mapping.w_avg.clone()
    g.mapping(z, update_w_avg=False)  # a style-mixing second mapping leaves it alone
    assert torch.equal(g.mapping.w_avg, before)
    g.eval()
    g(z)
    assert torch.equal(g.mapping.w_avg, before)


def test_truncation_psi_zero_gives_w_avg_and_one_leaves_w_unchanged():
    g, _ = build()
    g.train()
    for _ in range(3):
        g.mapping(torch.randn(16, Z))
    g.eval()
    z = torch.randn(4, Z)
    ws = g.mapping(z)
    assert torch.equal(g.mapping(z, truncation_psi=1.0), ws)
    assert torch.allclose(g.mapping(z, truncation_psi=0.0), g.mapping.w_avg.expand_as(ws))
    assert torch.allclose(g.mapping(z, truncation_psi=0.5), (ws + g.mapping.w_avg) / 2, atol=1e-6)
    with torch.no_grad():
        images = g(z, truncation_psi=0.0, noise_mode="const")
    assert torch.allclose(images, images[:1].expand_as(images), atol=1e-6)
    assert not torch.allclose(g(z, noise_mode="const")[0], g(z, noise_mode="const")[1])


def test_style_mixing_takes_the_later_styles_from_the_second_latent():
    g, _ = build()
    g.eval()
    z, z_mix = torch.randn(3, Z), torch.randn(3, Z)
    ws, ws_mix = g.mapping(z), g.mapping(z_mix)
    mixed = g.mix_styles(ws, z_mix, 2)
    assert torch.equal(mixed[:, :2], ws[:, :2]) and torch.equal(mixed[:, 2:], ws_mix[:, 2:])
    assert g.mix_styles(ws, z_mix, g.num_ws) is ws
    expected = g.synthesis(mixed, noise_mode="const")
    assert torch.allclose(g(z, z_mix=z_mix, crossover=2, noise_mode="const"), expected)
    gen = torch.Generator().manual_seed(0)
    assert {draw_crossover(6, 0.0, gen) for _ in range(20)} == {6}
    assert {draw_crossover(6, 1.0, gen) for _ in range(200)} == {1, 2, 3, 4, 5}


# -- conditioning, gradients, seeding ---------------------------------------------------------------------


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_conditional_networks_take_labels_and_labels_change_the_output(conditioning):
    g, d = build((1, 16, 16), num_classes=5, conditional=True, d_conditioning=conditioning)
    assert isinstance(g, StyleGAN2Generator) and g.num_classes == 5  # labels go into the mapping, not a wrapper
    assert isinstance(d, ProjectionDiscriminator if conditioning == "projection" else ConcatDiscriminator)
    g.eval()
    z, y0, y3 = torch.randn(4, Z), torch.zeros(4, dtype=torch.long), torch.full((4,), 3)
    a, b = g(z, y0, noise_mode="const"), g(z, y3, noise_mode="const")
    assert a.shape == (4, 1, 16, 16) and not torch.allclose(a, b), "G ignores its labels"
    if conditioning == "projection":  # the class term starts small: make it visible
        torch.nn.init.normal_(d.embed.weight)
    assert d(a, y0).shape == (4,)
    assert not torch.allclose(d(a, y0), d(a, y3)), "D ignores its labels"
    with pytest.raises(ValueError, match="conditional on 5 classes"):
        g(z)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_one_backward_reaches_every_parameter_of_g_and_d(num_classes):
    g, d = build((3, 16, 16), num_classes=num_classes, conditional=bool(num_classes))
    z = torch.randn(4, Z)
    labels = torch.tensor([0, 1, 2, 0]) if num_classes else None
    fake = g(z) if labels is None else g(z, labels)
    logits = d(fake) if labels is None else d(fake, labels)
    logits.square().mean().backward()
    for name, p in [*(("G." + n, p) for n, p in g.named_parameters()),
                    *(("D." + n, p) for n, p in d.named_parameters())]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        g, _ = build(checkpointing=checkpointing)
        torch.manual_seed(1)  # the same random noise; the recomputation must redraw exactly it
        g(torch.randn(2, Z)).square().mean().backward()
        grads.append({n: p.grad for n, p in g.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_same_seed_gives_identical_networks():
    def state(seed: int) -> dict:
        g, d = build(seed=seed)
        return {**g.state_dict(), **{f"d.{k}": v for k, v in d.state_dict().items()}}

    a, b, c = state(1), state(1), state(2)
    assert any(k.endswith("noise_const") for k in a), "const noise must be saved with the weights"
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a if k.endswith(".weight"))


# -- config check and export ------------------------------------------------------------------------------


def config(**model) -> Config:
    cfg = Config()
    cfg.model = dataclasses.replace(model_cfg(), **model)
    return cfg


@pytest.mark.parametrize("resolution", [8, 24, 2048])
def test_check_refuses_a_resolution_it_cannot_make(resolution):
    with pytest.raises(ConfigError, match=rf"data.resolution: stylegan2 needs a power of two from 16 to 1024, "
                                          rf"got {resolution}"):
        models.check(config(), (3, resolution, resolution))


@pytest.mark.parametrize("stylegan2, message", [
    (dict(mapping_layers=0), r"model.stylegan2.mapping_layers"),
    (dict(channel_base=0), r"model.stylegan2.channel_base"),
    (dict(channel_base=16), r"model.stylegan2.channel_base: 16 leaves no channels at 32 px"),
    (dict(channel_max=-1), r"model.stylegan2.channel_max"),
    (dict(mbstd_channels=3), r"model.stylegan2.mbstd_channels: must divide D's 16 channels"),
    (dict(style_mixing_prob=1.5), r"model.stylegan2.style_mixing_prob"),
    (dict(w_avg_beta=1.0), r"model.stylegan2.w_avg_beta"),
])
def test_check_names_the_bad_key(stylegan2, message):
    cfg = config(stylegan2=dataclasses.replace(model_cfg().stylegan2, **stylegan2))
    with pytest.raises(ConfigError, match=message):
        models.check(cfg, (3, 32, 32))


def test_check_accepts_a_good_setup_and_refuses_points_and_spectral_norm():
    models.check(config(), (3, 32, 32))
    models.check(config(stylegan2=StyleGAN2Config()), (1, 1024, 1024))  # the full-size defaults
    with pytest.raises(ConfigError, match=r"model.family: stylegan2 needs image data"):
        models.check(config(), (2,))
    with pytest.raises(ConfigError, match=r"model.d_spectral_norm"):
        models.check(config(d_spectral_norm=True), (3, 32, 32))


@pytest.mark.parametrize("num_classes", [0, 4])
def test_exported_generator_rebuilds_from_generator_json(tmp_path, num_classes):
    cfg = model_cfg(conditional=bool(num_classes))
    torch.manual_seed(0)
    g = models.build_generator(cfg, (3, 16, 16), num_classes)
    g.train()
    g.mapping(torch.randn(8, Z), torch.arange(8) % 4 if num_classes else None)  # a non-zero w_avg to carry
    full = Config(model=cfg).to_dict()
    save_generator(tmp_path, g, {"model": full["model"], "data_shape": [3, 16, 16], "num_classes": num_classes})
    loaded, meta = load_generator(tmp_path)
    assert meta["model"]["stylegan2"]["channel_max"] == 16
    assert torch.equal(loaded.mapping.w_avg, g.mapping.w_avg)
    z = torch.randn(4, Z)
    labels = (torch.arange(4) % 4,) if num_classes else ()
    g.eval()
    with torch.no_grad():
        for psi in (1.0, 0.5):
            expected = g(z, *labels, truncation_psi=psi, noise_mode="const")
            assert torch.equal(loaded(z, *labels, truncation_psi=psi, noise_mode="const"), expected)


def test_bf16_forward_and_backward():
    g, d = build()
    g, d = g.to(torch.bfloat16), d.to(torch.bfloat16)
    logits = d(g(torch.randn(4, Z, dtype=torch.bfloat16)))
    assert logits.dtype == torch.bfloat16 and logits.shape == (4,)
    logits.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad.float()).all() for p in g.parameters())


def test_the_shipped_config_trains_under_zero3_and_exports(process_group, tmp_path):
    """Two real steps through DeepSpeed engines (G partitioned by ZeRO-3, every parameter, with activation
    checkpointing; conditional; path-length regularisation needs whole
    weights, so it is off here), then the export rebuilds from generator.json."""
    shipped = Path(__file__).resolve().parents[2] / "configs" / "stylegan2_digits.yaml"
    cfg = load_config(shipped, ("train.steps=2", "train.batch_size=8", "train.log_every=1", "train.sample_every=2",
                                "train.checkpoint_every=2", "eval.every=0", "tracking.wandb=false",
                                "scaling.num_workers=1", "loss.d_reg.interval=2", "model.conditional=true",
                                "model.checkpointing=true", "deepspeed.g.zero_stage=3", "loss.g_reg.type=none",
                                "deepspeed.param_persistence_threshold=0", "model.stylegan2.channel_base=128",
                                "model.stylegan2.channel_max=16"))
    run = tmp_path / "sg2"
    run.mkdir()
    build_trainer(cfg, RunInfo(run, "sg2", "sg2"), LocalSession(tmp_path / "store")).run()
    generator, meta = load_generator(run)
    assert isinstance(generator, StyleGAN2Generator) and meta["num_classes"] == 10 and meta["step"] == 2
    assert generator.mapping.w_avg.abs().sum() > 0, "training-mode mappings must have moved w_avg"
    images = generator(torch.randn(3, 64), torch.tensor([1, 2, 3]), noise_mode="const")
    assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all()

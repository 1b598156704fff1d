"""Super-resolution families (srresnet, rrdb) and their discriminators, on tiny networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from distgan import models
from distgan.config import Config, ConfigError, ModelConfig, build_section
from distgan import load_config
from distgan.data import DATASETS, data_shape
from distgan.models.rrdb import RRDBNet
from distgan.models.sr_discriminators import UNetDiscriminator, VGGDiscriminator, vgg_layout
from distgan.models.srresnet import SRResNet

FAMILIES = ["srresnet", "rrdb"]


def model_cfg(family: str, **overrides) -> ModelConfig:
    base = dict(family=family, g_width=8, d_width=8, blocks=2, growth=4, scale=4)
    return ModelConfig(**{**base, **overrides})


def lr_image(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) * 2 - 1


# -- Shapes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_upscales_any_size(family, scale, channels):
    g = models.build_generator(model_cfg(family, scale=scale, blocks=1), (channels, 8 * scale, 8 * scale))
    assert g.scale == scale and g.in_channels == channels
    assert g(lr_image(2, channels, 8, 8)).shape == (2, channels, 8 * scale, 8 * scale)
    # Fully convolutional: a non-square image of another size than the training crop.
    assert g(lr_image(1, channels, 6, 10)).shape == (1, channels, 6 * scale, 10 * scale)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("resolution", [16, 48])
def test_vgg_discriminator_gives_one_logit_per_image(family, resolution):
    cfg = model_cfg(family, discriminator="vgg", scale=2)
    d = models.build_discriminator(cfg, (3, resolution, resolution))
    assert isinstance(d, VGGDiscriminator)
    assert d(lr_image(4, 3, resolution, resolution)).shape == (4,)
    assert d.eval()(lr_image(1, 3, resolution, resolution)).shape == (1,)  # one image: still 1-D
    with pytest.raises(ValueError, match="built for"):
        d(lr_image(1, 3, resolution + 8, resolution))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(16, 16), (32, 32), (16, 40)])
def test_unet_discriminator_gives_one_logit_per_pixel(family, size):
    d = models.build_discriminator(model_cfg(family, discriminator="unet"), (3, 32, 32))
    assert isinstance(d, UNetDiscriminator)
    assert d(lr_image(2, 3, *size)).shape == (2, 1, *size)
    with pytest.raises(ValueError, match="divisible by 8"):
        d(lr_image(1, 3, 20, 16))


@pytest.mark.parametrize("resolution, layout", [(8, (1, 4)), (32, (3, 4)), (48, (3, 6)), (96, (4, 6)),
                                                (128, (5, 4)), (20, (2, 5)), (4, None), (36, None), (100, None)])
def test_vgg_layout_ends_in_a_4_to_7_px_map(resolution, layout):
    assert vgg_layout(resolution) == layout


def test_vgg_channels_double_and_are_capped():
    d = VGGDiscriminator(3, 128, width=4)
    assert [stage.conv1.out_channels for stage in d.stages] == [4, 8, 16, 32, 32]
    assert d.head.fc1.in_features == 32 * 4 * 4


# -- Init and the bicubic skip ---------------------------------------------------------------------------


def test_srresnet_starts_exactly_at_matlab_bicubic_and_learns_a_residual_over_it():
    from distgan.data.resize import imresize

    g = SRResNet(3, width=8, blocks=2, scale=4, norm=False)
    x = lr_image(2, 3, 8, 12)
    out = g(x)
    # conv_last starts at zero: the output is the bicubic skip alone, which is MATLAB's kernel (a = -0.5)
    # and so equals imresize away from the border (3 LR pixels of taps -> 12 HR pixels).
    inner = (..., slice(12, -12), slice(12, -12))
    reference = imresize(x.double(), 4).float()
    assert (out - reference)[inner].abs().max() < 1e-5
    assert (out - F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False))[inner].abs().max() > 1e-3
    with torch.no_grad():
        g.conv_last.weight.normal_()
    assert not torch.equal(g(x), out)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("discriminator", ["vgg", "unet"])
def test_same_seed_gives_identical_weights(family, discriminator):
    cfg = model_cfg(family, discriminator=discriminator, g_norm="batch", d_norm="batch")

    def build(seed: int) -> dict:
        torch.manual_seed(seed)
        state = models.build_generator(cfg, (3, 32, 32)).state_dict()
        state.update({f"d.{k}": v for k, v in models.build_discriminator(cfg, (3, 32, 32)).state_dict().items()})
        return state

    a, b, c = build(1), build(1), build(2)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_residual_branches_start_scaled_down():
    torch.manual_seed(0)
    g = RRDBNet(3, width=64, blocks=1, growth=32, scale=2)
    kaiming_std = (2 / (1 + 0.2 ** 2) / (64 * 9)) ** 0.5  # LeakyReLU(0.2) gain over a 64-channel 3x3 fan-in
    assert g.body[0].rdb1.conv1.weight.std().item() == pytest.approx(0.1 * kaiming_std, rel=0.05)
    assert g.conv_body.weight.std().item() == pytest.approx(kaiming_std, rel=0.05)
    assert g.body[0].rdb1.conv1.bias.abs().sum() == 0


# -- RRDBNet: the published ESRGAN layout ----------------------------------------------------------------


def esrgan_x4_shapes(width: int = 64, growth: int = 32, blocks: int = 23) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ESRGAN's RRDB_ESRGAN_x4 state dict (BasicSR key names), written out from the paper."""
    shapes: dict[str, tuple[int, ...]] = {"conv_first.weight": (width, 3, 3, 3), "conv_first.bias": (width,)}
    for i in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                out = width if c == 5 else growth
                shapes[f"body.{i}.rdb{r}.conv{c}.weight"] = (out, width + (c - 1) * growth, 3, 3)
                shapes[f"body.{i}.rdb{r}.conv{c}.bias"] = (out,)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (width, width, 3, 3), (width,)
    shapes["conv_last.weight"], shapes["conv_last.bias"] = (3, width, 3, 3), (3,)
    return shapes


def test_rrdb_x4_matches_the_published_esrgan_layout():
    cfg = model_cfg("rrdb", g_width=64, blocks=23, growth=32, scale=4)
    g = models.build_generator(cfg, (3, 128, 128))
    expected = esrgan_x4_shapes()
    state = g.state_dict()
    assert len(state) == len(expected) == 702
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in g.parameters()) == 16_697_987
    # A converted published state dict (here: random tensors of the published shapes) loads strictly.
    published = {k: torch.randn(shape) for k, shape in expected.items()}
    g.load_state_dict(published, strict=True)
    assert torch.equal(g.body[22].rdb3.conv5.weight, published["body.22.rdb3.conv5.weight"])


@pytest.mark.parametrize("scale, ups", [(2, ["conv_up1"]), (4, ["conv_up1", "conv_up2"]),
                                        (8, ["conv_up1", "conv_up2", "conv_up3"])])
def test_rrdb_has_one_upsampling_conv_per_factor_of_two(scale, ups):
    g = RRDBNet(3, width=8, blocks=1, growth=4, scale=scale)
    assert sorted({k.split(".")[0] for k in g.state_dict() if k.startswith("conv_up")}) == ups


# -- Activation checkpointing ----------------------------------------------------------------------------


def with_block_calls(g: torch.nn.Module, step: Callable[[], Any]) -> tuple[Any, list[int]]:
    """``step()``'s result and how often each of G's blocks started a forward meanwhile."""
    calls = [0] * len(g.body)
    # A pre-hook: checkpoint's recomputation stops early, once it has what backward needs, so a block's
    # forward may never return the second time and a post-forward hook would not see it.
    hooks = [block.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, block in enumerate(g.body)]
    try:
        return step(), calls
    finally:
        for h in hooks:
            h.remove()


def forward_backward(g: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    out = g(x)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in g.named_parameters()}


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpointing_recomputes_blocks_with_identical_results(family):
    shape = (3, 32, 32)
    torch.manual_seed(0)
    plain = models.build_generator(model_cfg(family, g_norm="batch", checkpointing=False), shape).train()
    torch.manual_seed(0)
    ckpt = models.build_generator(model_cfg(family, g_norm="batch", checkpointing=True), shape).train()
    x = lr_image(2, 3, 8, 8)

    (out_a, grads_a), calls_a = with_block_calls(plain, lambda: forward_backward(plain, x))
    (out_b, grads_b), calls_b = with_block_calls(ckpt, lambda: forward_backward(ckpt, x))
    assert calls_a == [1, 1] and calls_b == [2, 2]  # each block once more, in the backward pass
    assert torch.allclose(out_a, out_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6), name
    # The recomputation must not fold the batch into BatchNorm's running statistics a second time.
    buffers_a, buffers_b = dict(plain.named_buffers()), dict(ckpt.named_buffers())
    assert bool(buffers_a) == (family == "srresnet")  # RRDBNet has no BatchNorm
    assert buffers_a.keys() == buffers_b.keys()
    assert all(torch.equal(buffers_a[k], buffers_b[k]) for k in buffers_a)

    # No backward to come (eval mode, or no_grad): checkpointing would only cost, so blocks run once.
    _, calls_eval = with_block_calls(ckpt.eval(), lambda: forward_backward(ckpt, x))
    with torch.no_grad():
        _, calls_no_grad = with_block_calls(ckpt.train(), lambda: ckpt(x))
    assert calls_eval == [1, 1] and calls_no_grad == [1, 1]


# -- The U-Net's spectral norm ---------------------------------------------------------------------------


def test_unet_has_spectral_norm_on_all_but_first_and_last_conv():
    torch.manual_seed(0)
    d = UNetDiscriminator(3, width=8).train()
    normalized = ["down1", "down2", "down3", "up1", "up2", "up3", "refine1", "refine2"]
    assert [n for n, m in d.named_children() if parametrize.is_parametrized(m, "weight")] == normalized
    assert not parametrize.is_parametrized(d.conv0) and not parametrize.is_parametrized(d.conv_last)

    layers = [getattr(d, n) for n in normalized]
    x = lr_image(2, 3, 8, 8)
    with torch.no_grad():
        # Arbitrary, large weights: a few train-mode forwards (one power iteration each) bring every
        # effective weight's largest singular value back to about 1.
        for layer in layers:
            layer.parametrizations.weight.original.copy_(3 * torch.randn_like(layer.weight))
        for _ in range(50):
            d(x)
    for layer in layers:
        original = layer.parametrizations.weight.original.flatten(1)
        assert torch.linalg.matrix_norm(original, ord=2) > 10
        assert torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_unet_refuses_a_second_spectral_norm():
    with pytest.raises(ConfigError, match="model.d_spectral_norm: the unet discriminator already"):
        models.build_discriminator(model_cfg("rrdb", discriminator="unet", d_spectral_norm=True), (3, 32, 32))


# -- Config checks ---------------------------------------------------------------------------------------


def unvalidated(family: str, resolution: int, **model) -> Config:
    """A Config built without validation, for the family's check with an explicit data shape."""
    return build_section(Config, {"model": {"family": family, **model}, "data": {"resolution": resolution}}, "")


def family_check(family: str, resolution: int, channels: int = 3, **model) -> None:
    models.MODELS.get(family).check(unvalidated(family, resolution, **model), (channels, resolution, resolution))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("resolution, model", [
    (96, dict(scale=4)), (128, dict(scale=4)), (64, dict(scale=8, discriminator="unet")),
    (72, dict(scale=2, discriminator="unet")), (20, dict(scale=2)),
    (32, dict(scale=2, discriminator="vgg", d_spectral_norm=True, d_norm="none")),
])
def test_check_accepts_valid_setups(family, resolution, model):
    family_check(family, resolution, **model)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("resolution, model, message", [
    (96, dict(scale=3), r"model.scale: .* 2, 4 or 8, got 3"),
    (96, dict(blocks=0), r"model.blocks: .*at least one .*got 0"),
    (96, dict(conditional=True), r"model.conditional: .*not supported"),
    (36, dict(scale=8), r"data.resolution: .*multiple of model.scale=8.*got 36"),
    (28, dict(scale=4), r"data.resolution: the low-resolution crop .* 7\) must be at least 8"),
    (72, dict(scale=2, discriminator="vgg"), r"data.resolution: the vgg discriminator .*got 72.*unet"),
    (20, dict(scale=2, discriminator="unet"), r"data.resolution: the unet discriminator .*multiple of 8, got 20"),
    (64, dict(discriminator="unet", d_spectral_norm=True), r"model.d_spectral_norm: .*already has spectral"),
])
def test_check_names_the_key(family, resolution, model, message):
    with pytest.raises(ConfigError, match=message):
        family_check(family, resolution, **model)


def test_growth_is_checked_by_rrdb_only():
    with pytest.raises(ConfigError, match=r"model.growth: .*> 0, got 0"):
        family_check("rrdb", 96, growth=0)
    family_check("srresnet", 96, growth=0)  # SRResNet has no dense blocks, so growth is unused


@pytest.mark.parametrize("family", FAMILIES)
def test_check_needs_images(family):
    with pytest.raises(ConfigError, match=rf"model.family: {family} super-resolves images.*\(2,\)"):
        models.MODELS.get(family).check(unvalidated(family, 16), (2,))


def test_models_check_runs_the_family_check_on_the_data_shape():
    # digits (1 x R x R images) stands in for SR data: models.check asks the data registry for the shape.
    cfg = build_section(Config, {"model": {"family": "rrdb", "scale": 8}, "data": {"name": "digits"}}, "")
    cfg.data.resolution = 64
    models.check(cfg, data_shape(cfg.data))
    cfg.data.resolution = 32  # a 4 px low-resolution crop
    with pytest.raises(ConfigError, match=r"data.resolution: the low-resolution crop \(.* = 4\)"):
        models.check(cfg, data_shape(cfg.data))
    # validate() runs the model check before the data check, so these fail whatever the SR data layer says.
    with pytest.raises(ConfigError, match=r"data.resolution: the low-resolution crop .* at least 8"):
        load_config(None, ("model.family=srresnet", "data.name=digits", "data.resolution=16", "model.scale=4"))
    with pytest.raises(ConfigError, match=r"model.scale: "):
        load_config(None, ("model.family=srresnet", "data.name=digits", "data.resolution=32", "model.scale=16"))


def test_a_photos_config_validates():
    if "photos" not in DATASETS:
        pytest.skip("the photos data set is not registered yet")
    cfg = load_config(None, ("model.family=rrdb", "data.name=photos", "data.resolution=64", "model.scale=4",
                             "model.blocks=1", "model.g_width=8"))
    assert models.build_generator(cfg.model, (3, 64, 64))(lr_image(1, 3, 16, 16)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("family, discriminator", [("srresnet", "vgg"), ("rrdb", "unet")])
def test_bf16_forward_and_backward(family, discriminator):
    # DeepSpeed's bf16 casts the modules; bicubic, PixelShuffle, PReLU and spectral norm must all follow.
    cfg = model_cfg(family, discriminator=discriminator, blocks=1, checkpointing=True)
    g = models.build_generator(cfg, (3, 32, 32)).to(torch.bfloat16)
    d = models.build_discriminator(cfg, (3, 32, 32)).to(torch.bfloat16)
    logits = d(g(lr_image(2, 3, 8, 8).to(torch.bfloat16)))
    assert logits.dtype == torch.bfloat16
    logits.float().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad.float()).all() for p in g.parameters())


def test_sr_families_serve_the_super_resolution_task():
    assert all(models.MODELS.get(f).task == "super_resolution" for f in FAMILIES)
    assert models.MODELS.get("dcgan").task == "generation"


# -- The PSNR stage has no D -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("model", [dict(discriminator="vgg"), dict(discriminator="unet"),
                                   dict(discriminator="unet", d_spectral_norm=True)], ids=["vgg", "unet", "unet-sn"])
def test_the_psnr_stage_is_not_held_to_a_discriminators_crop_sizes(family, model):
    """100 px (25 px low-resolution) suits G; only a D would refuse it, and adversarial_weight 0 trains none."""
    cfg = build_section(Config, {"model": {"family": family, "scale": 4, **model}, "data": {"resolution": 100},
                                 "loss": {"adversarial_weight": 0}}, "")
    models.MODELS.get(family).check(cfg, (3, 100, 100))
    cfg.loss.adversarial_weight = 0.001  # the GAN stage has a D, so its constraints hold again
    with pytest.raises(ConfigError, match=r"model.d_spectral_norm|data.resolution: the (vgg|unet) discriminator"):
        models.MODELS.get(family).check(cfg, (3, 100, 100))


@pytest.mark.parametrize("weight", [0, 0.001])
def test_the_discriminator_check_follows_the_sr_tasks_own_rule(weight):
    """``has_discriminator`` (what check_sr asks) agrees with the D the SR task builds (None without one)."""
    from distgan.models.sr_discriminators import has_discriminator
    from distgan.tasks.super_resolution.task import SuperResolutionTask

    cfg = build_section(Config, {"model": {"family": "srresnet", "scale": 4, "d_width": 8, "g_width": 8},
                                 "data": {"resolution": 32}, "loss": {"adversarial_weight": weight}}, "")
    task = SuperResolutionTask(cfg)
    task.data_shape = (3, 32, 32)  # what setup_data sets; no data is read here
    assert has_discriminator(cfg) == (task.build_discriminator() is not None)


ROOT_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_an_srresnet_psnr_config_loads_with_any_crop_g_takes():
    cfg = load_config(str(ROOT_CONFIGS / "srresnet_x4.yaml"), ("data.resolution=100",))
    assert cfg.data.resolution == 100 and cfg.loss.adversarial_weight == 0
    load_config(str(ROOT_CONFIGS / "srresnet_x4.yaml"), ("data.resolution=100", "model.discriminator=unet"))
    with pytest.raises(ConfigError, match="data.resolution: the vgg discriminator"):
        load_config(str(ROOT_CONFIGS / "srresnet_x4.yaml"), ("data.resolution=100", "loss.adversarial_weight=0.001"))

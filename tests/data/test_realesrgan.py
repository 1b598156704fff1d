"""Real-ESRGAN's second-order degradation: its kernels against hand-computed values and their spectra, the
pipeline's output statistics on a real photo, the published defaults, and the config checks that name the key."""

from __future__ import annotations

import dataclasses
import math

import pytest
import scipy.special
import skimage.data
import torch

from distgan.config import ConfigError, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig, RealESRGANFirstConfig, RealESRGANSecondConfig
from distgan.data.degradations import (DEGRADATIONS, check_degradation, degrade, degrade_batch, draw, make_lr,
                                      quantize)
from distgan.data.degradations.base import filter2d
from distgan.data.degradations.kernels import (generalized_gaussian, gaussian, plateau, random_kernel, sinc)
from distgan.data.degradations.ragged import filter_each
from distgan.data.degradations.realesrgan import (add_gaussian_noise, add_poisson_noise, unsharp_mask, usm_taps)
from distgan.data.resize import imresize


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 128-px crop of a real photo (astronaut: a face, fabric, a flag), float32 [-1, 1], [3, 128, 128]."""
    pixels = torch.from_numpy(skimage.data.astronaut()[40:168, 180:308].copy()).permute(2, 0, 1)
    return pixels.float() / 127.5 - 1


def high_frequency_energy(x: torch.Tensor) -> float:
    """Mean squared Laplacian: what blur removes and noise adds."""
    lap = x[..., 1:-1, 1:-1] * 4 - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.pow(2).mean())


def realesrgan(**values) -> DegradationConfig:
    return DegradationConfig(type="realesrgan", realesrgan=RealESRGANConfig(**values))


def plain_downscale(jpeg: int) -> DegradationConfig:
    """Everything off but the resize back and the last JPEG at ``jpeg``."""
    still = dict(blur_prob=0.0, resize_prob=(0.0, 0.0, 1.0), gaussian_noise_prob=1.0, noise_range=(0.0, 0.0))
    return realesrgan(first=RealESRGANFirstConfig(**still, jpeg_range=(100, 100)),
                      second=RealESRGANSecondConfig(**still, jpeg_range=(jpeg, jpeg)), final_sinc_prob=0.0)


# -- kernels ---------------------------------------------------------------------------------------------


def test_kernels_match_hand_computed_values():
    e = math.exp
    # 3x3 isotropic Gaussian, sigma 1: centre 1, edges e^-1/2, corners e^-1, over their sum.
    total = 1 + 4 * e(-0.5) + 4 * e(-1)
    expected = torch.tensor([[e(-1), e(-0.5), e(-1)], [e(-0.5), 1, e(-0.5)], [e(-1), e(-0.5), e(-1)]]) / total
    assert torch.allclose(gaussian(3, 1.0, 1.0), expected.double(), atol=1e-12)
    # Anisotropic, sigma_x = 2 along the width: one column off costs (1/2)^2, one row off costs 1.
    k = gaussian(3, 2.0, 1.0, 0.0)
    assert k[1, 0] / k[1, 1] == pytest.approx(e(-0.125)) and k[0, 1] / k[1, 1] == pytest.approx(e(-0.5))
    assert torch.allclose(gaussian(3, 2.0, 1.0, math.pi / 2), k.T, atol=1e-12)  # a quarter turn swaps the axes
    # Generalized Gaussian with beta = 2: exp(-r^4 / 2) -> edges e^-1/2, corners e^-2.
    total = 1 + 4 * e(-0.5) + 4 * e(-2)
    g = generalized_gaussian(3, 1.0, 1.0, 0.0, 2.0)
    assert g[1, 1] == pytest.approx(1 / total) and g[0, 0] == pytest.approx(e(-2) / total)
    assert torch.allclose(generalized_gaussian(5, 1.3, 0.7, 0.4, 1.0), gaussian(5, 1.3, 0.7, 0.4), atol=1e-12)
    # Plateau with beta = 1: 1 / (1 + r^2) -> 1, 1/2, 1/3; the sum is 13/3.
    p = plateau(3, 1.0, 1.0, 0.0, 1.0)
    assert torch.allclose(p, torch.tensor([[1 / 3, 1 / 2, 1 / 3], [1 / 2, 1, 1 / 2], [1 / 3, 1 / 2, 1 / 3]]).double()
                          * 3 / 13, atol=1e-12)
    # Sinc: w J1(w r) / (2 pi r), w^2 / (4 pi) at the centre, with scipy's Bessel function as the reference.
    w = math.pi / 2
    raw = torch.tensor([[w * scipy.special.j1(w * math.hypot(x, y)) / (2 * math.pi * math.hypot(x, y))
                         if (x, y) != (0, 0) else w * w / (4 * math.pi) for x in range(-2, 3)] for y in range(-2, 3)])
    assert torch.allclose(sinc(5, w), raw.double() / raw.sum(), atol=1e-10)


def test_every_drawn_kernel_is_odd_centred_and_sums_to_one():
    rounds = [RealESRGANFirstConfig(), RealESRGANSecondConfig(), RealESRGANFirstConfig(sinc_prob=1.0)]
    for cfg in rounds:
        for seed in range(40):
            k = random_kernel(cfg, (0.2, 1.0), (1 / 3, 1.0), gen(seed))
            side = k.shape[0]
            assert k.shape == (side, side) and side % 2 == 1 and 7 <= side <= 21
            assert abs(float(k.sum()) - 1) < 1e-12
            assert torch.allclose(k, k.flip(0).flip(1), atol=1e-12)  # point-symmetric about the centre tap


@pytest.mark.parametrize("fraction", [1 / 3, 1 / 2, 3 / 4])
def test_sinc_passes_below_and_cuts_above_its_cutoff(fraction):
    n = 256
    response = torch.fft.fft2(sinc(21, fraction * math.pi), s=(n, n)).abs()
    f = torch.fft.fftfreq(n, dtype=torch.float64) * 2  # in units of pi: 1 is Nyquist
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    radius = (fx ** 2 + fy ** 2).sqrt()
    passband, stopband = response[radius < 0.7 * fraction], response[(radius > 1.3 * fraction) & (radius < 1)]
    # A 21-tap disc filter ripples (Gibbs) by about 15% and leaks about 10%; the edge sits at half amplitude.
    assert 0.8 < passband.min() and passband.max() < 1.2
    assert stopband.max() < 0.15
    assert 0.35 < response[(radius - fraction).abs() < 0.01].mean() < 0.65


# -- the steps ----------------------------------------------------------------------------------------------


def test_noise_std_is_in_the_configured_range():
    flat = torch.full((1, 3, 96, 96), 0.5)
    for sigma in (1.0, 12.0, 30.0):  # the published range is [1, 30] grey levels
        colour = add_gaussian_noise(flat, sigma, False, gen()) - flat
        assert abs(float(colour.std()) * 255 - sigma) < 0.03 * sigma
        grey = add_gaussian_noise(flat, sigma, True, gen()) - flat
        assert torch.equal(grey[:, 0], grey[:, 2]) and not torch.equal(colour[:, 0], colour[:, 2])
    # Poisson: shot noise of an image with 256 levels has std sqrt(value / 256), times the drawn scale.
    ramp = torch.linspace(0.2, 0.8, 256).repeat(3, 96, 1)[None]
    ramp = (ramp * 255).round() / 255
    for scale in (0.05, 1.0, 3.0):  # the published range is [0.05, 3]
        added = add_poisson_noise(ramp, scale, False, gen()) - ramp
        expected = scale * float((ramp / 256).sqrt().pow(2).mean().sqrt())
        assert abs(float(added.std()) - expected) < 0.05 * expected
    grey = add_poisson_noise(ramp, 1.0, True, gen()) - ramp
    assert torch.equal(grey[:, 0], grey[:, 1])


def test_unsharp_mask_follows_opencv_and_sharpens(photo):
    taps = usm_taps(50)  # the published radius: 51 taps, sigma 0.3 (25 - 1) + 0.8 = 8
    assert taps.numel() == 51 and float(taps[25] / taps[26]) == pytest.approx(math.exp(1 / 128))
    x = (photo[None] + 1) / 2
    sharp = unsharp_mask(x, 0.5, 50, 10.0)
    assert high_frequency_energy(sharp) > 1.3 * high_frequency_energy(x)
    assert sharp.min() >= 0 and sharp.max() <= 1
    assert torch.equal(unsharp_mask(x, 0.5, 50, 255.0), x)  # no detail above 255 grey levels: nothing changes


# -- the pipeline ---------------------------------------------------------------------------------------------


def test_pipeline_output_shape_grid_and_determinism(photo):
    deg = realesrgan()
    lrs = [degrade(photo, 4, deg, gen(seed)) for seed in range(12)]
    for lr, target in lrs:
        assert lr.shape == (3, 32, 32) and lr.dtype == torch.float32 and target is photo
        assert lr.min() >= -1 and lr.max() <= 1
        levels = (lr + 1) * 127.5
        assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert torch.equal(degrade(photo, 4, deg, gen(3))[0], lrs[3][0])
    assert len({lr.sum().item() for lr, _ in lrs}) == 12
    assert make_lr(photo[:1], 2, deg, gen()).shape == (1, 64, 64)  # grey works too
    with pytest.raises(ValueError, match="multiple of scale"):
        degrade(photo[:, :30], 4, deg, gen())


def test_pipeline_degrades_more_than_bicubic_in_the_published_ranges(photo):
    clean = quantize(imresize(photo, 0.25))
    deg = realesrgan()
    errors, energies = [], []
    for seed in range(24):
        lr = make_lr(photo, 4, deg, gen(seed))
        errors.append(float((lr - clean).pow(2).mean().sqrt()) * 127.5)
        energies.append(high_frequency_energy(lr))
    errors.sort()
    energies.sort()
    # Two rounds of blur, resize, noise and JPEG: every sample changes by several grey levels (RMS), some by
    # tens (noise up to 30 levels, JPEG down to quality 30); on this photo the spread measured 10 to 30.
    assert errors[0] > 5 and 10 < errors[12] < 40 and errors[-1] > 20
    # The published ranges blur more than they add grain: the median LR keeps under half the clean bicubic's
    # high-frequency energy, and the samples differ widely (measured 0.08x to 1x of it).
    reference = high_frequency_energy(clean)
    assert energies[12] < 0.5 * reference and energies[-1] > 3 * energies[0]


def test_blur_reduces_high_frequency_energy(photo):
    x = (photo[None] + 1) / 2
    for seed in range(20):
        k = random_kernel(RealESRGANFirstConfig(), (0.2, 1.0), (1 / 3, 1.0), gen(seed))
        assert high_frequency_energy(filter2d(x, k.float())) < high_frequency_energy(x)


def test_jpeg_quality_range_drives_the_error(photo):
    clean = make_lr(photo, 4, plain_downscale(100), gen(0))
    error = {q: float((make_lr(photo, 4, plain_downscale(q), gen(0)) - clean).abs().mean()) * 127.5
             for q in (95, 60, 30)}
    assert error[95] < error[60] < error[30] and error[30] > 1


def test_sharpened_target_and_the_lr_made_from_it(photo):
    plain_lr, plain_target = degrade(photo, 4, realesrgan(), gen(5))
    lr, target = degrade(photo, 4, realesrgan(sharpen_gt=True), gen(5))
    assert target.shape == photo.shape and not torch.equal(target, photo)
    assert high_frequency_energy(target) > high_frequency_energy(photo)
    assert plain_target is photo and not torch.equal(lr, plain_lr)


def test_published_defaults():
    first, second, top = RealESRGANFirstConfig(), RealESRGANSecondConfig(), RealESRGANConfig()
    assert first.kernel_prob == second.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    assert (first.blur_sigma, second.blur_sigma, first.resize_range, second.resize_range) == (
        (0.2, 3.0), (0.2, 1.5), (0.15, 1.5), (0.3, 1.2))
    assert (first.resize_prob, second.resize_prob, first.noise_range, second.noise_range) == (
        (0.2, 0.7, 0.1), (0.3, 0.4, 0.3), (1.0, 30.0), (1.0, 25.0))
    assert (first.poisson_scale_range, second.poisson_scale_range, second.blur_prob, top.final_sinc_prob) == (
        (0.05, 3.0), (0.05, 2.5), 0.8, 0.8)
    assert (top.sinc_cutoff, top.usm_weight, top.usm_radius, top.usm_threshold) == ((0.2, 1.0), 0.5, 50, 10.0)
    assert DegradationConfig().type == "classic" and DEGRADATIONS.names() == ["classic", "realesrgan"]


# -- the batched path ------------------------------------------------------------------------------------------


def test_grouped_filter_is_each_kernel_with_its_own_reflect_padding():
    x = torch.rand(3, 2, 12, 10, generator=gen(1))
    kernels = [torch.rand(k, k, generator=gen(k), dtype=torch.float64) for k in (3, 9, 21)]
    out = filter_each(x, kernels)
    for i, k in enumerate(kernels):
        # 21 taps reach 10 px past a 10-px-wide image: that one repeats its edges instead, as filter2d does.
        assert torch.allclose(out[i:i + 1], filter2d(x[i:i + 1], k), atol=1e-6)
    assert not torch.allclose(out[1], out[2], atol=1e-3)


SAMPLES = 6


@pytest.mark.parametrize("name, deg, channels, side", [
    ("published", realesrgan(), 3, 128),
    ("sharpened", realesrgan(sharpen_gt=True), 3, 128),
    ("grey, small, every kind of noise and end", realesrgan(
        first=RealESRGANFirstConfig(kernel_size=(7, 15), gaussian_noise_prob=0.3),
        second=RealESRGANSecondConfig(kernel_size=(7, 15), blur_prob=0.5, gaussian_noise_prob=0.3),
        final_kernel_size=(7, 15)), 1, 32),
    ("classic", DegradationConfig(blur_sigma=(0.2, 3.0), noise_sigma=(1.0, 25.0), jpeg_quality=(30, 95)), 3, 64),
])
def test_a_batch_degrades_each_sample_as_it_alone_would(photo, name, deg, channels, side):
    """The key property of the batched path: sample i of ``degrade_batch`` is ``degrade`` of crop i with the same
    generator, whatever else is in the batch; LR exactly (it is on the 8-bit grid), targets to float tolerance."""
    crops = torch.stack([photo[:channels, :side, :side], photo[:channels, -side:, -side:].flip(-1),
                         photo[:channels, :side, -side:].transpose(1, 2)] * 2)
    alone = [degrade(crop, 4, deg, gen(50 + i)) for i, crop in enumerate(crops)]
    draws = [draw(tuple(crop.shape), 4, deg, gen(50 + i)) for i, crop in enumerate(crops)]
    lr, target = degrade_batch(crops, 4, deg, draws)
    assert lr.shape == (SAMPLES, channels, side // 4, side // 4) and target.shape == crops.shape
    assert torch.equal(lr, torch.stack([a[0] for a in alone]))
    assert torch.allclose(target, torch.stack([a[1] for a in alone]), atol=1e-5, rtol=0)
    assert len({float(x.sum()) for x in lr}) == SAMPLES  # every sample its own draws
    # A sample's result does not depend on its neighbours: the last half alone gives the same.
    assert torch.equal(degrade_batch(crops[3:], 4, deg, draws[3:])[0], lr[3:])


def test_the_draws_are_per_sample_and_come_in_the_pipelines_order(photo):
    deg = realesrgan(first=RealESRGANFirstConfig(gaussian_noise_prob=0.5))
    kinds = set()
    for seed in range(16):
        d = draw(tuple(photo.shape), 4, deg, gen(seed))
        kinds.add((d.first.noise.gaussian, d.second.noise.gaussian, d.resize_first, d.final_kernel is None))
        noise = d.first.noise
        # A Gaussian field is drawn at the size the first resize gives; a Poisson draw carries its own seed.
        assert (noise.field.shape[-2:] == d.first.size) if noise.gaussian else noise.field is None
        assert d.first.kernel is not None and abs(float(d.first.kernel.sum()) - 1) < 1e-12  # blur_prob 1
        assert 30 <= d.first_quality <= 95 and d.first.mode in ("area", "bilinear", "bicubic")
    assert len(kinds) > 6  # the choices vary from sample to sample, not once per batch


# -- config checks -----------------------------------------------------------------------------------------


def _set(deg: DegradationConfig, dotted: str, value) -> DegradationConfig:
    section, name = dotted.rsplit(".", 1) if "." in dotted else ("", dotted)
    cfg = deg.realesrgan
    for part in filter(None, section.split(".")):
        cfg = getattr(cfg, part)
    assert hasattr(cfg, name)
    setattr(cfg, name, value)
    return deg


@pytest.mark.parametrize("key, value, message", [
    ("first.kernel_prob", (0.5, 0.25, 0.12, 0.03, 0.12, 0.03), "6 chances >= 0 summing to 1 (iso, aniso,"),
    ("second.resize_prob", (0.5, 0.5, 0.5), "3 chances >= 0 summing to 1 (up, down, keep)"),
    ("resize_mode_prob", (1.0, -0.5, 0.5), "(area, bilinear, bicubic)"),
    ("first.kernel_size", (7, 20), "odd kernel sides"),
    ("second.kernel_size", (7, 33), "kernel side 33 is larger than the 32px crop (data.resolution)"),
    ("final_kernel_size", (8, 21), "odd kernel sides"),
    ("first.blur_sigma", (0.0, 3.0), "0 < min <= max"),
    ("second.betag_range", (1.5, 4.0), "0 < min <= 1 <= max"),
    ("first.resize_range", (0.15, 20.0), "max <= 8.0"),
    ("second.noise_range", (25.0, 1.0), "0.0 <= min <= max <= 255.0"),
    ("first.jpeg_range", (0, 95), "1 <= min <= max <= 100"),
    ("second.blur_prob", 1.5, "a value in [0.0, 1.0]"),
    ("sinc_cutoff", (0.2, 1.5), "units of pi with 0.01 <= min <= max <= 1"),
    ("final_sinc_cutoff", (0.0, 0.5), "units of pi with 0.01 <= min"),
    ("usm_weight", 11.0, "a value in [0.0, 10.0]"),
    ("usm_radius", 0, "a value in [1, 255]"),
])
def test_bad_values_are_refused_naming_the_key(key, value, message):
    deg = _set(realesrgan(), key, value)
    with pytest.raises(ConfigError, match=f"^data.degradation.realesrgan.{key}: .*") as raised:
        check_degradation(deg, 32)
    assert message in str(raised.value)


def test_defaults_pass_and_the_type_and_its_keys_are_checked():
    check_degradation(realesrgan(), 21)
    # The other type's keys, set, would be ignored: refused instead.
    with pytest.raises(ConfigError, match=r"^data.degradation.blur_sigma: not used by data.degradation.type 'realesr"):
        check_degradation(dataclasses.replace(realesrgan(), blur_sigma=(0.5, 1.0)), 21)
    classic = DegradationConfig(realesrgan=RealESRGANConfig(second=RealESRGANSecondConfig(jpeg_range=(40, 95))))
    with pytest.raises(ConfigError, match=r"^data.degradation.realesrgan.second.jpeg_range: not used by .* 'classic'"):
        check_degradation(classic, 21)
    with pytest.raises(ConfigError, match="data.degradation.type: unknown degradation 'realesrgn'.*'realesrgan'"):
        check_degradation(DegradationConfig(type="realesrgn"), 32)

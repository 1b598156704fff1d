"""Degradations that make SR inputs: blur, noise, quantization, JPEG, and ``make_lr`` chaining them."""

from __future__ import annotations

import math

import pytest
import torch

from distgan.config import DegradationConfig
from distgan.data.degradations import add_noise, gaussian_blur, gaussian_kernel, jpeg, make_lr, quantize
from distgan.data.resize import imresize


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noise_image(c: int = 3, h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(c, h, w, generator=gen(seed)) * 2 - 1


def textured(size: int = 64) -> torch.Tensor:
    """A smooth gradient with a few sharp stripes: something JPEG has to work on."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    grey = 0.6 * torch.sin(4 * xx) * torch.cos(3 * yy) + 0.3 * ((xx * 8).floor().remainder(2) * 2 - 1)
    return torch.stack([grey, grey.flip(0), grey.flip(1)]).clamp(-1, 1)


def test_zero_sigma_is_the_identity():
    x = noise_image()
    assert gaussian_blur(x, 0.0) is x and add_noise(x, 0.0, gen()) is x


def test_blur_kernel_and_effect():
    taps = gaussian_kernel(1.5)
    assert taps.numel() == 2 * math.ceil(4.5) + 1 and abs(taps.sum().item() - 1) < 1e-12
    x = noise_image(h=96, w=96)
    y = gaussian_blur(x, 1.5)
    assert y.shape == x.shape and y.dtype == x.dtype
    # Normalised taps keep the mean (up to what reflect padding moves at the borders) and average noise away.
    assert (y.mean() - x.mean()).abs() < 2e-3
    assert y.var() < 0.2 * x.var()
    # A batch [N, C, H, W] is blurred image by image.
    assert torch.allclose(gaussian_blur(x[None].repeat(2, 1, 1, 1), 1.5)[1], y)
    with pytest.raises(ValueError, match="larger than"):
        gaussian_blur(noise_image(h=8, w=8), 3.0)


def test_noise_has_the_requested_std_on_the_255_scale():
    x = torch.zeros(3, 128, 128)
    for sigma in (2.0, 10.0, 25.0):
        added = (add_noise(x, sigma, gen()) - x) * 127.5
        assert abs(added.std().item() - sigma) < 0.02 * sigma and abs(added.mean().item()) < 0.02 * sigma


def test_quantize_snaps_to_the_8bit_grid():
    x = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.77, 1.0, 2.0])
    q = quantize(x)
    levels = (q + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4) and q.min() == -1 and q.max() == 1
    assert (q - x.clamp(-1, 1)).abs().max() <= 0.5 / 127.5 + 1e-6


def test_jpeg_error_grows_as_quality_drops():
    x = quantize(textured())
    for image in (x, x[:1]):  # RGB (chroma subsampled 4:2:0 at every quality, PIL's default) and grey
        errors = {q: (jpeg(image, q) - image).abs().mean().item() for q in (100, 50, 10)}
        assert errors[100] < errors[50] < errors[10]
        assert jpeg(image, 50).shape == image.shape
    # Grey at quality 100 is nearly lossless (under one grey level on average); quality 10 is not.
    assert errors[100] < 1 / 127.5 and errors[10] > 5 / 127.5
    with pytest.raises(ValueError, match="1..100"):
        jpeg(x, 0)


def test_make_lr_without_degradation_is_quantized_imresize():
    hr = noise_image(h=32, w=48)
    lr = make_lr(hr, 4, DegradationConfig(), gen())
    assert lr.shape == (3, 8, 12) and lr.dtype == torch.float32
    assert torch.equal(lr, quantize(imresize(hr, 0.25)))


def test_make_lr_shape_range_grid_and_determinism():
    deg = DegradationConfig(blur_sigma=(0.2, 2.0), noise_sigma=(1.0, 15.0), jpeg_quality=(30, 95))
    hr = textured()
    lrs = [make_lr(hr, 2, deg, gen(seed)) for seed in (7, 7, 8)]
    for lr in lrs:
        assert lr.shape == (3, 32, 32) and lr.dtype == torch.float32
        assert lr.min() >= -1 and lr.max() <= 1
        levels = (lr + 1) * 127.5
        assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert torch.equal(lrs[0], lrs[1]) and not torch.equal(lrs[0], lrs[2])
    with pytest.raises(ValueError, match="multiple of scale"):
        make_lr(noise_image(h=30, w=32), 4, deg, gen())


def test_make_lr_degrades_more_than_bicubic():
    hr = textured()
    clean = make_lr(hr, 2, DegradationConfig(), gen())
    noisy = make_lr(hr, 2, DegradationConfig(noise_sigma=(20.0, 20.0)), gen())
    blurred = make_lr(hr, 2, DegradationConfig(blur_sigma=(2.0, 2.0)), gen())
    assert abs((noisy - clean).std().item() * 127.5 - 20) < 2
    assert blurred.var() < clean.var()

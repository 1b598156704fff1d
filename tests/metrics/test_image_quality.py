"""PSNR / SSIM against scikit-image, which is the reference for the pinned protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distgan.metrics.image_quality import psnr, ssim, to_uint8

TOL = 1e-6


def _skimage_metrics():
    return pytest.importorskip("skimage.metrics")


def _y_numpy(hwc: np.ndarray) -> np.ndarray:
    """BT.601 luma on 16..235 (MATLAB rgb2ycbcr), unrounded, written independently of the module."""
    rgb = hwc.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _reference(sr: torch.Tensor, hr: torch.Tensor, crop: int, y: bool) -> tuple[list[float], list[float]]:
    """skimage's PSNR and SSIM of each image pair, after cropping / Y conversion done in numpy."""
    m = _skimage_metrics()
    ps, ss = [], []
    for a, b in zip(sr.numpy(), hr.numpy()):
        a, b = a.transpose(1, 2, 0), b.transpose(1, 2, 0)  # CHW -> HWC
        if crop:
            a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
        if y and a.shape[-1] == 3:
            a, b = _y_numpy(a), _y_numpy(b)
        else:
            a, b = a.astype(np.float64), b.astype(np.float64)
        axis = -1 if a.ndim == 3 else None
        ps.append(m.peak_signal_noise_ratio(b, a, data_range=255))
        ss.append(m.structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, channel_axis=axis))
    return ps, ss


def _assert_matches(sr, hr, crop, y):
    ref_p, ref_s = _reference(sr, hr, crop, y)
    got_p, got_s = psnr(sr, hr, crop, y), ssim(sr, hr, crop, y)
    assert got_p.dtype == got_s.dtype == torch.float64 and got_p.shape == got_s.shape == (len(sr),)
    np.testing.assert_allclose(got_p.numpy(), ref_p, rtol=0, atol=TOL)
    np.testing.assert_allclose(got_s.numpy(), ref_s, rtol=0, atol=TOL)


def _noisy_pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    hr = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    noise = torch.randint(-40, 41, shape, generator=g)
    return (hr.int() + noise).clamp(0, 255).to(torch.uint8), hr


@pytest.mark.parametrize("h,w", [(32, 32), (27, 41), (50, 23)])
@pytest.mark.parametrize("crop", [0, 2, 4])
@pytest.mark.parametrize("y", [False, True])
def test_random_rgb_matches_skimage(h, w, crop, y):
    sr, hr = _noisy_pair((2, 3, h, w), seed=h * 100 + w)
    _assert_matches(sr, hr, crop, y)
    # Unrelated images too: SSIM near 0 and low PSNR, where cancellation would show.
    unrelated = torch.randint(0, 256, hr.shape, generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    _assert_matches(unrelated, hr, crop, y)


@pytest.mark.parametrize("y", [False, True])
def test_structured_images_match_skimage(y):
    data = pytest.importorskip("skimage.data")
    hr = torch.from_numpy(data.astronaut()[100:196, 150:278].copy()).permute(2, 0, 1)[None]  # 96x128 RGB
    blurred = F.avg_pool2d(hr.double(), 3, stride=1, padding=1, count_include_pad=False).round().to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    noisy = (hr.double() + 8 * torch.randn(hr.shape, generator=g, dtype=torch.float64)).clamp(0, 255).round()
    sr = torch.cat([blurred, noisy.to(torch.uint8)])
    _assert_matches(sr, hr.expand_as(sr).contiguous(), crop=4, y=y)
    # A grey image (1 channel): y_channel leaves it alone.
    cam = torch.from_numpy(data.camera()[200:280, 200:300].copy())[None, None]
    cam_blur = F.avg_pool2d(cam.double(), 5, stride=1, padding=2, count_include_pad=False).round().to(torch.uint8)
    _assert_matches(cam_blur, cam, crop=2, y=y)
    assert torch.equal(ssim(cam_blur, cam, 2, y_channel=True), ssim(cam_blur, cam, 2))
    got = ssim(sr, hr.expand_as(sr), crop_border=4, y_channel=y)
    assert ((0.3 < got) & (got < 0.99)).all()  # structured, degraded: not trivially 0 or 1


def test_identical_images_give_inf_psnr_and_unit_ssim():
    img = torch.randint(0, 256, (3, 3, 20, 24), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    for y in (False, True):
        assert torch.isinf(psnr(img, img, y_channel=y)).all() and (psnr(img, img, y_channel=y) > 0).all()
        torch.testing.assert_close(ssim(img, img, 2, y), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_psnr_by_hand():
    hr = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    sr = hr.clone()
    sr[0, 0, 0, 0] = 16  # MSE = 256 / 16 = 16
    assert psnr(sr, hr).item() == pytest.approx(10 * math.log10(255**2 / 16), abs=1e-12)
    assert psnr(sr, hr, crop_border=1).item() == math.inf  # the differing pixel is cropped away


def test_to_uint8_rounding_and_clamping():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 3.0, -0.5, 0.5, -1 + 1 / 128])
    out = to_uint8(x)
    assert out.dtype == torch.uint8
    # 0 -> 127.5 -> 128 (half to even, the only exact tie on this grid); -0.5 -> 63.75 -> 64;
    # 0.5 -> 191.25 -> 191; -1 + 1/128 -> 0.996 -> 1; beyond [-1, 1] clamps.
    assert out.tolist() == [0, 255, 128, 0, 255, 64, 191, 1]
    assert to_uint8(x.half()).tolist()[:5] == [0, 255, 128, 0, 255]


def test_float_input_holding_0_255_equals_uint8():
    sr, hr = _noisy_pair((2, 3, 16, 16), seed=3)
    assert torch.equal(psnr(sr.float(), hr.double()), psnr(sr, hr))
    assert torch.equal(ssim(sr.float(), hr.double(), 0, True), ssim(sr, hr, 0, True))


def test_batch_equals_individual_calls():
    sr, hr = _noisy_pair((5, 3, 30, 26), seed=11)
    for metric in (psnr, ssim):
        batch = metric(sr, hr, crop_border=2, y_channel=True)
        single = torch.cat([metric(sr[i:i + 1], hr[i:i + 1], crop_border=2, y_channel=True) for i in range(5)])
        torch.testing.assert_close(batch, single, rtol=0, atol=1e-12)
        assert batch.unique().numel() == 5  # per image, not one value broadcast


def test_errors_name_the_problem():
    a = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"\(1, 3, 16, 16\) vs \(1, 3, 16, 17\)"):
        psnr(a, torch.zeros(1, 3, 16, 17, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"10x10 .*16x16 .*crop_border=3.*11x11"):
        ssim(a, a, crop_border=3)
    assert ssim(a, a, crop_border=2).shape == (1,)  # 12x12 left: enough
    with pytest.raises(ValueError, match=r"crop_border must be >= 0, got -1"):
        ssim(a, a, crop_border=-1)
    with pytest.raises(ValueError, match=r"crop_border must be >= 0"):
        psnr(a, a, crop_border=-1)
    with pytest.raises(ValueError, match=r"0x0 .*crop_border=8"):
        psnr(a, a, crop_border=8)
    four = torch.zeros(1, 4, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"y_channel needs 1 or 3 channels, got 4"):
        psnr(four, four, y_channel=True)
    assert psnr(four, four).shape == (1,)  # without y_channel any channel count is fine
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ssim(a[0], a[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    sr, hr = _noisy_pair((3, 3, 40, 36), seed=5)
    for metric in (psnr, ssim):
        on_gpu = metric(sr.cuda(), hr.cuda(), 4, True)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), metric(sr, hr, 4, True), rtol=0, atol=1e-9)

"""PSNR and SSIM for super-resolution, under one pinned protocol.

SR papers' numbers differ mostly in protocol, not in models, so it is fixed here
(the BasicSR conventions) and checked against scikit-image in the tests:

* Images are ``[N, C, H, W]``. The generator's output range [-1, 1] goes to 0..255
  by ``to_uint8``: clamp, scale by 127.5, round half to even (``torch.round``).
  The metrics take uint8 tensors (or float tensors already holding 0..255 values)
  and compute in float64 on whatever device the tensors are on; data range 255.
* ``crop_border`` pixels are removed from every edge first (SR convention: the scale).
* ``y_channel=True`` replaces RGB by the BT.601 luma on the 16..235 scale, as
  MATLAB's ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``,
  not rounded. A 1-channel image is used as is.
* PSNR: ``10 log10(255^2 / MSE)`` over all remaining pixels and channels of each
  image; identical images give +inf. Equals ``skimage.metrics.peak_signal_noise_ratio``.
* SSIM: Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  population covariance; the SSIM map is averaged over the positions where the
  window lies wholly inside the image, then over channels. Equals
  ``skimage.metrics.structural_similarity(..., data_range=255, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``: skimage filters with reflect padding and
  then drops the 5-pixel border the padding touched, which is a 'valid' convolution.

Both return a float64 tensor ``[N]``, one value per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_WIN = 11  # scipy's gaussian_filter with sigma 1.5, truncate 3.5 -> radius 5
_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 0..255: clamp, scale, round half to even."""
    # float64 so that e.g. 0.0 lands exactly on 127.5 and rounds to 128 whatever the input dtype.
    scaled = (images.to(torch.float64).clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8)


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, y_channel: bool, min_size: int):
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {tuple(sr.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = sr.shape[-2] - 2 * crop_border, sr.shape[-1] - 2 * crop_border
    if h < min_size or w < min_size:
        raise ValueError(
            f"only {max(h, 0)}x{max(w, 0)} pixels left of {sr.shape[-2]}x{sr.shape[-1]} after "
            f"crop_border={crop_border}; need at least {min_size}x{min_size}"
        )
    out = []
    for x in (sr, hr):
        x = x.to(torch.float64)
        if crop_border:
            x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        if y_channel:
            if x.shape[1] == 3:
                weights = x.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
                x = 16.0 + (x * weights).sum(dim=1, keepdim=True) / 255.0
            elif x.shape[1] != 1:
                raise ValueError(f"y_channel needs 1 or 3 channels, got {x.shape[1]}")
        out.append(x)
    return out


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Per-image PSNR in dB (float64 [N]); +inf where the images are identical."""
    x, y = _prepare(sr, hr, crop_border, y_channel, min_size=1)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(255.0**2 / mse)  # mse 0 -> inf, as skimage


def _gaussian_taps(device: torch.device) -> torch.Tensor:
    # The same normalised 1-D taps scipy.ndimage.gaussian_filter uses.
    r = torch.arange(_WIN, dtype=torch.float64, device=device) - _WIN // 2
    taps = torch.exp(-0.5 * (r / _SIGMA) ** 2)
    return taps / taps.sum()


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Per-image mean SSIM (float64 [N]), averaged over channels."""
    x, y = _prepare(sr, hr, crop_border, y_channel, min_size=_WIN)
    n, c, h, w = x.shape
    taps = _gaussian_taps(x.device)
    row, col = taps.view(1, 1, 1, _WIN), taps.view(1, 1, _WIN, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        # Separable 'valid' convolution, each channel on its own; the kernel is symmetric
        # so correlation (conv2d) and convolution coincide.
        return F.conv2d(F.conv2d(t.reshape(n * c, 1, h, w), row), col)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx  # population (co)variances: E[xy] - E[x]E[y]
    vy = blur(y * y) - my * my
    vxy = blur(x * y) - mx * my
    smap = ((2 * mx * my + _C1) * (2 * vxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return smap.reshape(n, c, -1).mean(dim=2).mean(dim=1)

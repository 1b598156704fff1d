"""MATLAB-style bicubic ``imresize``: its definition (constants, ramps, symmetry) and two references.

torch's antialiased bicubic and PIL's BICUBIC use the same kernel (a = -0.5) and stretch but truncate
and renormalise at the borders instead of mirroring, so they are compared where no tap leaves the image.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from distgan.data.resize import cubic, imresize

SCALES = [1 / 2, 1 / 3, 1 / 4, 1 / 8, 2, 3]


def noise(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def interior(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """Output positions none of whose ``ceil(width) + 2`` taps falls outside the input."""
    x = (torch.arange(out_len, dtype=torch.float64) + 0.5) / scale - 0.5
    width = 4 / scale if scale < 1 else 4.0
    first = torch.floor(x - width / 2)
    return (first >= 0) & (first + math.ceil(width) + 1 <= in_len - 1)


def test_kernel_is_keys_cubic():
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    # a = -0.5: 1 at 0, 0 at the integers, 0.5625 and -0.0625 at the half-integers, 0 beyond 2.
    assert cubic(t).tolist() == [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0]


@pytest.mark.parametrize("scale", SCALES + [0.7, 1.3])
def test_constant_stays_constant(scale):
    x = torch.full((2, 3, 37, 41), 0.3, dtype=torch.float64)
    y = imresize(x, scale)
    assert y.shape == (2, 3, math.ceil(37 * scale), math.ceil(41 * scale))
    assert (y - 0.3).abs().max() < 1e-12


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_ramp_downsamples_to_the_mean_position(factor):
    # A linear ramp f(j) = j; output pixel i covers inputs factor*i .. factor*i + factor-1, whose mean position
    # is factor*i + (factor-1)/2. A symmetric kernel with weights summing to 1 reproduces it exactly.
    w = 96
    ramp = torch.arange(w, dtype=torch.float64).expand(5, w)
    y = imresize(ramp, 1 / factor)
    expect = factor * torch.arange(w // factor, dtype=torch.float64) + (factor - 1) / 2
    inner = interior(w, w // factor, 1 / factor)
    assert inner.sum() > w // factor // 2
    assert (y[:, inner] - expect[inner]).abs().max() < 1e-12
    # Mirroring folds the ramp at the border, so there it is not reproduced.
    assert abs(y[0, 0] - expect[0]) > 1e-3


@pytest.mark.parametrize("scale", SCALES)
def test_flips_and_transpose_commute(scale):
    x = noise(2, 48, 72)
    y = imresize(x, scale)
    assert torch.allclose(imresize(x.flip(-1), scale), y.flip(-1), atol=1e-12)
    assert torch.allclose(imresize(x.flip(-2), scale), y.flip(-2), atol=1e-12)
    assert torch.allclose(imresize(x.transpose(-1, -2), scale), y.transpose(-1, -2), atol=1e-12)


def test_scale_one_is_identity_and_round_trip_keeps_smooth_images():
    x = noise(3, 20, 24)
    assert torch.allclose(imresize(x, 1.0), x, atol=1e-15)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64, dtype=torch.float64),
                            torch.linspace(0, 1, 80, dtype=torch.float64), indexing="ij")
    smooth = torch.sin(3 * xx + 2 * yy)
    for factor in (2, 4):
        assert (imresize(imresize(smooth, factor), 1 / factor) - smooth).abs().max() < 5e-3
    # Shrinking antialiases: a pixel-level checkerboard (the highest frequency) is removed away from the
    # borders, where each output pixel weighs a patch symmetric about it (the mirror breaks the pattern at the edge).
    board = (torch.arange(64)[:, None] + torch.arange(64)[None, :]).remainder(2).double() * 2 - 1
    inner = interior(64, 32, 0.5)
    assert imresize(board, 0.5)[inner][:, inner].abs().max() < 1e-12


@pytest.mark.parametrize("scale", SCALES)
def test_matches_torch_antialiased_bicubic_inside(scale):
    x = noise(2, 3, 48, 72)
    y = imresize(x, scale)
    ref = F.interpolate(x, size=y.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
    rows, cols = interior(48, y.shape[-2], scale), interior(72, y.shape[-1], scale)
    assert rows.any() and cols.any()
    assert (y - ref)[..., rows, :][..., cols].abs().max() < 1e-12
    # ... and differs at the borders, where torch renormalises truncated kernels instead of mirroring.
    assert (y - ref).abs().max() > 1e-3


@pytest.mark.parametrize("scale", SCALES)
def test_matches_pil_bicubic_inside(scale):
    x = noise(48, 72, dtype=torch.float32)
    y = imresize(x, scale)
    pil = Image.fromarray(x.numpy(), mode="F").resize((y.shape[-1], y.shape[-2]), Image.Resampling.BICUBIC)
    ref = torch.from_numpy(np.array(pil))
    rows, cols = interior(48, y.shape[-2], scale), interior(72, y.shape[-1], scale)
    assert (y - ref)[rows][:, cols].abs().max() < 1e-6


def test_shapes_dtypes_and_refusals():
    x = noise(4, 6, dtype=torch.float32)
    assert imresize(x, 0.5).dtype == torch.float32 and imresize(x, 0.5).shape == (2, 3)
    assert imresize(noise(12, 12), 1 / 3).shape == (4, 4)  # 12 * (1/3) is 4, whatever float rounding says
    assert imresize(noise(5, 7), 0.5).shape == (3, 4)  # ceil, as MATLAB
    assert imresize(noise(8, 8), 0.5, size=(3, 3)).shape == (3, 3)
    with pytest.raises(TypeError, match="floating-point"):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="scale > 0"):
        imresize(x, 0)

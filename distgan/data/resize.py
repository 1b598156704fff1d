"""Bicubic resizing as MATLAB's ``imresize`` does it, the resize SR benchmarks are defined with.

Low-resolution inputs of the SR literature (Set5, DIV2K's bicubic track, ...)
are made with MATLAB's ``imresize(hr, 1/s, 'bicubic')``. PIL and torch resize
differently at the borders, so a model trained on their downsamples meets a
slightly different degradation at test time. This module implements
MATLAB's algorithm from its definition:

* Keys' cubic kernel with a = -0.5 (support 2).
* Pixel-centre alignment: output pixel i (0-based) sits at input coordinate
  ``(i + 0.5) / scale - 0.5``.
* Antialiasing when shrinking: the kernel is stretched by 1/scale (and scaled by
  ``scale``), so it spans 4/scale input pixels and acts as a low-pass filter.
* Each output pixel reads ``ceil(kernel width) + 2`` input taps, weights
  normalised to sum 1 (so a constant image stays constant).
* Symmetric boundary: taps outside the image mirror back into it with the edge
  pixel repeated (half-sample symmetric, MATLAB's ``[1:n, n:-1:1]`` index).
* Separable, rows (H) first then columns (W), as MATLAB does for equal scales;
  computed in float64, the result cast back to the input's floating dtype (no
  rounding or clamping: a cubic kernel over- and undershoots at edges).
* Output side ``ceil(side * scale)``.

"Matches MATLAB" means: the same taps, weights and boundary rule, so on a
float64 image the result equals MATLAB's double-precision ``imresize`` up to
float64 rounding. Not reproduced: MATLAB's uint8 path (it rounds to uint8 at
the end; quantize the result yourself) and its other kernels. No MATLAB runs
here; the tests check the definition (constants, ramps, symmetry) and the
interior against two independent implementations of the same kernel:

* ``torch.nn.functional.interpolate(mode="bicubic", antialias=True,
  align_corners=False)``: the same kernel (a = -0.5 in its antialias path) and
  stretch, but near the borders it drops the taps that fall outside the image
  and renormalises the rest instead of mirroring. On float64 images, at the
  output pixels none of whose ``ceil(kernel width) + 2`` taps leaves the image,
  the two agree to 1e-12 (measured max 6e-16 for scales 1/2, 1/3, 1/4, 1/8 and 2,
  1.1e-13 for 3; tested with 1e-12). In float32 torch rounds: interior agreement
  3e-7 when shrinking, 2e-5 when enlarging by 3. At the borders they differ by up
  to 0.1 on uniform noise in [-1, 1].
* PIL's ``Image.resize(..., BICUBIC)`` on a float32 ('F') image: same kernel and
  stretch, truncating at the borders like torch; interior agreement 1e-7
  (measured max 1.1e-7 over the same scales; tested with 1e-6).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch

__all__ = ["cubic", "imresize", "resize_weights"]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's and PIL's bicubic)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def output_side(side: int, scale: float) -> int:
    """``ceil(side * scale)``, immune to float noise such as 12 * (1/3) = 3.9999999999999996."""
    return math.ceil(round(side * scale, 9))


@functools.lru_cache(maxsize=64)
def resize_weights(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    """The [out_len, in_len] float64 matrix that resizes one axis (cached: crops repeat the same sizes)."""
    x = (torch.arange(out_len, dtype=torch.float64) + 0.5) / scale - 0.5  # output centres, input coords
    if scale < 1:
        width = 4.0 / scale

        def kernel(t: torch.Tensor) -> torch.Tensor:
            return scale * cubic(scale * t)
    else:
        width, kernel = 4.0, cubic
    taps = math.ceil(width) + 2
    idx = torch.floor(x - width / 2).long()[:, None] + torch.arange(taps)[None, :]
    weights = kernel(x[:, None] - idx.double())
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Half-sample symmetric mirror: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2; period 2n covers any reach.
    period = idx.remainder(2 * in_len)
    mirrored = torch.where(period >= in_len, 2 * in_len - 1 - period, period)
    # Several taps may mirror onto one pixel near a border; their weights add up.
    return torch.zeros(out_len, in_len, dtype=torch.float64).scatter_add_(1, mirrored, weights)


def imresize(x: torch.Tensor, scale: float, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Resize the last two axes of ``x`` ([..., H, W], floating point) by ``scale``, MATLAB-style bicubic.

    The output is [..., ceil(H * scale), ceil(W * scale)] (or ``size`` when given, still filtered for
    ``scale``), in ``x``'s dtype and on its device. ``scale < 1`` shrinks with antialiasing.
    """
    if not x.is_floating_point():
        raise TypeError(f"imresize needs a floating-point tensor, got {x.dtype}; convert (and scale) it first")
    if x.dim() < 2:
        raise ValueError(f"imresize needs a tensor [..., H, W], got shape {tuple(x.shape)}")
    if not scale > 0:
        raise ValueError(f"imresize needs scale > 0, got {scale}")
    in_h, in_w = x.shape[-2:]
    out_h, out_w = size if size is not None else (output_side(in_h, scale), output_side(in_w, scale))
    w_h = resize_weights(in_h, out_h, float(scale)).to(x.device)
    w_w = resize_weights(in_w, out_w, float(scale)).to(x.device)
    y = torch.matmul(w_h, x.to(torch.float64))  # rows first, as MATLAB for equal scales
    y = torch.matmul(y, w_w.T)
    return y.to(x.dtype)

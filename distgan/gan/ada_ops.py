"""The operations of ADA's augmentation pipeline, each taking its per-sample parameters explicitly.

``distgan.gan.ada`` draws the parameters (with probability p per sample and operation) and applies these in
ADA's order; kept apart so each one can be checked against what it claims (a flip is ``torch.flip``, a
quarter turn ``torch.rot90``, a colour matrix of saturation 0 makes grey). All are differentiable in the
images. Conventions follow StyleGAN2-ADA's ``training/augment.py``: 2-D transforms are 3x3 homogeneous
matrices in pixel units about the image centre, written as the inverse map (output pixel -> input pixel, what
``grid_sample`` needs); colour transforms are 4x4 homogeneous matrices acting on RGB, the grey (luma) axis
being (1, 1, 1)/sqrt(3). Images are [N, C, H, W] in [-1, 1], C being 1 or 3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distgan.gan.grid_sample import grid_sample

LUMA_AXIS = (1 / math.sqrt(3),) * 3
"""The grey axis of RGB that hue rotates about and saturation scales away from (ADA's ``v``)."""


def _per_sample(mask: torch.Tensor) -> torch.Tensor:
    """A per-sample [N] condition shaped [N, 1, 1, 1] to select whole images."""
    return mask.view(-1, 1, 1, 1)


# -- blit: exact pixel operations ------------------------------------------------------------


def flip_x(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the samples where ``flip`` ([N] bool) is set."""
    return torch.where(_per_sample(flip), x.flip(3), x)


def rotate90(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by ``turns`` ([N] ints in 0..3) quarter turns, as ``torch.rot90`` over (H, W).

    A non-square image keeps its shape only under half turns: there the caller draws even ``turns`` only,
    and odd ones are left as they are."""
    square = x.shape[2] == x.shape[3]
    out = x
    for k in (1, 2, 3) if square else (2,):
        out = torch.where(_per_sample(turns == k), torch.rot90(x, k, dims=(2, 3)), out)
    return out


def _fold(index: torch.Tensor, n: int) -> torch.Tensor:
    """Indices beyond [0, n) mirrored back about the image's edges (the edge pixel repeated), as often as
    needed: the border rule ``grid_sample``'s reflection padding uses, so blit and geom agree."""
    index = index.remainder(2 * n)
    return torch.where(index >= n, 2 * n - 1 - index, index)


def translate_int(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Move each sample's content by whole pixels, ``tx`` right and ``ty`` down ([N] ints), mirroring at the
    borders what comes in."""
    n, _, h, w = x.shape
    rows = _fold(torch.arange(h, device=x.device).view(1, h) - ty.view(n, 1), h)  # [N, H]
    cols = _fold(torch.arange(w, device=x.device).view(1, w) - tx.view(n, 1), w)  # [N, W]
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # Advanced indexing of [N, H, W, C] gathers every pixel from its source: differentiable, one copy.
    out = x.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2)


# -- geom: one affine resampling -------------------------------------------------------------


def _matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """A batch of matrices [N, R, C] from rows of per-sample [N] tensors or numbers."""
    n = like.shape[0]
    return torch.stack([torch.stack([e if torch.is_tensor(e) else like.new_full((n,), float(e)) for e in row],
                                    dim=-1) for row in rows], dim=-2)


def scale2d_inv(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """The inverse map of scaling by (``sx``, ``sy``) about the centre."""
    return _matrix([[1 / sx, 0, 0], [0, 1 / sy, 0], [0, 0, 1]], sx)


def rotate2d_inv(theta: torch.Tensor) -> torch.Tensor:
    """The inverse map of a rotation by ``theta`` radians about the centre."""
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, s, 0], [-s, c, 0], [0, 0, 1]], theta)


def translate2d_inv(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """The inverse map of moving content by (``tx``, ``ty``) pixels."""
    return _matrix([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]], tx)


def warp(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Resample each sample through its inverse map ``g_inv`` ([N, 3, 3], pixel units about the centre).

    Why bilinear: ADA upsamples 2x with a symmetric wavelet filter, resamples and filters back down, which
    keeps the resampling from adding aliasing for D to see (and G to learn, should it leak); bilinear is
    simpler and cheaper, at the price of a slight blur of the transformed samples. Why reflection: what
    comes in from outside the image is a mirror of it, as ADA pads, rather than an empty border that would
    set transformed samples apart."""
    _, _, h, w = x.shape
    # affine_grid wants normalised coordinates ([-1, 1] across the image): conjugate by pixels -> normalised.
    to_norm = torch.diag(x.new_tensor([2 / w, 2 / h, 1.0]))
    to_pixels = torch.diag(x.new_tensor([w / 2, h / 2, 1.0]))
    theta = (to_norm @ g_inv.to(x.dtype) @ to_pixels)[:, :2, :]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Not F.grid_sample: R1's double backward runs through this resampling, which torch cannot do on CUDA.
    return grid_sample(x, grid, padding_mode="reflection")


# -- color: one 4x4 matrix ---------------------------------------------------------------


def translate3d(b: torch.Tensor) -> torch.Tensor:
    """Brightness: add ``b`` to every channel."""
    return _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], b)


def scale3d(c: torch.Tensor) -> torch.Tensor:
    """Contrast: multiply every channel by ``c`` (about 0, the middle of [-1, 1])."""
    return _matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], c)


def _luma_outer(like: torch.Tensor) -> torch.Tensor:
    """v v^T of the luma axis as a 4x4 (homogeneous part 0)."""
    v = like.new_tensor(LUMA_AXIS + (0.0,))
    return torch.outer(v, v)


def luma_flip(flip: torch.Tensor) -> torch.Tensor:
    """Householder reflection through the plane orthogonal to the grey axis where ``flip`` (0 or 1) is 1:
    light becomes dark, the hue kept."""
    eye = torch.eye(4, device=flip.device, dtype=flip.dtype)
    return eye - 2 * _luma_outer(flip) * flip.view(-1, 1, 1)


def hue_rotation(theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` radians about the grey axis (Rodrigues' formula, ADA's ``rotate3d``)."""
    vx, vy, vz = LUMA_AXIS
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                    [0, 0, 0, 1]], theta)


def saturation(s: torch.Tensor) -> torch.Tensor:
    """Keep the grey component and scale the rest by ``s``: 0 makes grey, 1 changes nothing."""
    outer = _luma_outer(s)
    eye = torch.eye(4, device=s.device, dtype=s.dtype)
    return outer + (eye - outer) * s.view(-1, 1, 1)


def apply_color(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Each sample's colour matrix ``c`` ([N, 4, 4]) applied to its pixels. A grey image takes the matrix's
    mean over the RGB outputs, as ADA does: its scale is the row sums' mean, its offset the offsets' mean."""
    n, channels, h, w = x.shape
    c = c.to(x.dtype)
    flat = x.reshape(n, channels, h * w)
    if channels == 3:
        out = c[:, :3, :3] @ flat + c[:, :3, 3:]
    elif channels == 1:
        grey = c[:, :3, :].mean(dim=1, keepdim=True)  # [N, 1, 4]
        out = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
    else:
        raise ValueError(f"colour augmentation needs RGB or grey images, got {channels} channels")
    return out.reshape(n, channels, h, w)


# -- cutout ---------------------------------------------------------------------------------


def cutout(x: torch.Tensor, size: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Zero a square of side ``size`` ([N], a fraction of the image; 0 for none) centred at ``centre``
    ([N, 2], x and y as fractions of the image), clipped at the borders (ADA's cutout)."""
    n, _, h, w = x.shape
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h
    half = size.to(x.dtype).view(n, 1, 1) / 2
    outside_x = (xs.view(1, 1, w) - centre[:, 0].to(x.dtype).view(n, 1, 1)).abs() >= half
    outside_y = (ys.view(1, h, 1) - centre[:, 1].to(x.dtype).view(n, 1, 1)).abs() >= half
    keep = (outside_x | outside_y).to(x.dtype)  # [N, H, W]
    return x * keep.unsqueeze(1)

"""The Inception-v3 feature network of FID, as a plain PyTorch module.

FID values are only comparable with each other, and with published numbers,
when they come from the very network of Heusel et al.: the TensorFlow graph
``inception-2015-12-05`` with its weights, fed through TensorFlow 1.x's
bilinear resize to 299x299. torchvision's ImageNet Inception is a different
network (other weights, 1000 classes, other pooling) and PyTorch's own bilinear
resize samples other points; either shifts FID by whole units. This module
reproduces the TF graph layer by layer (as pytorch-fid and torch-fidelity do)
and takes its weights from the converted file those projects publish, so the
parameter names follow that file's state dict exactly.

The weights are never downloaded here: training machines may have no internet
access, so the user points ``eval.inception_weights`` or
``DISTGAN_INCEPTION_WEIGHTS`` at a local copy (see :func:`load_inception`); finding,
reading and checking that file is shared with other pretrained networks in
``distgan.core.pretrained``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from distgan.core.pretrained import check_state_dict, read_state_dict, resolve_weights, sha256

INPUT_SIZE = 299
WEIGHTS_ENV_VAR = "DISTGAN_INCEPTION_WEIGHTS"
WEIGHTS_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
# torch.hub names files by the leading digits of their sha256; both releases carry the same weights.
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
)


def _tf1_resize_matrix(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """``[out, in]`` weights of TF 1.x's legacy bilinear resize along one axis.

    TF 1.x samples source position ``dst * in / out`` (no half-pixel shift) and
    does the arithmetic in float32; we do the same so the sample points match.
    """
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32, device=device) * scale.to(device)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=in_size - 1)
    frac = src - lo.float()
    rows = torch.arange(out_size, device=device)
    weights = torch.zeros(out_size, in_size, dtype=torch.float32, device=device)
    # index_put_ with accumulate: at the last source pixel lo == hi and both weights land on it.
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` to ``size`` like TF 1.x ``resize_bilinear(align_corners=False)``.

    Bilinear resizing is separable, so it is two small matrix products.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a [N, C, H, W] tensor, got shape {tuple(x.shape)}")
    rows = _tf1_resize_matrix(x.shape[2], size[0], x.device).to(x.dtype)
    cols = _tf1_resize_matrix(x.shape[3], size[1], x.device).to(x.dtype)
    return rows @ (x @ cols.T)


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real pixels, not by 9, at the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _Conv(nn.Module):
    """Convolution without bias, batch norm with TF's epsilon, ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _Mixed35(nn.Module):
    """35x35 block (Mixed_5b..d): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(_avg_pool_3x3(x))], dim=1)


class _Reduce35(nn.Module):
    """35x35 -> 17x17 (Mixed_6a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class _Mixed17(nn.Module):
    """17x17 block (Mixed_6b..e): 7x7 convolutions factored into 1x7 and 7x1."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        double = self.branch7x7dbl_5(self.branch7x7dbl_4(double))
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), double,
                          self.branch_pool(_avg_pool_3x3(x))], dim=1)


class _Reduce17(nn.Module):
    """17x17 -> 8x8 (Mixed_7a)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, kernel_size=3, stride=2)],
                         dim=1)


class _Mixed8(nn.Module):
    """8x8 block (Mixed_7b, Mixed_7c) with split 1x3 / 3x1 heads."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        # The 2015 TF graph max-pools in Mixed_7c where the paper (and torchvision) average-pool.
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_3x3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)],
                         dim=1)


class InceptionFeatures(nn.Module):
    """Pixels ``[N, C, H, W]`` in 0..255 (C = 1 or 3) -> 2048-d pool features ``[N, 2048]`` (float32)."""

    dim = 2048

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _Mixed35(192, pool_features=32)
        self.Mixed_5c = _Mixed35(256, pool_features=64)
        self.Mixed_5d = _Mixed35(288, pool_features=64)
        self.Mixed_6a = _Reduce35(288)
        self.Mixed_6b = _Mixed17(768, c7=128)
        self.Mixed_6c = _Mixed17(768, c7=160)
        self.Mixed_6d = _Mixed17(768, c7=160)
        self.Mixed_6e = _Mixed17(768, c7=192)
        self.Mixed_7a = _Reduce17(768)
        self.Mixed_7b = _Mixed8(1280, max_pool=False)
        self.Mixed_7c = _Mixed8(2048, max_pool=True)
        # Unused for FID (features come before it), but part of the weights file, so kept for strict loading.
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
        x = resize_bilinear_tf1(x.to(self.fc.weight.dtype), (INPUT_SIZE, INPUT_SIZE))
        # Dividing by a power of two is exact, so this equals the graph's (x - 128) * 0.0078125 bit for bit.
        # Grey becomes RGB only after the resize, which then runs on one channel instead of three.
        x = ((x - 128) / 128).expand(-1, 3, -1, -1)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3)).float()


def weights_path(path: Union[str, os.PathLike, None] = None) -> str:
    """The weights file to use: ``path``, else ``DISTGAN_INCEPTION_WEIGHTS``; FileNotFoundError says where
    to get it when neither names an existing file."""
    return resolve_weights(path, WEIGHTS_ENV_VAR, _missing_weights_message)


def _missing_weights_message(path: Optional[str]) -> str:
    where = f"Inception-v3 FID weights not found at {path!r}" if path else "no Inception-v3 FID weights given"
    return (f"{where}. Set the config key eval.inception_weights or the environment variable {WEIGHTS_ENV_VAR} "
            f"to a local copy of {WEIGHTS_FILE_NAME} ({WEIGHTS_URLS[0]}) or of the identical "
            f"weights-inception-2015-12-05-6726825d.pth from torch-fidelity's v0.2.0 release ({WEIGHTS_URLS[1]}). "
            f"This machine cannot download it: fetch it elsewhere and copy it over.")


def _checked_state_dict(state: Mapping, model: nn.Module, path: str) -> dict:
    expected = model.state_dict()
    state = dict(state)
    # BatchNorm's step counter is absent from some conversions and plays no part in eval mode.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
    return check_state_dict(state, expected, path, "an Inception-v3 FID weights file")


def load_inception(path: Union[str, os.PathLike, None] = None) -> InceptionFeatures:
    """The FID feature network with weights from ``path``, else from ``$DISTGAN_INCEPTION_WEIGHTS``.

    Reads a ``.pth`` state dict (tensors only) or a ``.safetensors`` file; the
    module comes back in eval mode with gradients off.
    """
    path = weights_path(path)
    model = InceptionFeatures()
    model.load_state_dict(_checked_state_dict(read_state_dict(path), model, path))
    sha = sha256(path)
    if not sha.startswith(WEIGHTS_SHA256_PREFIX):
        warnings.warn(f"{path} (sha256 {sha[:8]}...) is not the standard FID Inception weights file "
                      f"(sha256 {WEIGHTS_SHA256_PREFIX}...); its FID values are not comparable with published ones",
                      RuntimeWarning, stacklevel=2)
    return model.eval().requires_grad_(False)

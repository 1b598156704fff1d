"""Batched steps on a batch whose samples have their own sizes: a list of [1, C, h, w] images.

Real-ESRGAN's random resizes give every sample its own size in the middle of the pipeline (their draws are
per sample here, see ``realesrgan``), so a batch cannot stay one tensor there. These helpers run a step once
per group of samples that share what the step needs to be one torch call (the input size, and the target
size and mode of a resize), and put every sample back in its place. A sample's result does not depend on
which others share its group: the same ops run on every sample, only stacked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Hashable, Optional, Sequence

import torch
import torch.nn.functional as F

from distgan.data.degradations.base import reflect_pad

__all__ = ["filter_each", "grouped", "resize", "resize_each"]

Images = list[torch.Tensor]
"""One [1, C, h, w] image per sample, each on the batch's device."""


def grouped(xs: Images, keys: Sequence[Optional[Hashable]],
            step: Callable[[torch.Tensor, list[int]], torch.Tensor]) -> Images:
    """``xs`` with ``step(stacked group, its sample indices)`` applied to each group of samples with the same
    size and key; a sample whose key is None is left as it is."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (x, key) in enumerate(zip(xs, keys, strict=True)):
        if key is not None:
            groups[(tuple(x.shape), key)].append(i)
    out = list(xs)
    for members in groups.values():
        results = step(torch.cat([xs[i] for i in members]), members)
        for i, result in zip(members, results.split(1)):
            out[i] = result
    return out


def filter_each(x: torch.Tensor, kernels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Correlate every channel of sample i of ``x`` [N, C, H, W] with its odd square ``kernels[i]``; same size.

    One grouped convolution: each kernel zero-padded to the largest side K of the batch (as Real-ESRGAN pads
    every kernel to 21 taps), each sample padded by reflection to its own kernel's reach and then by zeros
    to K // 2. The zero taps meet only the zero padding or pixels they multiply by zero, so a sample's
    result is what its own kernel with reflect padding gives (``base.filter2d``)."""
    n, channels, height, width = x.shape
    side = max(k.shape[-1] for k in kernels)
    padded, weights = [], []
    for sample, kernel in zip(x.split(1), kernels, strict=True):
        k = kernel.shape[-1]
        extra = (side - k) // 2
        padded.append(F.pad(reflect_pad(sample, (k // 2,) * 4), (extra,) * 4))
        weights.append(F.pad(kernel.to(device=x.device, dtype=x.dtype), (extra,) * 4))
    stacked = torch.cat(padded).reshape(1, n * channels, height + side - 1, width + side - 1)
    weight = torch.stack(weights)[:, None].expand(n, channels, side, side).reshape(n * channels, 1, side, side)
    return F.conv2d(stacked, weight, groups=n * channels).reshape(n, channels, height, width)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """torch's ``interpolate`` to ``size`` (no antialiasing, half-pixel centres), as the published pipeline."""
    size = (max(1, size[0]), max(1, size[1]))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def resize_each(xs: Images, sizes: Sequence[tuple[int, int]], modes: Sequence[str]) -> Images:
    """Sample i resized to ``sizes[i]`` with ``modes[i]``, one ``interpolate`` per (input size, size, mode)."""
    return grouped(xs, [(tuple(size), mode) for size, mode in zip(sizes, modes, strict=True)],
                   lambda x, members: resize(x, sizes[members[0]], modes[members[0]]))

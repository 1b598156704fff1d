"""Upscale several images in shared forward passes: their tiles, grouped by shape, go through G together.

``distgan serve`` answers many small upscaling requests at once. One forward pass per
image (or per tile) leaves a GPU mostly idle, and the images differ in size, so they
cannot simply be stacked. Their tiles can: each image is cut as ``distgan upscale``
cuts it (``tile_spans``: the same tiles, the same context around each), tiles whose
context has the same shape are stacked, whatever image they come from, and each
stack runs in one pass of at most ``max_tiles``. Every kept output pixel is then
computed from the same input as in the one-image run, so the result equals
``upscale_to_uint8`` up to float rounding; memory is one stack's activations plus the
output images.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from distgan.metrics.image_quality import to_uint8
from distgan.tasks.super_resolution.upscale import Device, tile_spans

Tile = tuple[int, int, int, int, int, int, int, int, int]
"""``(image, y0, y1, cy0, cy1, x0, x1, cx0, cx1)``: a tile's own rows/columns and those of its context."""


def _tiles(index: int, lr: torch.Tensor, tile: int, overlap: int) -> list[Tile]:
    return [(index, y0, y1, cy0, cy1, x0, x1, cx0, cx1)
            for y0, y1, cy0, cy1 in tile_spans(lr.shape[2], tile, overlap)
            for x0, x1, cx0, cx1 in tile_spans(lr.shape[3], tile, overlap)]


@torch.no_grad()
def upscale_many(g: nn.Module, images: Sequence[torch.Tensor], scale: int, channels: int, tile: int = 0,
                 overlap: int = 16, max_tiles: int = 16, device: Device = None,
                 extra_channels: Optional[Sequence[int]] = None) -> list[np.ndarray]:
    """Each ``[1, C, H, W]`` image in [-1, 1] -> its upscaled uint8 ``[H*scale, W*scale, channels + extra]``.

    ``tile`` 0 keeps each image whole (then only images of one size share a pass). ``extra_channels[i]``
    zero channels are appended to image i's array for the caller (an alpha channel). G runs in eval mode on
    ``device`` (default: where its parameters are) and its training flag is restored after.
    """
    if max_tiles < 1 or tile < 0 or overlap < 0 or scale < 1:
        raise ValueError(f"max_tiles >= 1, tile >= 0, overlap >= 0 and scale >= 1 expected, got {max_tiles}, "
                         f"{tile}, {overlap}, {scale}")
    extra = list(extra_channels or [0] * len(images))
    outputs = [np.zeros((lr.shape[2] * scale, lr.shape[3] * scale, channels + extra[i]), dtype=np.uint8)
               for i, lr in enumerate(images)]
    groups: dict[tuple[int, int], list[Tile]] = defaultdict(list)
    for i, lr in enumerate(images):
        if lr.dim() != 4 or lr.shape[0] != 1:
            raise ValueError(f"image {i}: expected one image [1, C, H, W], got shape {tuple(lr.shape)}")
        for t in _tiles(i, lr, tile, overlap):
            groups[(t[4] - t[3], t[8] - t[7])].append(t)
    if device is None:
        device = next(g.parameters(), torch.empty(0)).device
    was_training = g.training
    g.to(device).eval()
    try:
        for (h, w), members in groups.items():
            for start in range(0, len(members), max_tiles):
                chunk = members[start:start + max_tiles]
                batch = torch.cat([images[i][:, :, cy0:cy1, cx0:cx1] for i, _, _, cy0, cy1, _, _, cx0, cx1 in chunk])
                sr = g(batch.to(device=device, dtype=torch.float32))
                if sr.dim() != 4 or tuple(sr.shape[2:]) != (h * scale, w * scale):
                    raise ValueError(f"G turned {h}x{w} inputs into shape {tuple(sr.shape)}, not "
                                     f"{h * scale}x{w * scale}; is it a x{scale} super-resolution generator?")
                pixels = to_uint8(sr).permute(0, 2, 3, 1).cpu().numpy()
                for k, (i, y0, y1, cy0, _, x0, x1, cx0, _) in enumerate(chunk):
                    own = pixels[k, (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
                    outputs[i][y0 * scale:y1 * scale, x0 * scale:x1 * scale, :channels] = own
    finally:
        g.train(was_training)
    return outputs

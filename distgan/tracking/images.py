"""Sample images: grids of generated images and scatter plots of 2-D points."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> float32 in [0, 1]."""
    return ((images.detach().float().cpu() + 1.0) / 2.0).clamp_(0.0, 1.0)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> Image.Image:
    """N x C x H x W in [0, 1] -> one PIL image, ``nrow`` images per row."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top:top + h, left:left + w] = images[i]
    array = (canvas.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")


def scatter(points: torch.Tensor, size: int = 256, extent: float = 3.0) -> Image.Image:
    """N x 2 points in [-extent, extent]^2 as a white image with black dots."""
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    xy = ((points.detach().float().cpu().numpy() / extent + 1.0) / 2.0 * (size - 1))
    for x, y in xy:
        draw.point((float(x), float(size - 1 - y)), fill=0)
    return img


def render_samples(samples: torch.Tensor) -> Image.Image:
    """A picture of generator output: a grid for images, a scatter for points."""
    if samples.dim() == 4:
        return image_grid(to_unit(samples))
    return scatter(samples)


def save_image(img: Image.Image, path: Path) -> None:
    _write_whole(path, img.save)


def _write_whole(path: Path, save) -> None:
    """``save(tmp)`` beside ``path``, then renamed onto it: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    save(tmp)
    tmp.replace(path)


def save_animation(frames: list[Image.Image], path: Path, fps: float) -> None:
    """``frames`` as a GIF that loops forever at ``fps`` frames a second, written whole or not at all. (GIF
    stores durations in hundredths of a second: the rate is rounded to one of those.)"""
    _write_whole(path, lambda tmp: frames[0].save(tmp, save_all=True, append_images=frames[1:],
                                                  duration=round(1000 / fps, -1), loop=0))

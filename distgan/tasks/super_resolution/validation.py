"""Validation of a super-resolution generator: PSNR and SSIM on held-out images, across the workers.

The validation images are split round-robin over the ranks; each rank
upscales its share whole (no tiling: ``data.val_crop`` bounds their size),
scores it under the protocol of ``distgan.metrics.image_quality`` (uint8
rounding, ``eval.crop_border`` pixels cut from each edge, BT.601 luma when
``eval.y_channel``), and the per-image scores are summed over the ranks, so
every rank returns the same means whatever the worker count. Bicubic
upsampling of the same inputs is scored once at start-up: the number a
PSNR-oriented generator has to beat.

Knows nothing of Ray; the collectives are torch.distributed's.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from distgan.config import Config, ConfigError, positive
from distgan.data.resize import imresize
from distgan.metrics.image_quality import psnr, ssim, to_uint8
from distgan.metrics.registry import METRICS, Metric, parse

TASK = "super_resolution"
DEFAULT_METRICS = "psnr,ssim"
"""What ``eval.metrics: auto`` means for super-resolution."""

# Scored per image (uint8-rounded, border cut, luma when asked), summed over the ranks.
METRICS.register("psnr")(Metric(TASK, psnr, {"psnr": "max"}))
METRICS.register("ssim")(Metric(TASK, ssim, {"ssim": "max"}))


def parse_metrics(spec: str) -> list[str]:
    return parse(spec, TASK, DEFAULT_METRICS)


def crop_border(cfg: Config) -> int:
    return cfg.model.scale if cfg.eval.crop_border is None else cfg.eval.crop_border


def check_config(cfg: Config) -> None:
    """The ``eval`` section of a super-resolution run."""
    parse_metrics(cfg.eval.metrics)
    positive("eval.crop_border", crop_border(cfg), allow_zero=True)
    val_crop = cfg.data.val_crop
    positive("data.val_crop", val_crop, allow_zero=True)
    # SSIM's 11x11 window must fit inside what is left after the border crop.
    if val_crop and val_crop - 2 * crop_border(cfg) < 11:
        # Either key may be the one to change: name both (the border defaults to model.scale).
        raise ConfigError(f"data.val_crop, eval.crop_border: {val_crop} px leaves {val_crop - 2 * crop_border(cfg)}"
                          f" px after eval.crop_border={crop_border(cfg)} on each edge; SSIM needs at least 11: "
                          f"raise data.val_crop or lower eval.crop_border")


class SRValidator:
    """Built once per run on every rank, then ``run`` at each evaluation (collective)."""

    def __init__(self, cfg: Config, val_lr: Sequence[torch.Tensor], val_hr: Sequence[torch.Tensor],
                 rank: int = 0, world: int = 1, device: torch.device = torch.device("cpu")):
        if not val_lr:
            raise ConfigError("data: super-resolution validation needs at least one validation image")
        self.metrics = parse_metrics(cfg.eval.metrics)
        self.scale, self.crop_border, self.y_channel = cfg.model.scale, crop_border(cfg), cfg.eval.y_channel
        self.rank, self.world, self.device = rank, world, device
        self.mine = list(range(rank, len(val_lr), world))
        self.count = len(val_lr)
        self.val_lr = [val_lr[i] for i in self.mine]
        self.val_hr = [val_hr[i] for i in self.mine]
        # Bicubic in float64, as the inputs were made: the reference a PSNR-oriented G must beat.
        bicubic = [imresize(lr.double(), self.scale).float() for lr in self.val_lr]
        self.baseline = {f"{k}_bicubic": v for k, v in self._reduce(bicubic).items()}

    def _reduce(self, outputs: list[torch.Tensor]) -> dict[str, float]:
        sums = torch.zeros(len(self.metrics), dtype=torch.float64)
        for out, hr in zip(outputs, self.val_hr):
            a, b = to_uint8(out[None]), to_uint8(hr[None])
            for j, name in enumerate(self.metrics):
                sums[j] += METRICS.get(name).compute(a, b, self.crop_border, self.y_channel).sum()
        if self.world > 1:
            sums = sums.to(self._collective_device())
            dist.all_reduce(sums)
        return {name: float(v) / self.count for name, v in zip(self.metrics, sums.cpu().tolist())}

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    @torch.no_grad()
    def upscale(self, g: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        dtype = next(g.parameters()).dtype
        return g(lr[None].to(self.device, dtype))[0].float().cpu()

    def run(self, g: nn.Module) -> dict[str, float]:
        """Mean scores of ``g`` over all validation images, plus the bicubic baseline (every rank)."""
        training = g.training
        g.eval()
        try:
            outputs = [self.upscale(g, lr) for lr in self.val_lr]
        finally:
            g.train(training)
        return {**self._reduce(outputs), **self.baseline}

    def triplets(self, g: nn.Module, count: int = 4, size: Optional[int] = 128) -> list[torch.Tensor]:
        """Up to ``count`` [bicubic, output, target] stacks of this rank's images, centre-cropped to ``size``."""
        pairs = list(zip(self.val_lr, self.val_hr))[:count]
        # One crop size for all, so the stacks can share a grid.
        size = min([size or 1 << 30] + [min(hr.shape[-2:]) for _, hr in pairs])
        stacks = []
        training = g.training
        g.eval()
        try:
            for lr, hr in pairs:
                stack = torch.stack([imresize(lr.double(), self.scale).float(), self.upscale(g, lr), hr])
                stacks.append(_centre_crop(stack, size))
        finally:
            g.train(training)
        return stacks


def _centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x[..., top:top + size, left:left + size]

"""A trained generator behind a server: batches of checked requests in, encoded answers out.

One ``ServedGenerator`` lives in each serving replica. It answers a whole batch in
shared forward passes (``generate_many`` for samples, ``upscale_many`` for images:
tiles of every image in the batch stacked by shape) and counts the batch sizes it
was given, which its health report shows: that is how an operator sees whether
``max_batch`` and ``batch_wait_ms`` fit the traffic.
"""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from distgan.persist.export import load_generator
from distgan.tasks import task_of
from distgan.tasks.generation import sampling
from distgan.tasks.super_resolution.tile_batch import upscale_many
from distgan.tracking.images import render_samples
from distgan.serving.requests import GenerateRequest, UpscaleRequest


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class ServedGenerator:
    """``module`` (eval mode) on ``device`` with its ``generator.json`` ``meta``; ``tile``/``overlap``/``max_tiles``
    bound an upscaling pass as ``distgan upscale --tile`` does (tile 0: whole images)."""

    def __init__(self, module: nn.Module, meta: dict, device: Union[str, torch.device] = "cpu", tile: int = 128,
                 overlap: int = 16, max_tiles: int = 16, metrics: dict | None = None):
        self.module = module.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        task = task_of(meta)
        self.task = task.name
        self.generates = "sample" in task.commands
        """Answers requests for samples (a generation task); otherwise it upscales uploads."""
        self.tile, self.overlap, self.max_tiles = tile, overlap, max_tiles
        self.style_based = sampling.is_style_based(module)
        self.metrics = dict(metrics or {})
        self.batch_sizes: Counter[int] = Counter()
        self._lock = threading.Lock()  # batches may finish on worker threads; counts stay exact

    @classmethod
    def load(cls, source: Union[str, Path], device: Union[str, torch.device] = "cpu", **options) -> "ServedGenerator":
        module, meta = load_generator(source)
        return cls(module, meta, device, **options)

    def _count(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] += 1

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerateRequest]) -> list[bytes]:
        """Each request's samples (the latents ``distgan sample --seed`` draws), encoded as it asked."""
        self._count(sum(r.draw.n for r in requests))
        draws = [r.draw for r in requests]
        if self.device.type != "cpu":
            draws = [sampling.Draw(d.n, d.seed, None if d.labels is None else d.labels.to(self.device), d.truncation)
                     for d in draws]
        outputs = sampling.generate_many(self.module, draws)
        answers = []
        for request, samples in zip(requests, outputs):
            samples = samples.float().cpu()
            if request.format == "png":
                answers.append(png_bytes(render_samples(samples)))
            else:
                buf = io.BytesIO()
                np.savez(buf, **sampling.sample_arrays(samples, request.draw.labels))
                answers.append(buf.getvalue())
        return answers

    def upscale(self, requests: Sequence[UpscaleRequest]) -> list[bytes]:
        """Each image upscaled (PNG), its alpha channel resized bicubically as ``distgan upscale`` does."""
        self._count(len(requests))
        channels = int(self.meta["data_shape"][0])
        outputs = upscale_many(self.module, [r.lr for r in requests], int(self.meta["scale"]), channels, self.tile,
                               self.overlap, self.max_tiles, self.device,
                               extra_channels=[int(r.alpha is not None) for r in requests])
        answers = []
        for request, pixels in zip(requests, outputs):
            if request.alpha is not None:
                big = Image.fromarray(request.alpha).resize((pixels.shape[1], pixels.shape[0]), Image.BICUBIC)
                pixels[:, :, -1] = np.asarray(big)
            answers.append(png_bytes(Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)))
        return answers

    def health(self) -> dict:
        """What is served: the task, the family, the step and metrics it was exported at, and the batch sizes
        this replica has run (``{size: batches}``; samples for generation, images for upscaling)."""
        model = self.meta.get("model", {})
        info = {"status": "ok", "task": self.task, "family": model.get("family"), "step": self.meta.get("step"),
                "data_shape": self.meta.get("data_shape"), "device": str(self.device), "metrics": self.metrics,
                "pid": os.getpid()}
        if self.generates:
            info.update(latent_dim=getattr(self.module, "latent_dim", None),
                        classes=list(self.meta.get("class_names") or []), truncation=self.style_based)
        else:
            info.update(scale=self.meta.get("scale"), tile=self.tile)
        with self._lock:
            info["batch_sizes"] = {str(k): v for k, v in sorted(self.batch_sizes.items())}
        return info

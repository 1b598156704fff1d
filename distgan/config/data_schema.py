"""The ``data`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its size):
what is trained on, how it is read, streamed and degraded. A docstring per field, as everywhere in the tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union


@dataclass
class DegradationConfig:
    blur_sigma: tuple[float, float] = (0.0, 0.0)
    """Gaussian blur of the high-resolution crop before downsampling, sigma drawn from [min, max] per
    image (high-resolution pixels); 0 disables it."""
    noise_sigma: tuple[float, float] = (0.0, 0.0)
    """Gaussian noise added to the low-resolution image, sigma drawn from [min, max] (0..255 scale)."""
    jpeg_quality: tuple[int, int] = (0, 0)
    """JPEG compression of the low-resolution image, quality drawn from [min, max] (1..100); 0 disables it."""


@dataclass
class DataConfig:
    name: Optional[str] = "digits"
    """Built-in data set (``digits``, ``ring8``; ``photos`` for super-resolution); ignored when ``path`` is
    set."""
    path: Optional[str] = None
    """Folder of PNG/JPEG images (searched recursively), or a shard set (``distgan data pack``); a directory or
    a URI (``s3://bucket/prefix``, store options in the query); replaces ``name``. Super-resolution reads the
    same places (its high-resolution images)."""
    resolution: int = 16
    """Image side in pixels; images are resized and centre-cropped to it. Super-resolution: the side of the
    random high-resolution training crops."""
    channels: int = 1
    """1 (grey) or 3 (RGB) for image folders; digits are grey."""
    skip_corrupt: bool = False
    """Skip unreadable images instead of failing: found before the first step when the data is held in memory,
    while streaming otherwise (named in the log, counted in ``data_skipped``, each replaced by the next readable
    image of the listing). Streamed super-resolution also skips, the same way, a training image smaller than the
    crop or one whose size does not match its low-resolution image."""
    stream: Union[bool, Literal["auto"]] = "auto"
    """Decode ``data.path`` ahead of the step in parallel tasks (under Ray: on any node of the cluster)
    instead of decoding all of it into every worker's memory first. ``auto``: stream image folders, hold the
    built-in sets in memory. Memory and start-up then do not grow with the data set (docs/data.md)."""
    shuffle: bool = True
    """Each epoch in a new order, a permutation of the whole data set drawn from ``data.seed`` and the epoch
    number (no shuffle buffer: every sample once per epoch, streamed or not); false: the listing's order every
    epoch. Super-resolution draws every crop at random either way."""
    seed: Optional[int] = None
    """Seeds the data order (and super-resolution's crops); null: ``train.seed``. Set it to vary the
    initialisation across runs while every run sees the same batches."""
    prefetch_batches: int = 4
    """Streaming: batches each worker has decoded or decoding ahead of the step."""
    streamer: Literal["tasks", "ray_data"] = "tasks"
    """Streaming: what decodes under Ray. ``tasks``: a window of ``prefetch_batches`` Ray tasks per worker, one
    batch each; ``ray_data``: a Ray Data ``map_batches`` pipeline per chunk of batches. Both spread over the
    cluster and give the same batches in the same order; Ray Data's executor measured slower and costlier in
    CPU for this one-stage, fixed-order stream (docs/performance.md)."""
    cpus_per_task: float = 1.0
    """Streaming: CPUs each decoding task reserves in Ray (fractions allowed, at least 0.01): the cluster needs
    this much free beside the workers (a CPU-only node will do)."""
    num_samples: int = 20000
    """Size of synthetic data sets (ring8)."""
    lr_path: Optional[str] = None
    """Super-resolution: a folder of low-resolution images paired with ``path`` by file name (relative path,
    any extension), a directory or a URI (not a shard set); null makes the low-resolution inputs from ``path`` on
    the fly."""
    val_path: Optional[str] = None
    """Super-resolution: a folder of high-resolution validation images (a directory, a URI or a shard set); null
    holds out ``val_fraction``."""
    val_fraction: float = 0.1
    """Super-resolution: share of the images of ``path`` held out for validation when ``val_path`` is null
    (at least one image)."""
    val_crop: int = 256
    """Super-resolution: validation images are centre-cropped to at most this side (high-resolution pixels)
    to bound validation time; 0 validates on whole images."""
    flip: bool = True
    """Super-resolution: random horizontal flips of training crops."""
    rot90: bool = True
    """Super-resolution: random 90-degree rotations (and so vertical flips) of training crops."""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    """Super-resolution: how low-resolution inputs are made from high-resolution crops."""

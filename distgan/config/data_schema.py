"""The ``data`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its size):
what is trained on, how it is read, streamed and degraded. A docstring per field, as everywhere in the tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union


@dataclass
class RealESRGANFirstConfig:
    """The first degradation round of Real-ESRGAN (Wang et al., 2021; its ``train_realesrnet_x4plus.yml``):
    blur, random resize, Gaussian or Poisson noise, JPEG. Each default is the published option named."""

    blur_prob: float = 1.0
    """Chance the round blurs (published: the first round always does)."""
    kernel_size: tuple[int, int] = (7, 21)
    """Blur kernel side, drawn uniformly from the odd numbers in [min, max] (published: 7, 9, ..., 21;
    ``blur_kernel_size: 21``); both odd, max at most ``data.resolution``."""
    kernel_prob: tuple[float, float, float, float, float, float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """Chances of the kernel shapes iso, aniso, generalized_iso, generalized_aniso, plateau_iso,
    plateau_aniso, summing to 1 (published ``kernel_prob``)."""
    sinc_prob: float = 0.1
    """Chance the blur is a sinc (circular low-pass) kernel instead of the shapes above (``sinc_prob``)."""
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    """Gaussian-family kernels: sigma along each axis, drawn from [min, max] (HR pixels; ``blur_sigma``)."""
    betag_range: tuple[float, float] = (0.5, 4.0)
    """Generalized Gaussian shape beta: half the draws from [min, 1], half from [1, max] (``betag_range``)."""
    betap_range: tuple[float, float] = (1.0, 2.0)
    """Plateau kernel shape beta, drawn as ``betag_range`` is (``betap_range``)."""
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    """Chances of resizing up, down or keeping the size, summing to 1 (``resize_prob``)."""
    resize_range: tuple[float, float] = (0.15, 1.5)
    """Resize factor: up from [1, max], down from [min, 1] (``resize_range``); max at most 8."""
    gaussian_noise_prob: float = 0.5
    """Chance the noise is Gaussian; otherwise Poisson (``gaussian_noise_prob``)."""
    noise_range: tuple[float, float] = (1.0, 30.0)
    """Gaussian noise sigma on the 0..255 scale, drawn from [min, max] (``noise_range``)."""
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    """Poisson noise: multiplier of the shot noise of the 8-bit image, drawn from [min, max]
    (``poisson_scale_range``)."""
    gray_noise_prob: float = 0.4
    """Chance the noise is the same in every channel (grey) rather than per channel (``gray_noise_prob``)."""
    jpeg_range: tuple[int, int] = (30, 95)
    """JPEG quality, an integer drawn from [min, max] in 1..100 (``jpeg_range``)."""


@dataclass
class RealESRGANSecondConfig:
    """The second degradation round (the published options ending in 2). Its JPEG is applied with the final
    sinc filter, in a random order (``RealESRGANConfig.resize_back_first_prob``)."""

    blur_prob: float = 0.8
    """Chance the second round blurs (``second_blur_prob``)."""
    kernel_size: tuple[int, int] = (7, 21)
    """Blur kernel side, odd, drawn from [min, max] (``blur_kernel_size2: 21``, sides 7..21)."""
    kernel_prob: tuple[float, float, float, float, float, float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """Chances of iso, aniso, generalized_iso, generalized_aniso, plateau_iso, plateau_aniso
    (``kernel_prob2``)."""
    sinc_prob: float = 0.1
    """Chance of a sinc kernel instead (``sinc_prob2``)."""
    blur_sigma: tuple[float, float] = (0.2, 1.5)
    """Sigma of the Gaussian-family kernels (``blur_sigma2``)."""
    betag_range: tuple[float, float] = (0.5, 4.0)
    """Generalized Gaussian beta (``betag_range2``)."""
    betap_range: tuple[float, float] = (1.0, 2.0)
    """Plateau beta (``betap_range2``)."""
    resize_prob: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Chances of up, down, keep (``resize_prob2``); the factor applies to the final LR size."""
    resize_range: tuple[float, float] = (0.3, 1.2)
    """Resize factor range (``resize_range2``); max at most 8."""
    gaussian_noise_prob: float = 0.5
    """Chance of Gaussian rather than Poisson noise (``gaussian_noise_prob2``)."""
    noise_range: tuple[float, float] = (1.0, 25.0)
    """Gaussian sigma, 0..255 scale (``noise_range2``)."""
    poisson_scale_range: tuple[float, float] = (0.05, 2.5)
    """Poisson noise multiplier (``poisson_scale_range2``)."""
    gray_noise_prob: float = 0.4
    """Chance of grey noise (``gray_noise_prob2``)."""
    jpeg_range: tuple[int, int] = (30, 95)
    """JPEG quality of the final compression (``jpeg_range2``)."""


@dataclass
class RealESRGANConfig:
    """Real-ESRGAN's second-order degradation (``data.degradation.type: realesrgan``)."""

    first: RealESRGANFirstConfig = field(default_factory=RealESRGANFirstConfig)
    """The first round: blur, resize, noise, JPEG."""
    second: RealESRGANSecondConfig = field(default_factory=RealESRGANSecondConfig)
    """The second round: blur (with a chance), resize, noise; its JPEG comes with the final sinc."""
    sinc_cutoff: tuple[float, float] = (0.2, 1.0)
    """Sinc blur kernels of side 13 or more: cutoff frequency drawn from [min, max], in units of pi
    radians per pixel (Nyquist = 1; published: [pi/5, pi]); within [0.01, 1]."""
    sinc_cutoff_small: tuple[float, float] = (1 / 3, 1.0)
    """Sinc blur kernels of side under 13: cutoff range in units of pi (published: [pi/3, pi])."""
    final_sinc_prob: float = 0.8
    """Chance the final resize back to the LR size is followed by a sinc filter (``final_sinc_prob``)."""
    final_kernel_size: tuple[int, int] = (7, 21)
    """Final sinc filter side, odd, drawn from [min, max] (published: 7..21)."""
    final_sinc_cutoff: tuple[float, float] = (1 / 3, 1.0)
    """Final sinc cutoff in units of pi (published: [pi/3, pi])."""
    resize_back_first_prob: float = 0.5
    """Chance the end is [resize back + sinc] then JPEG; otherwise JPEG then [resize back + sinc] (the
    published pipeline draws each order with 0.5)."""
    resize_mode_prob: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    """Chances of the resize modes area, bilinear, bicubic (torch's ``interpolate``, no antialiasing), for
    every random resize and the resize back, summing to 1 (published: a uniform choice)."""
    sharpen_gt: bool = False
    """Unsharp-mask the HR crop first: the LR is made from the sharpened crop and it is the training target
    of the pixel and perceptual losses (published ``gt_usm: true``); D's real images stay the plain crops, as
    Real-ESRGAN's ``gan_gt_usm: false``. Validation targets stay unsharpened."""
    usm_weight: float = 0.5
    """Unsharp mask: sharpened = x + weight (x - blur(x)) (published 0.5); 0..10."""
    usm_radius: int = 50
    """Unsharp mask Gaussian: side radius + 1 when even (published 50: 51 taps, sigma 8 by OpenCV's rule
    ``0.3 ((side - 1) / 2 - 1) + 0.8``); 1..255."""
    usm_threshold: float = 10.0
    """Unsharp mask: sharpen only where |x - blur(x)| exceeds this many grey levels (0..255 scale), the mask
    softened by the same Gaussian (published 10)."""


@dataclass
class DegradationConfig:
    type: str = "classic"
    """Pipeline from the degradation registry: ``classic`` (one pass: blur, bicubic downsampling, noise,
    JPEG, with the three keys below) or ``realesrgan`` (second-order degradation, ``realesrgan.*``)."""
    blur_sigma: tuple[float, float] = (0.0, 0.0)
    """``classic``: Gaussian blur of the high-resolution crop before downsampling, sigma drawn from [min, max]
    per image (high-resolution pixels); 0 disables it."""
    noise_sigma: tuple[float, float] = (0.0, 0.0)
    """``classic``: Gaussian noise added to the low-resolution image, sigma drawn from [min, max] (0..255
    scale)."""
    jpeg_quality: tuple[int, int] = (0, 0)
    """``classic``: JPEG compression of the low-resolution image, quality drawn from [min, max] (1..100); 0
    disables it."""
    realesrgan: RealESRGANConfig = field(default_factory=RealESRGANConfig)
    """``realesrgan``: the ranges and chances of Real-ESRGAN's pipeline, published defaults."""
    device: Literal["data", "trainer"] = "data"
    """Where training inputs are degraded. ``data``: one crop at a time where the crops are cut (the streamer's
    tasks, or the training thread for data held in memory). ``trainer``: the data path sends the plain HR
    crops and each sample's generator state, and the training worker degrades the whole batch just before
    the step, on its own device (the GPU when it has one; float32 whatever the engines compute in). Both give
    the same inputs (float tolerance). Paired low-resolution images (``data.lr_path``) are not degraded."""


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

"""Score an SR generator on a benchmark folder the way SR papers do (``distgan evaluate RUN --hr-folder DIR``).

Set5, Set14, BSD100, Urban100 and DIV2K-val are published as high-resolution
images (and for DIV2K, bicubic low-resolution ones beside them). The papers'
protocol, kept here so a number printed by distgan can sit in their tables:

* HR is cropped to a multiple of the scale from the bottom and right (MATLAB's
  ``modcrop``), so it has whole low-resolution pixels.
* Without an LR folder, LR = MATLAB's ``imresize(hr, 1/scale, 'bicubic')`` of the
  8-bit HR, rounded back to 8 bits as MATLAB does for uint8 images
  (``distgan.data.resize.imresize``): the benchmark LR files themselves. With
  one, LR and HR pair by relative path without extension (``sources.pair``, as
  for training data; DIV2K's ``0801x4.png`` pairs with ``0801.png``) and LR x
  scale must equal the cropped HR.
* G's output and bicubic upsampling of the same LR are rounded to 8 bits and
  scored by ``distgan.metrics.image_quality``: PSNR and SSIM on the Y channel
  (MATLAB's ``rgb2ycbcr``; a grey image as is), ``scale`` pixels cut from every edge.
* One row per image and the mean of the per-image values (not a PSNR of the
  pooled error), bicubic's scores beside G's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from distgan.config import ConfigError
from distgan.data.catalog import Catalog, SampleReader, catalog_at
from distgan.data.images import decode_bytes
from distgan.data.resize import imresize
from distgan.metrics.image_quality import psnr, ssim
from distgan.persist.export import META, find_generator
from distgan.tasks.super_resolution.sources import pair
from distgan.tasks.super_resolution.upscale import (Device, load_sr_generator, resolve_device, upscale_to_uint8,
                                                   write_png)

HR_FLAG, LR_FLAG = "--hr-folder", "--lr-folder"


@dataclass(frozen=True)
class ImageScore:
    image: str
    """Relative path in the HR folder."""
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    height: int
    width: int
    """Of the (cropped) HR image scored."""


@dataclass
class Benchmark:
    generator: str
    step: Optional[int]
    scale: int
    hr_folder: str
    lr_folder: Optional[str]
    rows: list[ImageScore] = field(default_factory=list)

    @property
    def crop_border(self) -> int:
        return self.scale

    def mean(self) -> dict[str, float]:
        names = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
        return {k: sum(getattr(r, k) for r in self.rows) / len(self.rows) for k in names}

    def to_dict(self) -> dict:
        return {"generator": self.generator, "step": self.step, "scale": self.scale, "hr_folder": self.hr_folder,
                "lr_folder": self.lr_folder, "lr": "given" if self.lr_folder else "bicubic (MATLAB imresize)",
                "y_channel": True, "crop_border": self.crop_border, "images": [asdict(r) for r in self.rows],
                "mean": self.mean()}


def _flags(message: str) -> str:
    # sources.pair speaks of the training keys; here the same folders are this command's flags.
    return message.replace("data.lr_path", LR_FLAG).replace("data.path", HR_FLAG)


@dataclass(frozen=True)
class _ScaleSuffixDropped:
    """An LR reader whose names lose DIV2K's ``x{scale}`` suffix (``0801x4.png`` pairs with ``0801.png``);
    reading and error messages still use the real files."""

    reader: SampleReader
    suffix: str

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, i: int) -> bytes:
        return self.reader.read(i)

    def describe(self, i: int) -> str:
        return self.reader.describe(i)

    def relative(self, i: int) -> str:
        stem, dot, extension = self.reader.relative(i).rpartition(".")
        return stem.removesuffix(self.suffix) + dot + extension


def _pairs(hr_folder: str, lr_folder: Optional[str], scale: int) -> tuple[Catalog, Optional[Catalog],
                                                                          dict[int, int]]:
    try:
        hr = catalog_at(hr_folder, HR_FLAG)
        if lr_folder is None:
            return hr, None, {}
        lr = catalog_at(lr_folder, LR_FLAG)
        suffix = f"x{scale}"
        if all(name.rpartition(".")[0].endswith(suffix) for name in lr.relative_names()):
            lr = replace(lr, reader=_ScaleSuffixDropped(lr.reader, suffix))
        return hr, lr, pair(hr, lr)
    except ConfigError as exc:
        raise ConfigError(_flags(str(exc))) from None


def _decode(found: Catalog, i: int, channels: int) -> torch.Tensor:
    try:
        return decode_bytes(found.reader.read(i), channels)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for a truncated or unknown file
        raise ConfigError(f"{found.reader.describe(i)}: not a readable image ({exc})") from None


def bicubic_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 [C, H, W] (H, W multiples of ``scale``) -> MATLAB's uint8 ``imresize(hr, 1/scale)``."""
    return imresize(hr.double(), 1 / scale).round().clamp(0, 255).to(torch.uint8)


def bicubic_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 [C, h, w] -> MATLAB's uint8 ``imresize(lr, scale)``: the baseline."""
    return imresize(lr.double(), scale).round().clamp(0, 255).to(torch.uint8)


def score_pair(sr: torch.Tensor, hr: torch.Tensor, scale: int, name: str) -> tuple[float, float]:
    """(PSNR, SSIM) of uint8 [C, H, W] images on Y with a ``scale``-pixel border cut."""
    try:
        return (float(psnr(sr[None], hr[None], scale, y_channel=True)[0]),
                float(ssim(sr[None], hr[None], scale, y_channel=True)[0]))
    except ValueError as exc:  # too small for SSIM's window after the border crop
        raise ConfigError(f"{name}: {exc}") from None


def score_folders(generator: Union[str, Path], hr_folder: str, lr_folder: Optional[str] = None, *, tile: int = 0,
                  overlap: int = 16, device: Device = "auto", out: Optional[Union[str, Path]] = None,
                  progress: Optional[Callable[[ImageScore], None]] = None) -> Benchmark:
    """PSNR/SSIM of ``generator`` (a run, checkpoint or generator directory, or its URI) and of bicubic on every
    image of ``hr_folder``; ``out``: also write G's outputs there as PNGs (the tree mirrored)."""
    device = resolve_device(device)
    g, scale, channels = load_sr_generator(generator, None, "evaluate --hr-folder")
    meta_step = _step(generator)
    hr, lr, lr_of = _pairs(hr_folder, lr_folder, scale)
    result = Benchmark(str(generator), meta_step, scale, hr_folder, lr_folder)
    for i in range(len(hr)):
        name = hr.reader.relative(i)
        high = _decode(hr, i, channels)
        h, w = high.shape[-2] // scale * scale, high.shape[-1] // scale * scale
        if h == 0 or w == 0:
            raise ConfigError(f"{hr.reader.describe(i)}: {high.shape[-2]}x{high.shape[-1]} px is smaller than "
                              f"one x{scale} low-resolution pixel")
        high = high[:, :h, :w]  # modcrop
        if lr is None:
            low = bicubic_lr(high, scale)
        else:
            low = _decode(lr, lr_of[i], channels)
            if (low.shape[-2] * scale, low.shape[-1] * scale) != (h, w):
                raise ConfigError(
                    f"{lr.reader.describe(lr_of[i])}: {low.shape[-2]}x{low.shape[-1]} px x{scale} is "
                    f"{low.shape[-2] * scale}x{low.shape[-1] * scale}, but its high-resolution image "
                    f"{hr.reader.describe(i)} is {h}x{w} (after cropping to a multiple of {scale}); pairs must "
                    f"match in size")
        pixels = upscale_to_uint8(g, low[None].float() / 127.5 - 1, scale, tile, overlap, device)
        sr = torch.from_numpy(pixels).permute(2, 0, 1)
        if out is not None:
            write_png(pixels, Path(out) / Path(name).with_suffix(".png"))
        scores = score_pair(sr, high, scale, hr.reader.describe(i))
        baseline = score_pair(bicubic_up(low, scale), high, scale, hr.reader.describe(i))
        row = ImageScore(name, *scores, *baseline, h, w)
        result.rows.append(row)
        if progress is not None:
            progress(row)
    return result


def _step(generator: Union[str, Path]) -> Optional[int]:
    return json.loads(find_generator(generator).with_name(META).read_text()).get("step")


def format_table(result: Benchmark) -> str:
    """The SR papers' layout: one row per image, PSNR (dB, 2 decimals) and SSIM (4), bicubic beside, a mean."""
    lr = (f"LR from {result.lr_folder}" if result.lr_folder else "LR by MATLAB bicubic downsampling of the HR")
    head = (f"{result.generator} (step {result.step}): x{result.scale} on {len(result.rows)} images of "
            f"{result.hr_folder}; {lr}; PSNR/SSIM on Y, {result.crop_border} px border cropped")
    names = [r.image for r in result.rows] + ["mean"]
    width = max(len(n) for n in names + ["image"])
    columns = ("PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM")
    lines = [head, f"{'image':<{width}}  " + "  ".join(f"{c:>12}" for c in columns)]

    def line(name: str, values: tuple[float, float, float, float]) -> str:
        cells = [f"{values[0]:.2f}", f"{values[1]:.4f}", f"{values[2]:.2f}", f"{values[3]:.4f}"]
        return f"{name:<{width}}  " + "  ".join(f"{c:>12}" for c in cells)

    lines += [line(r.image, (r.psnr, r.ssim, r.bicubic_psnr, r.bicubic_ssim)) for r in result.rows]
    mean = result.mean()
    lines.append(line("mean", (mean["psnr"], mean["ssim"], mean["bicubic_psnr"], mean["bicubic_ssim"])))
    return "\n".join(lines)

"""A folder of PNG/JPEG images of any size, resized and centre-cropped to the configured resolution."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from distgan.config import ConfigError, DataConfig
from distgan.data import Dataset, Source

log = logging.getLogger(__name__)

EXTENSIONS = {".png", ".jpg", ".jpeg"}


def image_files(cfg: DataConfig) -> list[Path]:
    root = Path(cfg.path).expanduser()
    if not root.exists():
        raise ConfigError(f"data.path {cfg.path!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"data.path {cfg.path!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise ConfigError(f"data.path {cfg.path!r}: no PNG/JPEG images found (searched recursively)")
    return files


def _read(path: Path, cfg: DataConfig) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("L" if cfg.channels == 1 else "RGB")
        # Resize the shorter side to R with an anti-aliasing filter, then crop the centre square.
        w, h = img.size
        scale = cfg.resolution / min(w, h)
        size = (max(cfg.resolution, round(w * scale)), max(cfg.resolution, round(h * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        left, top = (size[0] - cfg.resolution) // 2, (size[1] - cfg.resolution) // 2
        img = img.crop((left, top, left + cfg.resolution, top + cfg.resolution))
        array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def check(cfg: DataConfig) -> None:
    files = image_files(cfg)
    bad = [f for f in files if not _readable(f)]
    if bad and not cfg.skip_corrupt:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(f"data.path: cannot read image {str(bad[0])!r}{more}; fix or remove it, "
                          f"or set data.skip_corrupt=true to skip unreadable files")
    if len(bad) == len(files):
        raise ConfigError(f"data.path {cfg.path!r}: none of the {len(files)} images can be read")


def load(cfg: DataConfig) -> Dataset:
    arrays, skipped = [], 0
    for path in image_files(cfg):
        try:
            arrays.append(_read(path, cfg))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if not cfg.skip_corrupt:
                raise ConfigError(f"data.path: cannot read image {str(path)!r}: {exc}") from None
            skipped += 1
    if skipped:
        log.warning("data.path %s: skipped %d unreadable image(s) (data.skip_corrupt)", cfg.path, skipped)
    if not arrays:
        raise ConfigError(f"data.path {cfg.path!r}: none of the images can be read")
    x = torch.from_numpy(np.stack(arrays)).float().div_(127.5).sub_(1.0)
    return Dataset(x=x, labels=None, kind="image", name=Path(cfg.path).name, skipped=skipped)


SOURCE = Source(shape=lambda cfg: (cfg.channels, cfg.resolution, cfg.resolution), load=load, check=check)

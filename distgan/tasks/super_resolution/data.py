"""Super-resolution data: high-resolution images (and optionally their paired low-resolution versions), a
fixed validation set. ``SRBatches`` (``distgan.tasks.super_resolution.batches``) cuts each rank random
(LR, HR) training crops.

Three sources, picked by the config:

* ``data.name: photos`` (``data.path`` null): real photographs that ship inside scikit-image and
  scikit-learn, so SR runs offline. Training: the colour photos astronaut, chelsea, retina,
  hubble_deep_field, immunohistochemistry (skimage) and china (sklearn), plus the grey photos camera,
  moon, brick, grass, gravel, coins and clock as R = G = B for texture. Validation: coffee, rocket
  (skimage) and flower (sklearn), never trained on. The list is fixed: ``data.val_path`` and
  ``data.val_fraction`` do not apply. Generation families cannot use it: its registry entry's ``load``
  raises a ConfigError (it holds LR/HR pairs, not samples); ``photos.SR_DATASETS`` names it for such checks.
* ``data.path``: a folder of HR images (PNG/JPEG, recursive); validation is ``data.val_path``, or
  else a held-out ``data.val_fraction`` of the folder (at least one image, at least one left to train).
  LR inputs are made on the fly by ``make_lr`` (bicubic + ``data.degradation``).
* ``data.path`` + ``data.lr_path``: paired folders, matched by relative path ignoring the extension;
  every HR must be exactly ``model.scale`` times its LR. Validation is a held-out fraction of the pairs.

Held-out images are chosen by a hash of their relative path: the same on every worker and in every
run, and adding files to the folder does not reshuffle the choice for the others.

Training images stay uint8 in memory (a quarter of float32). Validation images are float32 in
[-1, 1]: each is cropped to a multiple of the scale (centred, to at most ``data.val_crop``), and its
LR is made once, deterministically (fixed seed per image), whatever ``train.seed`` is.

Reading: EXIF orientation applied; grey (L) is replicated to RGB or RGB reduced to luma
(ITU-R 601-2, PIL's ``L``) as ``data.channels`` asks; transparency (RGBA, LA, P with alpha) is
composited on black; 16-bit grey PNGs are scaled to 8 bits by /257 (65535 -> 255), not clipped;
48-bit RGB PNGs are reduced to 8 bits by PIL itself; CMYK converted by PIL (``distgan.data.images``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from distgan.config import ConfigError, DataConfig
from distgan.data import photos
from distgan.data.degradations import check_degradation, from_uint8, make_lr
from distgan.data.folder import READ_ERRORS, image_files, probe, screen, unreadable
from distgan.data.images import read_image, to_tensor

__all__ = ["SRData", "check_sr", "load_sr", "read_image"]

log = logging.getLogger(__name__)

VAL_SEED = 1234
"""Seeds the validation degradations: fixed, so every run validates on the same inputs."""


@dataclass
class SRData:
    train_hr: list[torch.Tensor]
    """Training HR images, uint8 [C, H, W], each at least ``data.resolution`` on both sides."""
    train_lr: Optional[list[torch.Tensor]]
    """Their paired LR images, uint8 [C, H/s, W/s]; None when LR inputs are made on the fly."""
    val_hr: list[torch.Tensor]
    """Validation HR images, float32 [-1, 1], [C, H, W], H and W multiples of the scale."""
    val_lr: list[torch.Tensor]
    """Validation LR inputs, float32 [-1, 1], [C, H/s, W/s]."""
    val_names: list[str]
    """Validation image names (relative paths, or photo names)."""
    name: str
    """``photos`` or the folder's name."""
    skipped: int = 0
    """Unreadable files skipped under ``data.skip_corrupt``."""
    train_files: tuple[str, ...] = ()
    """Training HR files, in ``train_hr``'s order; the only record of them when they stream (``train_hr`` empty)."""
    train_lr_files: Optional[tuple[str, ...]] = None
    """Their paired LR files, when there are."""


# -- which files: listing, screening (``distgan.data.folder``'s probe and rules), pairing, splitting ------


def _list(folder: str, key: str) -> list[Path]:
    try:
        return image_files(DataConfig(path=folder))
    except ConfigError as exc:  # its messages name data.path; this folder may be another key's
        raise ConfigError(str(exc).replace("data.path", key, 1)) from None


def _relative(path: Path, folder: str) -> str:
    """The file's path inside the folder; just its name for a file symlinked in from elsewhere."""
    root = Path(folder).expanduser().resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def _stems(files: list[Path], folder: str, key: str) -> dict[str, Path]:
    """Relative path without extension -> file."""
    out: dict[str, Path] = {}
    for path in files:
        stem = Path(_relative(path, folder)).with_suffix("").as_posix()
        if stem in out:
            raise ConfigError(f"{key} {folder!r}: {str(out[stem])!r} and {str(path)!r} differ only in extension; "
                              f"pairs are matched by name without extension, so keep one of them")
        out[stem] = path
    return out


def _pair(cfg: DataConfig) -> dict[Path, Path]:
    """HR file -> its LR file; every file of either folder must have its partner."""
    hr = _stems(_list(cfg.path, "data.path"), cfg.path, "data.path")
    lr = _stems(_list(cfg.lr_path, "data.lr_path"), cfg.lr_path, "data.lr_path")
    for mine, theirs, key, other, what in ((hr, lr, "data.lr_path", cfg.lr_path, "low"),
                                           (lr, hr, "data.path", cfg.path, "high")):
        missing = [stem for stem in mine if stem not in theirs]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ConfigError(f"{key} {other!r}: no {what}-resolution image for {str(mine[missing[0]])!r}{more}; "
                              f"looked for {missing[0]}.png/.jpg/.jpeg there (pairs match by relative path, "
                              f"extension ignored)")
    return {hr[stem]: lr[stem] for stem in hr}


def _split(files: list[Path], cfg: DataConfig) -> tuple[list[Path], list[Path]]:
    """(train, val): a held-out ``data.val_fraction`` of the files, chosen by a hash of the relative path."""
    n = len(files)
    n_val = max(1, round(n * cfg.val_fraction))
    if n - n_val < 1:
        raise ConfigError(f"data.val_fraction: holding out {n_val} of the {n} readable images of data.path "
                          f"{cfg.path!r} for validation leaves none to train on; add images, lower "
                          f"data.val_fraction, or set data.val_path to a folder of validation images")
    ranked = sorted(files, key=lambda p: hashlib.sha1(_relative(p, cfg.path).encode()).hexdigest())
    val = set(ranked[:n_val])
    return [p for p in files if p not in val], [p for p in files if p in val]


@dataclass
class _Plan:
    train: list[Path]
    val: list[Path]
    lr: dict[Path, Path]
    """HR -> LR for paired folders, else empty."""
    failed: dict[Path, str]


def _plan(cfg: DataConfig, scale: int) -> _Plan:
    """The files to train and validate on; raises on anything that cannot work (headers only)."""
    if cfg.lr_path is not None:
        pairs = _pair(cfg)
        failed = screen(list(pairs), "data.path", cfg.path, cfg.skip_corrupt)
        failed.update(screen(list(pairs.values()), "data.lr_path", cfg.lr_path, cfg.skip_corrupt))
        usable = [hr for hr, lr in pairs.items() if hr not in failed and lr not in failed]
        if not usable:
            raise ConfigError(f"data.path {cfg.path!r}: no pair of images has both images readable")
        sizes = {p: probe(p)[1] for pair in pairs.items() for p in pair if p not in failed}
        _check_pairs({hr: pairs[hr] for hr in usable}, sizes, scale)
        train, val = _split(usable, cfg)
    else:
        files = _list(cfg.path, "data.path")
        failed = screen(files, "data.path", cfg.path, cfg.skip_corrupt)
        pairs, usable = {}, [p for p in files if p not in failed]
        if cfg.val_path is None:
            train, val = _split(usable, cfg)
        else:
            val_files = _list(cfg.val_path, "data.val_path")
            failed.update(screen(val_files, "data.val_path", cfg.val_path, cfg.skip_corrupt))
            train, val = usable, [p for p in val_files if p not in failed]
        sizes = {p: probe(p)[1] for p in train + val}
    _check_train_sizes(train, sizes, cfg)
    _check_val_sizes(val, sizes, cfg, scale)
    return _Plan(train=train, val=val, lr=pairs, failed=failed)


# -- checks --------------------------------------------------------------------------------------------


def _check_train_sizes(files: list[Path], sizes: dict[Path, tuple[int, int]], cfg: DataConfig) -> None:
    r = cfg.resolution
    for path in files:
        h, w = sizes[path]
        if h < r or w < r:
            raise ConfigError(f"data.path {cfg.path!r}: image {str(path)!r} is {w}x{h}, smaller than the {r}x{r} "
                              f"training crop (data.resolution={r}); lower data.resolution or remove the image")


def _check_val_sizes(files: list[Path], sizes: dict[Path, tuple[int, int]], cfg: DataConfig, scale: int) -> None:
    need = max(scale, _blur_radius(cfg) + 1)
    key, folder = ("data.val_path", cfg.val_path) if cfg.val_path else ("data.path", cfg.path)
    for path in files:
        h, w = (min(side, cfg.val_crop or side) // scale * scale for side in sizes[path])
        if min(h, w) < need:
            raise ConfigError(f"{key} {folder!r}: validation image {str(path)!r} is {sizes[path][1]}x"
                              f"{sizes[path][0]}, {w}x{h} once cut to data.val_crop and to multiples of "
                              f"model.scale={scale}: too small to validate on (at least {need} px a side); remove it")


def _blur_radius(cfg: DataConfig) -> int:
    """How far the blur reaches (paired LR comes as is, unblurred)."""
    return 0 if cfg.lr_path else math.ceil(3 * cfg.degradation.blur_sigma[1])


def _check_pairs(pairs: dict[Path, Path], sizes: dict[Path, tuple[int, int]], scale: int) -> None:
    for hr, lr in pairs.items():
        (hh, hw), (lh, lw) = sizes[hr], sizes[lr]
        if (hh, hw) != (lh * scale, lw * scale):
            raise ConfigError(f"data.lr_path: sizes do not match for {str(lr)!r}: it is {lw}x{lh}, its "
                              f"high-resolution image {str(hr)!r} is {hw}x{hh}; the high-resolution image must be "
                              f"exactly model.scale={scale} times larger, {lw * scale}x{lh * scale}")


def _check_settings(cfg: DataConfig, scale: int) -> None:
    """Values that need no file: crop sizes against the scale, degradation ranges, folder keys."""
    if cfg.resolution % scale:
        raise ConfigError(f"data.resolution: the high-resolution crop side must be a multiple of model.scale="
                          f"{scale}, got {cfg.resolution}; use {max(scale, cfg.resolution // scale * scale)}")
    if cfg.val_crop < 0 or 0 < cfg.val_crop < scale:
        raise ConfigError(f"data.val_crop: must be 0 (whole images) or at least model.scale={scale}, got "
                          f"{cfg.val_crop}")
    check_degradation(cfg.degradation, cfg.resolution)
    if cfg.val_crop and cfg.val_crop // scale * scale <= _blur_radius(cfg):
        raise ConfigError(f"data.val_crop: {cfg.val_crop} px is too small for the blur kernel of radius "
                          f"{_blur_radius(cfg)} (data.degradation.blur_sigma); raise it or set it to 0")
    if cfg.path is None:
        for key in ("lr_path", "val_path"):
            if getattr(cfg, key) is not None:
                raise ConfigError(f"data.{key}: applies to image folders (data.path), which is not set; the "
                                  f"photos data set has a fixed validation list ({', '.join(photos.VALIDATION)})")
        return
    if cfg.lr_path is not None and cfg.val_path is not None:
        raise ConfigError("data.val_path: not supported with paired folders (data.lr_path); validation holds out "
                          "data.val_fraction of the pairs; set data.val_path to null")
    if cfg.val_path is None and not 0 < cfg.val_fraction < 1:
        raise ConfigError(f"data.val_fraction: must be in (0, 1), got {cfg.val_fraction}; SR always validates "
                          f"on at least one held-out image (or set data.val_path)")


def check_sr(cfg: DataConfig, scale: int) -> None:
    """Fail early (before Ray starts) on SR data that cannot work as configured; reads headers only."""
    _check_settings(cfg, scale)
    if cfg.path is not None:
        _plan(cfg, scale)
    elif cfg.name in photos.SR_DATASETS:
        photos.check(cfg)
    else:
        raise ConfigError(f"data.name: {cfg.name!r} is not a super-resolution data set; use "
                          f"{', '.join(sorted(photos.SR_DATASETS))}, or set data.path to a folder of "
                          f"high-resolution images")


# -- loading -------------------------------------------------------------------------------------------


def _val_item(hr: torch.Tensor, lr: Optional[torch.Tensor], cfg: DataConfig, scale: int,
              index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre crop to at most ``val_crop`` (a multiple of the scale); the LR given, or made with a fixed seed."""
    height, width = hr.shape[-2:]
    limit = cfg.val_crop if cfg.val_crop else max(height, width)
    h, w = min(height, limit) // scale * scale, min(width, limit) // scale * scale
    # Offsets on the LR grid, so a paired LR crop covers exactly the same area.
    top, left = (height - h) // 2 // scale, (width - w) // 2 // scale
    hr = from_uint8(hr[:, top * scale:top * scale + h, left * scale:left * scale + w])
    if lr is not None:
        return hr, from_uint8(lr[:, top:top + h // scale, left:left + w // scale])
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([VAL_SEED, index]).generate_state(1)[0]))
    return hr, make_lr(hr, scale, cfg.degradation, gen)


def _decode(paths: list[Path], key: str, cfg: DataConfig, failed: dict[Path, str]) -> dict[Path, torch.Tensor]:
    """Decode the files of folder ``key``; those that fail (a truncated JPEG passes ``verify``) go to ``failed``
    under ``data.skip_corrupt``, else raise."""
    out = {}
    for path in paths:
        try:
            out[path] = read_image(path, cfg.channels)
        except READ_ERRORS as exc:
            why = str(exc) or type(exc).__name__
            if not cfg.skip_corrupt:
                raise unreadable(key, getattr(cfg, key.removeprefix("data.")), path, why) from None
            failed[path] = why
    return out


def load_sr(cfg: DataConfig, scale: int, stream: bool = False) -> SRData:
    """Load the SR training and validation images named by the config (see the module docstring). With
    ``stream``, the training images are listed and their headers checked but not decoded: only
    ``train_files`` (and ``train_lr_files``) say what they are, for the decoding tasks."""
    _check_settings(cfg, scale)
    if cfg.path is None:
        if cfg.name not in photos.SR_DATASETS:
            check_sr(cfg, scale)  # raises, naming the key
        return _load_photos(cfg, scale)
    plan = _plan(cfg, scale)
    val_key = "data.val_path" if cfg.val_path else "data.path"
    decoded = [] if stream else plan.train
    images = _decode(decoded, "data.path", cfg, plan.failed)
    images.update(_decode(plan.val, val_key, cfg, plan.failed))
    if plan.lr:
        images.update(_decode([plan.lr[p] for p in decoded + plan.val], "data.lr_path", cfg, plan.failed))

    def ok(hr: Path) -> bool:
        return hr in images and (not plan.lr or plan.lr[hr] in images)

    train, val = [p for p in plan.train if stream or ok(p)], [p for p in plan.val if ok(p)]
    for what, kept in (("training", train), ("validation", val)):
        if not kept:
            raise ConfigError(f"data.path {cfg.path!r}: none of the {what} images can be read")
    # Decoded sizes are the truth (a PNG's EXIF orientation can come after its pixels, past the probe).
    sizes = {p: tuple(t.shape[-2:]) for p, t in images.items()}
    _check_train_sizes([p for p in train if p in sizes], sizes, cfg)  # streamed ones: by their headers, in _plan
    _check_val_sizes(val, sizes, cfg, scale)
    if plan.lr:
        _check_pairs({p: plan.lr[p] for p in train + val if p in sizes}, sizes, scale)
    pairs = [_val_item(images[p], images[plan.lr[p]] if plan.lr else None, cfg, scale, i)
             for i, p in enumerate(val)]
    names = [_relative(p, cfg.val_path or cfg.path) for p in val]
    if plan.failed:
        log.warning("data.path %r: skipped %d unreadable image(s) (data.skip_corrupt=true), first %s",
                    cfg.path, len(plan.failed), next(iter(plan.failed)))
    return SRData(train_hr=[] if stream else [images[p] for p in train],
                  train_lr=None if stream or not plan.lr else [images[plan.lr[p]] for p in train],
                  val_hr=[hr for hr, _ in pairs], val_lr=[lr for _, lr in pairs], val_names=names,
                  name=Path(cfg.path).expanduser().resolve().name, skipped=len(plan.failed),
                  train_files=tuple(str(p) for p in train),
                  train_lr_files=tuple(str(plan.lr[p]) for p in train) if plan.lr else None)


def _load_photos(cfg: DataConfig, scale: int) -> SRData:
    photos.check(cfg)

    def read(name: str) -> torch.Tensor:
        return to_tensor(Image.fromarray(photos.read(name)), cfg.channels)

    pairs = [_val_item(read(name), None, cfg, scale, i) for i, name in enumerate(photos.VALIDATION)]
    return SRData(train_hr=[read(name) for name in photos.TRAINING], train_lr=None,
                  val_hr=[hr for hr, _ in pairs], val_lr=[lr for _, lr in pairs], val_names=list(photos.VALIDATION),
                  name="photos")

"""Super-resolution data: high-resolution images (and optionally their paired low-resolution versions), a
fixed validation set. ``SRBatches`` (``distgan.tasks.super_resolution.batches``) cuts each rank random
(LR, HR) training crops from memory; ``SRCrops`` (``.stream``) cuts the same crops in the streamer's tasks.

Three sources, picked by the config:

* ``data.name: photos`` (``data.path`` null): real photographs that ship inside scikit-image and
  scikit-learn, so SR runs offline. Training: the colour photos astronaut, chelsea, retina,
  hubble_deep_field, immunohistochemistry (skimage) and china (sklearn), plus the grey photos camera,
  moon, brick, grass, gravel, coins and clock as R = G = B for texture. Validation: coffee, rocket
  (skimage) and flower (sklearn), never trained on. The list is fixed: ``data.val_path`` and
  ``data.val_fraction`` do not apply. Generation families cannot use it: its registry entry's ``load``
  raises a ConfigError (it holds LR/HR pairs, not samples); ``photos.SR_DATASETS`` names it for such checks.
* ``data.path``: HR images: a folder (PNG/JPEG, recursive), local or under a URI, or a shard set;
  validation is ``data.val_path`` (the same kinds), or else a held-out ``data.val_fraction`` of
  ``data.path`` (at least one image, at least one left to train). LR inputs are made on the fly by
  ``data.degradation`` (``distgan.data.degradations``: one pass of blur, bicubic, noise and JPEG, or
  Real-ESRGAN's second-order pipeline).
* ``data.path`` + ``data.lr_path``: paired folders (local or under a URI; a shard set names its samples by
  number, so it cannot be paired), matched by relative path ignoring the extension; every HR must be
  exactly ``model.scale`` times its LR. Validation is a held-out fraction of the pairs.

Which images train and which validate is worked out from the listings (``.sources``). Then the data is
either held in memory (``data.stream: false``, local folders only): every file's header is screened
before Ray starts (unreadable files, sizes, pairs), then every image decoded; or streamed: no training
image is read before the first step (the crop tasks name an unreadable image, one smaller than the crop,
or a pair whose sizes do not match, when its turn comes), the validation images are screened by header
at the check and decoded at setup.

Training images stay uint8 in memory (a quarter of float32). Validation images are float32 in
[-1, 1]: each is cropped to a multiple of the scale (centred, to at most ``data.val_crop``), and its
LR is made once, deterministically (fixed seed per image), whatever ``train.seed`` is.

Reading: EXIF orientation applied; grey (L) is replicated to RGB or RGB reduced to luma
(ITU-R 601-2, PIL's ``L``) as ``data.channels`` asks; transparency (RGBA, LA, P with alpha) is
composited on black; 16-bit grey PNGs are scaled to 8 bits by /257 (65535 -> 255), not clipped;
48-bit RGB PNGs are reduced to 8 bits by PIL itself; CMYK converted by PIL (``distgan.data.images``).
Every image, from a file or from bytes, is decoded by ``distgan.data.images.decode_bytes``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display
from distgan.data import photos
from distgan.data.catalog import Catalog
from distgan.data.degradations import blur_reach, check_degradation, from_uint8, make_lr
from distgan.data.feed import streams
from distgan.data.folder import READ_ERRORS, screen, unreadable
from distgan.data.images import decode_bytes, read_image, to_tensor
from distgan.tasks.super_resolution import sources
from distgan.tasks.super_resolution.sources import SRImages

__all__ = ["SRData", "SRImages", "check_sr", "load_sr", "read_image"]

log = logging.getLogger(__name__)

VAL_SEED = 1234
"""Seeds the validation degradations: fixed, so every run validates on the same inputs."""

Size = tuple[int, int]
"""An image's (height, width)."""


@dataclass
class SRData:
    train_hr: list[torch.Tensor]
    """Training HR images, uint8 [C, H, W], each at least ``data.resolution`` on both sides; empty when they
    stream (``train_images``)."""
    train_lr: Optional[list[torch.Tensor]]
    """Their paired LR images, uint8 [C, H/s, W/s]; None when LR inputs are made on the fly (or stream)."""
    val_hr: list[torch.Tensor]
    """Validation HR images, float32 [-1, 1], [C, H, W], H and W multiples of the scale."""
    val_lr: list[torch.Tensor]
    """Validation LR inputs, float32 [-1, 1], [C, H/s, W/s]."""
    val_names: list[str]
    """Validation image names (relative paths, shard members, or photo names)."""
    name: str
    """``photos`` or the folder's name."""
    skipped: int = 0
    """Unreadable files skipped under ``data.skip_corrupt`` before the first step."""
    train_images: Optional[SRImages] = None
    """The training images' reader when they stream (``train_hr`` empty): what the crop tasks read, in the
    order ``train_hr`` would hold them."""


# -- which images: listings (``.sources``), and the screening of headers ---------------------------------


@dataclass
class _Plan:
    hr: Catalog
    """``data.path``'s listing."""
    val_from: Catalog
    """Where the validation images are listed: ``data.val_path``'s listing, or ``hr``."""
    train: list[int] = field(default_factory=list)
    """Training samples of ``hr``, in listing order."""
    val: list[int] = field(default_factory=list)
    """Validation samples of ``val_from``."""
    lr: Optional[Catalog] = None
    """``data.lr_path``'s listing (paired folders)."""
    lr_of: dict[int, int] = field(default_factory=dict)
    """HR sample -> its LR sample (paired folders)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Unreadable images skipped under ``data.skip_corrupt``: where -> why."""

    def pairs(self, samples: list[int], sizes: dict[str, Size]) -> list[tuple[str, Size, str, Size]]:
        """(HR, its size, LR, its size) of ``samples`` of ``hr`` (paired folders validate on ``hr``'s samples too),
        sizes looked up by ``describe``."""
        hr, lr = self.hr.reader.describe, self.lr.reader.describe
        return [(hr(i), sizes[hr(i)], lr(self.lr_of[i]), sizes[lr(self.lr_of[i])]) for i in samples]


def _plan(cfg: DataConfig, scale: int, stream: bool) -> _Plan:
    """The images to train and validate on, from the listings. Held in memory (not ``stream``), every file's
    header is screened first and the sizes checked; streamed, nothing is read here. Raises on anything that
    cannot work."""
    if stream:
        return _listed_plan(cfg)
    sources.require_local(cfg)
    # Every file is read next, so the folders are listed anew rather than taken from this process's memo.
    hr = sources.listing(cfg, "data.path", fresh=True)
    plan = _Plan(hr, hr)
    if cfg.lr_path is not None:
        plan.lr = sources.listing(cfg, "data.lr_path", fresh=True)
        plan.lr_of = sources.pair(hr, plan.lr)
    if cfg.val_path is not None:
        plan.val_from = sources.listing(cfg, "data.val_path", fresh=True)
    usable = _screen_training(plan, cfg)
    if cfg.val_path is None:
        plan.train, plan.val = sources.split(hr, usable, cfg, screened=True)
    else:
        plan.train, plan.val = usable, _screen(plan.val_from, "data.val_path", cfg, plan.failed)
    _check_headers(plan, cfg, scale)
    return plan


_listed_plans: dict[tuple, tuple[tuple[Optional[Catalog], ...], _Plan]] = {}
"""(process, the config's locations and split) -> (the listings a streamed plan was worked out from, the plan)."""


def _listed_plan(cfg: DataConfig) -> _Plan:
    """Streamed data's plan, from the listings alone; worked out once per process for the same listings (pairing
    and hashing a million names takes seconds, and the check and the setup both ask)."""
    hr = sources.listing(cfg, "data.path")
    lr = sources.listing(cfg, "data.lr_path") if cfg.lr_path is not None else None
    val_from = sources.listing(cfg, "data.val_path") if cfg.val_path is not None else hr
    key = (os.getpid(), cfg.path, cfg.lr_path, cfg.val_path, cfg.val_fraction)
    kept = _listed_plans.get(key)
    if kept is None or any(a is not b for a, b in zip(kept[0], (hr, lr, val_from))):
        plan = _Plan(hr, val_from, lr=lr, lr_of=sources.pair(hr, lr) if lr is not None else {})
        if cfg.val_path is None:
            plan.train, plan.val = sources.split(hr, list(range(len(hr))), cfg, screened=False)
        else:
            plan.train, plan.val = list(range(len(hr))), list(range(len(val_from)))
        kept = _listed_plans[key] = ((hr, lr, val_from), plan)
        while len(_listed_plans) > 4:
            _listed_plans.pop(next(iter(_listed_plans)))
    # The check narrows ``val`` and fills ``failed``: each caller gets its own.
    return dataclasses.replace(kept[1], val=list(kept[1].val), failed={})


def _screen(found: Catalog, key: str, cfg: DataConfig, failed: dict[str, str]) -> list[int]:
    """The samples of the local folder ``found`` (config key ``key``) whose headers read; ``screen`` raises on
    the first that does not unless ``data.skip_corrupt``, which puts it in ``failed``."""
    paths = [Path(p) for p in found.reader.paths]
    bad = screen(paths, key, sources.location(cfg, key), cfg.skip_corrupt)
    failed.update({str(p): why for p, why in bad.items()})
    return [i for i, p in enumerate(paths) if p not in bad]


def _screen_training(plan: _Plan, cfg: DataConfig) -> list[int]:
    usable = _screen(plan.hr, "data.path", cfg, plan.failed)
    if plan.lr is None:
        return usable
    readable = set(_screen(plan.lr, "data.lr_path", cfg, plan.failed))
    usable = [i for i in usable if plan.lr_of[i] in readable]
    if not usable:
        raise ConfigError(f"data.path {cfg.path!r}: no pair of images has both images readable")
    return usable


def _check_headers(plan: _Plan, cfg: DataConfig, scale: int) -> None:
    """Sizes from the headers (cached per file version by the screening): pairs, training crops, validation."""
    def sizes(found: Catalog, samples: list[int]) -> dict[str, Size]:
        return {found.reader.describe(i): sources.probe(found, i)[1] for i in samples}

    if plan.lr is not None:
        both = plan.train + plan.val
        _check_pairs(plan.pairs(both, {**sizes(plan.hr, both), **sizes(plan.lr, [plan.lr_of[i] for i in both])}),
                     scale)
    _check_train_sizes(sizes(plan.hr, plan.train), cfg)
    _check_val_sizes(sizes(plan.val_from, plan.val), cfg, scale)


def _screen_validation(plan: _Plan, cfg: DataConfig, scale: int) -> None:
    """Streamed data, before Ray starts: the validation images' headers (decoded at setup, so read anyway). An
    unreadable one is named, or left out under ``data.skip_corrupt``; sizes and pairs are checked."""
    key = "data.val_path" if cfg.val_path else "data.path"
    kept, sizes = [], {}
    for i in plan.val:
        images = [(key, plan.val_from, i)] + ([("data.lr_path", plan.lr, plan.lr_of[i])] if plan.lr else [])
        verdicts = [(k, found.reader.describe(j), *sources.probe(found, j)) for k, found, j in images]
        bad = [(k, where, why) for k, where, why, _ in verdicts if why]
        if bad:
            k, where, why = bad[0]
            if not cfg.skip_corrupt:
                raise unreadable(k, display(sources.location(cfg, k)), where, why)
            plan.failed[where] = why
            continue
        kept.append(i)
        sizes.update({where: size for _, where, _, size in verdicts})
    if not kept:
        raise ConfigError(f"{key} {display(sources.location(cfg, key))!r}: none of the validation images can be "
                          f"read")
    if plan.lr is not None:
        _check_pairs(plan.pairs(kept, sizes), scale)
    _check_val_sizes({plan.val_from.reader.describe(i): sizes[plan.val_from.reader.describe(i)] for i in kept},
                     cfg, scale)
    plan.val = kept


# -- checks --------------------------------------------------------------------------------------------


def small_image(cfg: DataConfig, where: str, size: Size) -> str:
    """Why training image ``where`` cannot be used: smaller than the crop."""
    (h, w), r = size, cfg.resolution
    return (f"data.path {display(cfg.path)!r}: image {where!r} is {w}x{h}, smaller than the {r}x{r} training crop "
            f"(data.resolution={r}); lower data.resolution or remove the image")


def mismatched_pair(hr: str, hr_size: Size, lr: str, lr_size: Size, scale: int) -> str:
    """Why a pair cannot be used: the HR image is not ``scale`` times its LR image."""
    (hh, hw), (lh, lw) = hr_size, lr_size
    return (f"data.lr_path: sizes do not match for {lr!r}: it is {lw}x{lh}, its high-resolution image {hr!r} is "
            f"{hw}x{hh}; the high-resolution image must be exactly model.scale={scale} times larger, "
            f"{lw * scale}x{lh * scale}")


def _check_train_sizes(sizes: dict[str, Size], cfg: DataConfig) -> None:
    for where, (h, w) in sizes.items():
        if h < cfg.resolution or w < cfg.resolution:
            raise ConfigError(small_image(cfg, where, (h, w)))


def _check_val_sizes(sizes: dict[str, Size], cfg: DataConfig, scale: int) -> None:
    need = max(scale, _blur_radius(cfg) + 1)
    key, folder = ("data.val_path", cfg.val_path) if cfg.val_path else ("data.path", cfg.path)
    for where, size in sizes.items():
        h, w = (min(side, cfg.val_crop or side) // scale * scale for side in size)
        if min(h, w) < need:
            raise ConfigError(f"{key} {display(folder)!r}: validation image {where!r} is {size[1]}x{size[0]}, "
                              f"{w}x{h} once cut to data.val_crop and to multiples of model.scale={scale}: too "
                              f"small to validate on (at least {need} px a side); remove it")


def _blur_radius(cfg: DataConfig) -> int:
    """How far the blur reaches (paired LR comes as is, unblurred)."""
    return 0 if cfg.lr_path else blur_reach(cfg.degradation)


def _check_pairs(pairs: list[tuple[str, Size, str, Size]], scale: int) -> None:
    for hr, hr_size, lr, lr_size in pairs:
        if hr_size != (lr_size[0] * scale, lr_size[1] * scale):
            raise ConfigError(mismatched_pair(hr, hr_size, lr, lr_size, scale))


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
    """Fail early (before Ray starts) on SR data that cannot work as configured. Held in memory: every file's
    header is read; streamed: the listings, and the validation images' headers."""
    _check_settings(cfg, scale)
    if cfg.path is not None:
        stream = streams(cfg)
        plan = _plan(cfg, scale, stream)
        if stream:
            _screen_validation(plan, cfg, scale)
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


def _decode(found: Catalog, samples: list[int], key: str, cfg: DataConfig,
            failed: dict[str, str]) -> dict[int, torch.Tensor]:
    """Decode ``samples`` of ``found`` (config key ``key``); those that fail (a truncated JPEG passes the header
    screening) go to ``failed`` under ``data.skip_corrupt``, else raise."""
    out = {}
    for i in samples:
        try:
            out[i] = decode_bytes(found.reader.read(i), cfg.channels)
        except READ_ERRORS as exc:
            why = str(exc) or type(exc).__name__
            if not cfg.skip_corrupt:
                raise unreadable(key, display(sources.location(cfg, key)), found.reader.describe(i), why) from None
            failed[found.reader.describe(i)] = why
    return out


def load_sr(cfg: DataConfig, scale: int, stream: bool = False) -> SRData:
    """Load the SR training and validation images named by the config (see the module docstring). With
    ``stream``, the training images are listed, not read: ``train_images`` reads them for the crop tasks."""
    _check_settings(cfg, scale)
    if cfg.path is None:
        if cfg.name not in photos.SR_DATASETS:
            check_sr(cfg, scale)  # raises, naming the key
        return _load_photos(cfg, scale)
    plan = _plan(cfg, scale, stream)
    val_key = "data.val_path" if cfg.val_path else "data.path"
    decoded = [] if stream else plan.train
    hr = _decode(plan.hr, decoded, "data.path", cfg, plan.failed)
    val_hr = _decode(plan.val_from, plan.val, val_key, cfg, plan.failed)
    lr: dict[int, torch.Tensor] = {}
    val_lr: dict[int, torch.Tensor] = {}
    if plan.lr is not None:
        lr = _decode(plan.lr, [plan.lr_of[i] for i in decoded], "data.lr_path", cfg, plan.failed)
        val_lr = _decode(plan.lr, [plan.lr_of[i] for i in plan.val], "data.lr_path", cfg, plan.failed)

    def ok(i: int, images: dict[int, torch.Tensor], partners: dict[int, torch.Tensor]) -> bool:
        return i in images and (plan.lr is None or plan.lr_of[i] in partners)

    train = plan.train if stream else [i for i in plan.train if ok(i, hr, lr)]
    val = [i for i in plan.val if ok(i, val_hr, val_lr)]
    for what, kept in (("training", train), ("validation", val)):
        if not kept:
            raise ConfigError(f"data.path {display(cfg.path)!r}: none of the {what} images can be read")
    _check_decoded(plan, hr, lr, val_hr, val_lr, cfg, scale)
    items = [_val_item(val_hr[i], val_lr[plan.lr_of[i]] if plan.lr else None, cfg, scale, k)
             for k, i in enumerate(val)]
    if plan.failed:
        log.warning("data.path %r: skipped %d unreadable image(s) (data.skip_corrupt=true), first %s",
                    display(cfg.path), len(plan.failed), next(iter(plan.failed)))
    return SRData(train_hr=[hr[i] for i in train if i in hr],
                  train_lr=[lr[plan.lr_of[i]] for i in train] if plan.lr and not stream else None,
                  val_hr=[h for h, _ in items], val_lr=[v for _, v in items],
                  val_names=[plan.val_from.reader.relative(i) for i in val], name=plan.hr.name,
                  skipped=len(plan.failed), train_images=_training_images(plan, cfg, train) if stream else None)


def _check_decoded(plan: _Plan, hr: dict[int, torch.Tensor], lr: dict[int, torch.Tensor],
                   val_hr: dict[int, torch.Tensor], val_lr: dict[int, torch.Tensor], cfg: DataConfig,
                   scale: int) -> None:
    """Sizes again, of what was decoded: the truth (a PNG's EXIF orientation can come after its pixels, past
    the header probe)."""
    def sizes(found: Catalog, images: dict[int, torch.Tensor]) -> dict[str, Size]:
        return {found.reader.describe(i): tuple(image.shape[-2:]) for i, image in images.items()}

    _check_train_sizes(sizes(plan.hr, hr), cfg)
    _check_val_sizes(sizes(plan.val_from, val_hr), cfg, scale)
    if plan.lr is not None:
        known = {**sizes(plan.hr, hr), **sizes(plan.hr, val_hr), **sizes(plan.lr, lr), **sizes(plan.lr, val_lr)}
        both = [i for i in plan.train + plan.val
                if plan.hr.reader.describe(i) in known and plan.lr.reader.describe(plan.lr_of[i]) in known]
        _check_pairs(plan.pairs(both, known), scale)


def _training_images(plan: _Plan, cfg: DataConfig, train: list[int]) -> SRImages:
    lr_index = np.array([plan.lr_of[i] for i in train], dtype=np.int64) if plan.lr is not None else None
    return SRImages(hr=plan.hr.reader, hr_index=np.array(train, dtype=np.int64), location=display(cfg.path),
                    lr=plan.lr.reader if plan.lr is not None else None, lr_index=lr_index,
                    lr_location=display(cfg.lr_path) if cfg.lr_path else "")


def _load_photos(cfg: DataConfig, scale: int) -> SRData:
    photos.check(cfg)

    def read(name: str) -> torch.Tensor:
        return to_tensor(Image.fromarray(photos.read(name)), cfg.channels)

    pairs = [_val_item(read(name), None, cfg, scale, i) for i, name in enumerate(photos.VALIDATION)]
    return SRData(train_hr=[read(name) for name in photos.TRAINING], train_lr=None,
                  val_hr=[hr for hr, _ in pairs], val_lr=[lr for _, lr in pairs], val_names=list(photos.VALIDATION),
                  name="photos")

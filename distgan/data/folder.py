"""A folder of PNG/JPEG images of any size, resized and centre-cropped to ``data.resolution``.

The check runs once on the driver and again on every worker, so its verdict
per file is cached by (path, size, mtime): a repeated check in one process
only lists and stats the folder. ``Image.verify`` reads headers and, for PNG,
chunk checksums without decoding pixels. For a JPEG it reads only the headers,
so a JPEG is also checked for its end-of-image marker, and decoded in full when
that is missing (``_cut_short``): a truncated JPEG is named before Ray starts.
Files that pass all this but still fail to decode are caught, and named, while
loading.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import local_path
from distgan.data.source import Dataset, Source
from distgan.data.images import fit_square, orientation

log = logging.getLogger(__name__)

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
# What PIL raises on a bad file: not an image, truncated, bad checksum, or absurdly large.
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)

_probes: dict[tuple[str, int, int], tuple[str, tuple[int, int]]] = {}
"""(path, size, mtime_ns) -> (why the file cannot be read, "" if it can; its upright (height, width))."""


def image_files(cfg: DataConfig) -> list[Path]:
    """Every PNG/JPEG under ``data.path`` (a directory or a ``file://`` URI; recursive, extension
    case-insensitive, hidden names skipped), each by its path as found under the folder, in a stable order."""
    root = local_path(cfg.path)
    if not root.exists():
        raise ConfigError(f"data.path {cfg.path!r} does not exist")
    if not root.is_dir():
        raise ConfigError(f"data.path {cfg.path!r} is not a directory")
    files = _walk(root, cfg.path)
    if not files:
        raise ConfigError(f"data.path {cfg.path!r}: no PNG/JPEG images found (searched recursively for "
                          f"{', '.join(sorted(EXTENSIONS))})")
    # By path components, so that every worker indexes the same file by the same number, and a folder under a
    # URI (``catalog.store_catalog``) lists in the same order.
    return sorted(files, key=lambda path: path.parts)


def hidden(relative: str) -> bool:
    """Whether a path inside a folder (``/``-separated) passes through a name starting with ``.``: a notebook's
    ``.ipynb_checkpoints/`` is no class, and macOS's ``._x.png`` (AppleDouble metadata) is no image."""
    return any(part.startswith(".") for part in relative.split("/"))


def _walk(root: Path, shown: str) -> list[Path]:
    """The image files under ``root``, following links to folders and files. A file keeps the path it is found
    at (a link is not resolved), so its class and its name are where it lies in the folder, whatever it points
    to. A link back to a folder it lies in is not followed again (it would list forever)."""
    found: list[Path] = []
    pending: list[tuple[str, frozenset]] = [(str(root), frozenset())]  # (folder, the real folders above it)
    while pending:
        here, above = pending.pop()
        try:
            stat = os.stat(here)
            real = (stat.st_dev, stat.st_ino)
            if real in above:
                continue
            with os.scandir(here) as listing:
                entries = list(listing)
        except OSError as exc:  # skipped, the folder's images (a whole class, perhaps) would go unseen
            raise ConfigError(f"data.path {shown!r}: cannot list the folder {here!r}: {exc.strerror or exc}; "
                              f"expected every folder under it to be readable") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # follows a link
                pending.append((entry.path, above | {real}))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in EXTENSIONS:
                found.append(Path(entry.path))
    return found


JPEG_END = b"\xff\xd9"
"""A JPEG's end-of-image marker. Compressed data never holds it (an FF byte there is followed by 00 or a
restart marker), though padding or appended data may follow it (phones append a video to motion photos)."""


def _cut_short(path: Path, size: int) -> None:
    """Raise what decoding raises if ``path`` is a JPEG cut short: one whose last KiB holds no end-of-image
    marker is decoded in full to be sure (so appended data costs a decode, not a false alarm)."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return
    with open(path, "rb") as f:
        f.seek(max(0, size - 1024))
        if JPEG_END in f.read():
            return
    with Image.open(path) as img:
        img.load()


def probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Whether ``path`` can be read ("" if so, else why not) and its upright (height, width), from its header
    and ``verify`` without decoding the pixels (a JPEG cut short is decoded to be sure); cached per file
    version, so the driver's check and each worker's load read a file's header once."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _probes:
        try:
            size = _upright_size(path)
            _cut_short(path, stat.st_size)
            _probes[key] = ("", size)
        except READ_ERRORS as exc:
            _probes[key] = (str(exc) or type(exc).__name__, (0, 0))
    return _probes[key]


def probe_bytes(data: bytes, name: str) -> tuple[str, tuple[int, int]]:
    """``probe`` of an image held in memory (a shard's member; ``name`` gives its extension), not cached."""
    try:
        size = _upright_size(io.BytesIO(data))
        if Path(name).suffix.lower() in (".jpg", ".jpeg") and JPEG_END not in data[-1024:]:
            with Image.open(io.BytesIO(data)) as img:  # cut short, or data appended: decode to be sure
                img.load()
        return "", size
    except READ_ERRORS as exc:
        return str(exc) or type(exc).__name__, (0, 0)


def _upright_size(source: Union[Path, BinaryIO]) -> tuple[int, int]:
    """The image's upright (height, width) from its header, after ``verify``; raises one of READ_ERRORS."""
    with Image.open(source) as img:
        w, h = img.size
        # A PNG's EXIF may follow the pixel data, which getexif would decode; JPEG's is in the header.
        if img.format != "PNG" or "exif" in img.info:
            if orientation(img) in (5, 6, 7, 8):  # as decoding reads it, so check and training agree
                w, h = h, w
        img.verify()
    return h, w


_BUFFER = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def named(why: str, name: str) -> str:
    """PIL's message for an image decoded from memory, which names the buffer it read (``<_io.BytesIO object at
    0x7f...>``), naming the image instead, as PIL names a local file."""
    return _BUFFER.sub(lambda _: repr(name), why)


def unreadable(key: str, folder: str, path: Path, why: str, more: int = 0) -> ConfigError:
    others = f" (and {more} more)" if more else ""
    return ConfigError(f"{key} {folder!r}: cannot read image {str(path)!r}{others}: {why}; fix or remove it, or "
                       f"set data.skip_corrupt=true to skip unreadable images")


def screen(files: list[Path], key: str, folder: str, skip_corrupt: bool) -> dict[Path, str]:
    """Files of ``folder`` (the value of config key ``key``) that cannot be read; raises unless
    ``skip_corrupt``, and when none is left."""
    failed = {path: why for path in files if (why := probe(path)[0])}
    if failed and not skip_corrupt:
        path, why = next(iter(failed.items()))
        raise unreadable(key, folder, path, why, more=len(failed) - 1)
    if len(failed) == len(files):
        raise ConfigError(f"{key} {folder!r}: none of the {len(files)} images can be read")
    return failed


def check(cfg: DataConfig) -> None:
    screen(image_files(cfg), "data.path", cfg.path, cfg.skip_corrupt)


def load(cfg: DataConfig) -> Dataset:
    files = image_files(cfg)
    failed = screen(files, "data.path", cfg.path, cfg.skip_corrupt)
    arrays = []
    for path in files:
        if path in failed:
            continue
        try:
            arrays.append(fit_square(path, cfg.resolution, cfg.channels))
        except READ_ERRORS as exc:
            if not cfg.skip_corrupt:
                raise unreadable("data.path", cfg.path, path, str(exc) or type(exc).__name__) from None
            failed[path] = str(exc)
    if failed:
        log.warning("data.path %r: skipped %d unreadable image(s) of %d (data.skip_corrupt=true), first %s",
                    cfg.path, len(failed), len(files), next(iter(failed)))
    if not arrays:
        raise ConfigError(f"data.path {cfg.path!r}: none of the {len(files)} images can be read")
    x = torch.from_numpy(np.stack(arrays)).float().div_(127.5).sub_(1.0)
    root = local_path(cfg.path)
    names = classes(cfg)
    labels = None
    if names:
        index = {name: i for i, name in enumerate(names)}
        labels = torch.tensor([index[p.relative_to(root).parts[0]] for p in files if p not in failed])
    return Dataset(x=x, labels=labels, kind="image", name=root.name, skipped=len(failed))


def classes(cfg: DataConfig) -> tuple[str, ...]:
    """One class per sub-folder when every image lies in a sub-folder of ``data.path`` and there are two or
    more of them (the ImageFolder layout); otherwise the folder is unlabelled."""
    root = local_path(cfg.path)
    tops = {p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None
            for p in image_files(cfg)}
    if None in tops or len(tops) < 2:
        return ()
    return tuple(sorted(tops))


SOURCE = Source(shape=lambda cfg: (cfg.channels, cfg.resolution, cfg.resolution), check=check, load=load,
                classes=classes)

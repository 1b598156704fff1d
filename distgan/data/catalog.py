"""What a streamed data set holds, by sample index: where each sample's bytes are, its label, its name.

A catalog is made by listing (a folder's files, or a shard set's ``index.json``), never by reading
the samples, so making one costs the same whether a sample is damaged or not and little more for a
million files than for a thousand. It is what the driver checks before Ray starts, what every worker
plans its batches over, and what the decoding tasks read from: it holds only names and numbers, so
it pickles small into each task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import pyarrow.fs as pafs

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, filesystem_of, first_line, is_uri
from distgan.data import folder, shards


class SampleReader(Protocol):
    """Reads one sample's encoded bytes; picklable (it is shipped to the decoding tasks)."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> bytes: ...

    def describe(self, i: int) -> str:
        """Where sample ``i`` comes from, for error messages: a file, or a shard and member."""


@dataclass(frozen=True)
class FileReader:
    """Image files on the local (or a shared, mounted) file system, by index."""

    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()

    def describe(self, i: int) -> str:
        return self.paths[i]


@dataclass(frozen=True)
class Catalog:
    location: str
    """``data.path`` as configured (a directory or a URI)."""
    reader: SampleReader
    classes: tuple[str, ...] = ()
    """Class names, label i naming class i; empty when the samples carry no labels."""
    labels: Optional[np.ndarray] = None
    """int64 label per sample, when there are classes."""

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def name(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1] or self.location


def folder_catalog(cfg: DataConfig) -> Catalog:
    """The images of a local folder (``distgan.data.folder``'s listing and class rules), listed not read."""
    files = folder.image_files(cfg)
    names = folder.classes(cfg)
    labels = None
    if names:
        root = Path(cfg.path).expanduser().resolve()
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in files], dtype=np.int64)
    return Catalog(cfg.path, FileReader(tuple(str(p) for p in files)), names, labels)


@dataclass(frozen=True)
class StoreFileReader:
    """Image files under a URI (``s3://``, ``gs://``, ... through pyarrow), by index; the store's client is
    made once per process, on first read (so the reader pickles as names only)."""

    location: str
    paths: tuple[str, ...]
    """Paths on the store's file system (no scheme, no query)."""

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        fs = _store(self.location)
        with fs.open_input_stream(self.paths[i]) as f:
            return f.read()

    def describe(self, i: int) -> str:
        scheme = self.location.split("://", 1)[0]
        return f"{scheme}://{self.paths[i]}"


_stores: dict[tuple[int, str], pafs.FileSystem] = {}


def _store(location: str) -> pafs.FileSystem:
    key = (os.getpid(), location)  # a forked process makes its own client rather than share connections
    if key not in _stores:
        _stores[key] = filesystem_of(location, "data.path", need_prefix=False)[0]
    return _stores[key]


@dataclass(frozen=True)
class ShardReader:
    """Samples of a shard set (``distgan.data.shards``): one ranged read each."""

    shards: shards.ShardSet

    def __len__(self) -> int:
        return len(self.shards)

    def read(self, i: int) -> bytes:
        return shards.read_sample(self.shards, i)

    def describe(self, i: int) -> str:
        return self.shards.describe(i)


def store_catalog(location: str, fs: pafs.FileSystem, base: str) -> Catalog:
    """The images under a URI, listed recursively in one request per prefix page; classes by the folder rule
    (``distgan.data.folder.classes``): one per top-level sub-folder when every image lies in one of two or more."""
    try:
        found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise ConfigError(f"data.path {display(location)!r} cannot be listed: {first_line(exc)}") from None
    paths = sorted(f.path for f in found if f.type == pafs.FileType.File
                   and os.path.splitext(f.path)[1].lower() in folder.EXTENSIONS)
    if not paths:
        raise ConfigError(f"data.path {display(location)!r}: no PNG/JPEG images found (searched recursively for "
                          f"{', '.join(sorted(folder.EXTENSIONS))}), and no shard set ({shards.INDEX})")
    parts = [p[len(base):].lstrip("/").split("/") for p in paths]
    tops = {part[0] if len(part) > 1 else None for part in parts}
    names: tuple[str, ...] = () if None in tops or len(tops) < 2 else tuple(sorted(tops))
    labels = None
    if names:
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[part[0]] for part in parts], dtype=np.int64)
    return Catalog(location, StoreFileReader(location, tuple(paths)), names, labels)


def catalog(cfg: DataConfig) -> Catalog:
    """The catalog of ``data.path``: a shard set (an ``index.json`` there), a folder under a URI, or a local
    folder; a ConfigError naming the key when there is nothing to stream."""
    if cfg.path is None:
        raise ConfigError("data.path: streaming reads a folder or a shard set; the built-in data set "
                          f"{cfg.name!r} is held in memory (set data.stream=false or auto)")
    fs, base = filesystem_of(cfg.path, "data.path", need_prefix=False)
    if shards.is_shard_set(fs, base):
        found = shards.open_shard_set(cfg.path, "data.path")
        return Catalog(cfg.path, ShardReader(found), found.classes, found.labels)
    if is_uri(cfg.path):
        return store_catalog(cfg.path, fs, base)
    return folder_catalog(cfg)

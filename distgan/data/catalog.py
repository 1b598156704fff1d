"""What a streamed data set holds, by sample index: where each sample's bytes are, its label, its name.

A catalog is made by listing (a folder's files, or a shard set's ``index.json``), never by reading
the samples, so making one costs the same whether a sample is damaged or not and little more for a
million files than for a thousand. It is what the driver checks before Ray starts, what every worker
plans its batches over, and what the decoding tasks read from: it holds only names and numbers, so
it pickles small into each task.

A process lists a URI or a shard set once (``catalog_at``): the driver's check, the classes, each rank's
feed and its evaluation reference set all ask for the same listing, and a URI's listing is requests to a
store, a shard set's a parse of its index (seconds for millions of samples). The memo is per process (a
forked child lists again rather than trust its parent's) and keeps the listing for the process's life:
the next run's workers are new processes and list afresh; ``forget`` clears it (a notebook whose bucket
grew). A local folder is listed every time it is asked for: that is cheap beside a start, and a folder
changed in place (images added in a notebook, between two runs of one process) is seen at once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import pyarrow.fs as pafs

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, filesystem_of, first_line, is_uri, local_path
from distgan.data import folder, shards


class SampleReader(Protocol):
    """Reads one sample's encoded bytes; picklable (it is shipped to the decoding tasks)."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> bytes: ...

    def describe(self, i: int) -> str:
        """Where sample ``i`` comes from, for error messages: a file, or a shard and member."""

    def relative(self, i: int) -> str:
        """Sample ``i``'s path inside the location (``/``-separated, with its extension): what pairs files of two
        folders and chooses held-out images; a shard set's member name (``000123.jpg``)."""


@dataclass(frozen=True)
class FileReader:
    """Image files on the local (or a shared, mounted) file system, by index."""

    paths: tuple[str, ...]
    """Each file's path as found under ``root`` (a link not resolved: ``folder.image_files``)."""
    root: str
    """The folder they were listed in, absolute: what ``relative`` is relative to."""

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        with open(self.paths[i], "rb") as f:
            return f.read()

    def describe(self, i: int) -> str:
        return self.paths[i]

    def relative(self, i: int) -> str:
        # Every path lies under the root as listed (a linked file keeps its place there), so its class is the
        # folder it lies in and two links of one name in two folders keep two names.
        return os.path.relpath(self.paths[i], self.root).replace(os.sep, "/")


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
        """The data set's name: the folder's (or the URI's last part)."""
        if is_uri(self.location):
            return display(self.location).rsplit("/", 1)[-1]
        return local_path(self.location).name

    @property
    def sharded(self) -> bool:
        """Whether the samples are a shard set's (named by sample number, not by their original files)."""
        return isinstance(self.reader, ShardReader)

    def relative_names(self) -> list[str]:
        return [self.reader.relative(i) for i in range(len(self))]


def _classes(relative: list[str]) -> tuple[tuple[str, ...], Optional[np.ndarray]]:
    """The folder rule (``distgan.data.folder.classes``) on relative paths: one class per top-level sub-folder
    when every image lies in one of two or more; (names, int64 label per sample), or ((), None)."""
    parts = [name.split("/") for name in relative]
    tops = {part[0] if len(part) > 1 else None for part in parts}
    if None in tops or len(tops) < 2:
        return (), None
    names = tuple(sorted(tops))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[part[0]] for part in parts], dtype=np.int64)


def folder_catalog(location: str, key: str = "data.path") -> Catalog:
    """The images of a local folder (``distgan.data.folder``'s listing and class rules), listed not read;
    errors name ``key``."""
    try:
        files = folder.image_files(DataConfig(path=location))
    except ConfigError as exc:  # its messages name data.path; this folder may be another key's
        raise ConfigError(str(exc).replace("data.path", key, 1)) from None
    reader = FileReader(tuple(str(p) for p in files), str(local_path(location)))
    names, labels = _classes([reader.relative(i) for i in range(len(reader))])
    return Catalog(location, reader, names, labels)


@dataclass(frozen=True)
class StoreFileReader:
    """Image files under a URI (``s3://``, ``gs://``, ... through pyarrow), by index; the store's client is
    made once per process, on first read (so the reader pickles as names only)."""

    location: str
    paths: tuple[str, ...]
    """Paths on the store's file system (no scheme, no query)."""
    base: str = ""
    """The listed prefix on the store's file system: what ``relative`` is relative to."""

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        fs = _store(self.location)
        with fs.open_input_stream(self.paths[i]) as f:
            return f.read()

    def describe(self, i: int) -> str:
        scheme = self.location.split("://", 1)[0]
        return f"{scheme}://{self.paths[i]}"

    def relative(self, i: int) -> str:
        return self.paths[i][len(self.base):].lstrip("/")


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

    def relative(self, i: int) -> str:
        return self.shards.member(i)


def store_catalog(location: str, fs: pafs.FileSystem, base: str, key: str = "data.path") -> Catalog:
    """The images under a URI, listed recursively in one request per prefix page, in a local folder's order
    (path components compared in turn, as ``pathlib`` sorts); classes by the folder rule."""
    try:
        found = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise ConfigError(f"{key} {display(location)!r} cannot be listed: {first_line(exc)}") from None
    # By components, not as strings: "a/b.png" comes before "a-c.png" in a folder, as in its upload. Hidden
    # names are skipped as a local folder skips them (an uploaded folder keeps its .ipynb_checkpoints).
    paths = sorted((f.path for f in found if f.type == pafs.FileType.File
                    and os.path.splitext(f.path)[1].lower() in folder.EXTENSIONS
                    and not folder.hidden(f.path[len(base):].lstrip("/"))), key=lambda p: p.split("/"))
    if not paths:
        raise ConfigError(f"{key} {display(location)!r}: no PNG/JPEG images found (searched recursively for "
                          f"{', '.join(sorted(folder.EXTENSIONS))}), and no shard set ({shards.INDEX})")
    reader = StoreFileReader(location, tuple(paths), base)
    names, labels = _classes([reader.relative(i) for i in range(len(reader))])
    return Catalog(location, reader, names, labels)


def _list(location: str, key: str) -> Catalog:
    """List ``location``: a shard set (an ``index.json`` there), a folder under a URI, or a local folder."""
    fs, base = filesystem_of(location, key, need_prefix=False)
    try:
        packed = shards.is_shard_set(fs, base)
    except OSError as exc:  # an unreachable store, or credentials it refuses
        raise ConfigError(f"{key} {display(location)!r} cannot be reached: {first_line(exc)}") from None
    if packed:
        found = shards.open_shard_set(location, key)
        return Catalog(location, ShardReader(found), found.classes, found.labels)
    if is_uri(location):
        return store_catalog(location, fs, base, key)
    return folder_catalog(location, key)


MEMO_SIZE = 8
"""Listings a process keeps (data.path, and super-resolution's data.lr_path and data.val_path, with room)."""

_memo: "OrderedDict[tuple[int, str, str], Catalog]" = OrderedDict()
_memo_lock = threading.Lock()


def catalog_at(location: str, key: str = "data.path", fresh: bool = False) -> Catalog:
    """The catalog of ``location`` (the value of config key ``key``, which errors name): a URI or a shard set
    listed once per process (later calls return the same listing, unless ``fresh``: list again, and keep
    that), a local folder listed afresh. Only the location decides a listing (its order, its classes), so it
    is the memo's key, with the process id."""
    if not is_uri(location) and not (local_path(location) / shards.INDEX).is_file():
        return _list(location, key)
    # A local shard set by its absolute path: the same text means another folder after a chdir.
    memo_key = (os.getpid(), key, location if is_uri(location) else str(local_path(location)))
    with _memo_lock:
        found = _memo.get(memo_key)
    if found is not None and not fresh:
        return found
    found = _list(location, key)
    with _memo_lock:
        _memo[memo_key] = found
        _memo.move_to_end(memo_key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return found


def forget() -> None:
    """Drop this process's listings: the next ``catalog_at`` lists again."""
    with _memo_lock:
        _memo.clear()


def catalog(cfg: DataConfig) -> Catalog:
    """The catalog of ``data.path`` (``catalog_at``: listed once per process); a ConfigError naming the key
    when there is nothing to stream."""
    if cfg.path is None:
        raise ConfigError("data.path: streaming reads a folder or a shard set; the built-in data set "
                          f"{cfg.name!r} is held in memory (set data.stream=false or auto)")
    return catalog_at(cfg.path)

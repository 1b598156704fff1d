"""``pack`` and ``check`` for a data set wherever it lies: what ``distgan data pack`` and ``check`` call.

A local folder and a shard set (a directory or a URI) go to ``distgan.data.shards``. An image folder under a
URI (``s3://bucket/photos``) is a ``StoreFolder``: listed by ``catalog.store_catalog``, so it has the order
and the classes that ``data.path`` streams it with, then read through the store image by image. A few
readers (``READERS``) hide the store's latency, and each holds at most one image's bytes, so memory stays
bounded whatever the folder holds. ``check`` reads each image once. ``pack`` reads each twice: every image
is screened before anything is written, as for a local folder, and keeping the images between the two
passes could need as much local disk as the bucket holds.

This module sits above ``catalog``, which imports ``shards``: that is why ``shards.pack`` and
``shards.check`` take local folders only.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

import numpy as np
import pyarrow.fs as pafs

from distgan.config import ConfigError
from distgan.core.filesystem import display, filesystem_of, first_line, is_uri
from distgan.data import shards
from distgan.data.catalog import store_catalog
from distgan.data.folder import named, probe_bytes
from distgan.data.packing import (CheckReport, LocalFolder, PackOptions, PackReport, Screened, access_error,
                                  check_images, pack_images)

__all__ = ["READERS", "StoreFolder", "check", "pack"]

READERS = 8
"""Images read from a store at once: enough to hide a request's latency, each reader holding one image."""

T = TypeVar("T")


def _in_order(fetch: Callable[[int], T], indices: Sequence[int]) -> Iterator[T]:
    """``fetch(i)`` for each of ``indices``, in order, ``READERS`` at a time. A fetch starts only when fewer
    than ``READERS`` results wait to be handed on, so at most that many are held (and the caller's one)."""
    with ThreadPoolExecutor(READERS, thread_name_prefix="distgan-read") as pool:
        waiting: deque = deque()
        for i in indices:
            waiting.append(pool.submit(fetch, i))
            if len(waiting) == READERS:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()


def _mtime(metadata: dict) -> int:
    """The object's Last-Modified in Unix seconds (S3 sends ISO 8601), or 0 when the store sends none in that
    form: a tar member's time only informs, so a missing one is no reason to fail."""
    text = metadata.get("Last-Modified", b"")
    try:
        return int(datetime.fromisoformat(text.decode()).timestamp())
    except (ValueError, UnicodeDecodeError):
        return 0


@dataclass(frozen=True)
class StoreFolder:
    """An image folder under a URI (an ``ImageFolder`` for ``distgan.data.packing``)."""

    location: str
    """The URI without its query (the store's options), as messages name it."""
    fs: pafs.FileSystem
    paths: tuple[str, ...]
    """The images' paths on ``fs``, in the listing's order."""
    names: tuple[str, ...]
    """The images' URIs (no query), for messages."""
    classes: tuple[str, ...]
    labels: Optional[np.ndarray]

    @classmethod
    def listed(cls, uri: str, key: str, fs: pafs.FileSystem, base: str) -> "StoreFolder":
        """The images under ``uri`` (``base`` on ``fs``), by ``catalog.store_catalog``; errors name ``key``."""
        found = store_catalog(uri, fs, base, key)
        reader = found.reader  # a StoreFileReader: store_catalog's
        names = tuple(reader.describe(i) for i in range(len(reader)))
        return cls(display(uri), fs, tuple(reader.paths), names, found.classes, found.labels)

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return self.names[i]

    def _get(self, i: int) -> tuple[bytes, int]:
        with self.fs.open_input_stream(self.paths[i]) as f:
            return f.read(), _mtime(f.metadata())

    def _screen_one(self, i: int) -> Screened:
        try:
            data, _ = self._get(i)
        except OSError as exc:  # gone since the listing, or refused: unreadable, as a local file would be
            return 0, first_line(exc), (0, 0)
        why, shape = probe_bytes(data, self.paths[i])
        return len(data), named(why, self.names[i]), shape

    def _read_one(self, i: int) -> tuple[bytes, int]:
        try:
            return self._get(i)
        except OSError as exc:
            raise OSError(f"{self.names[i]}: cannot be read: {first_line(exc)} (it could when it was screened: "
                          f"changed or removed while packing?)") from None

    def screen(self, indices: Sequence[int]) -> Iterator[Screened]:
        return _in_order(self._screen_one, indices)

    def read(self, indices: Sequence[int]) -> Iterator[tuple[bytes, int]]:
        return _in_order(self._read_one, indices)


def _reach(uri: str, key: str) -> tuple[pafs.FileSystem, str, bool]:
    """``uri``'s (or a directory's) file system, its path there, and whether a shard set lies there: the first
    request to a store, so one that does not answer, or refuses the credentials, is named here before anything
    else."""
    fs, base = filesystem_of(uri, key, need_prefix=False)
    try:
        return fs, base, shards.is_shard_set(fs, base)
    except OSError as exc:
        raise access_error(key, uri, exc) from None


def pack(src: Union[str, os.PathLike], dest: Union[str, os.PathLike], samples_per_shard: int = 1000, *,
         prefix: str = "shard", skip_corrupt: bool = False, max_shard_bytes: int = 1 << 30,
         progress=None) -> PackReport:
    """``distgan.data.shards.pack`` (see there) of an image folder that is a directory or lies under a URI:
    the same shards, samples in the same order with the same labels, the same checks and report."""
    options = PackOptions(samples_per_shard, prefix, skip_corrupt, max_shard_bytes, progress).checked()
    src = str(src)
    fs, base, packed = _reach(src, "SRC")  # a directory too: a shard set there is named as in a bucket
    if packed:
        raise ConfigError(f"SRC {display(src)!r} holds a shard set ({shards.INDEX}): pack reads an image folder "
                          f"(`distgan data check` verifies a shard set)")
    if not is_uri(src):
        return pack_images(LocalFolder.listed(src, "SRC"), str(dest), options)
    return pack_images(StoreFolder.listed(src, "SRC", fs, base), str(dest), options)


def check(location: Union[str, os.PathLike], key: str = "PATH") -> CheckReport:
    """``distgan.data.shards.check`` (see there) of a shard set or an image folder, a directory or under a
    URI; a folder under a URI is read through the store, each image once."""
    location = str(location)
    if not is_uri(location):
        return shards.check(location, key)
    fs, base, packed = _reach(location, key)
    if packed:
        return shards.check_shard_set(location, key)
    return check_images(StoreFolder.listed(location, key, fs, base))

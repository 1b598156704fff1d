"""Sharded archives: an image data set as tar shards in the WebDataset layout, with distgan's ``index.json``.

A shard set is a directory, or an object-store prefix (``s3://bucket/data``), holding ``PREFIX-000000.tar``,
``PREFIX-000001.tar``, ... and ``index.json`` (the format: ``distgan.data.tarshards``). ``pack`` writes one
from a local image folder and verifies it; ``open_shard_set`` reads the index, checking it against a listing of
the shards (one request, no shard is read); ``read_sample`` reads one sample with one ranged read, from any
process (a Ray task after unpickling included); ``check`` reads everything and reports. An image folder under
a URI is packed and checked by ``distgan.data.pack_sources``, which lists it with ``distgan.data.catalog``
(which imports this module, so this one cannot).

Samples keep the folder's order (``distgan.data.folder``'s listing, less the unreadable files ``pack``
skipped), so sample ``i`` of a shard set packed from a folder is the folder's ``i``-th readable image.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from distgan.config import ConfigError
from distgan.core.filesystem import display, filesystem_of, first_line
from distgan.data.folder import probe_bytes
from distgan.data.packing import (CheckReport, LocalFolder, PackOptions, PackReport, access_error, check_images,
                                  pack_images)
from distgan.data.tarshards import (BLOCK, INDEX, ShardEntry, ShardError, TruncatedShard, header_problem, parse_index,
                                   verify_shard)

__all__ = ["INDEX", "CheckReport", "PackReport", "ShardError", "ShardSet", "TruncatedShard", "check", "check_shard_set",
           "is_shard_set", "open_shard_set", "pack", "read_sample"]

MAX_OPEN = 64
"""Shard files a process keeps open for ``read_sample`` (least recently used closed first)."""


@dataclass(frozen=True, eq=False)
class ShardSet:
    """An opened shard set: where every sample lies, by sample index; picklable and compact (numpy arrays
    of numbers and names: 0.6 MB for 16,000 samples, 38 MB for a million), so it travels into Ray tasks
    (``ray.put`` it once rather than with every task). No file is held open here: ``read_sample`` opens
    the file system and the shards lazily, once per process."""

    root: str
    """The location as given (a directory or a URI, with the store's options in its query)."""
    classes: tuple[str, ...]
    """Class names, label i naming class i; empty when the set is unlabelled."""
    shard_names: tuple[str, ...]
    shard_of: np.ndarray
    """int32 per sample: index into ``shard_names``."""
    offsets: np.ndarray
    """int64 per sample: where the image member's data starts in its shard."""
    sizes: np.ndarray
    """int64 per sample: the image member's size in bytes."""
    labels: Optional[np.ndarray]
    """int64 per sample when there are classes, else None."""
    keys: np.ndarray
    """Sample keys (ASCII bytes, ``S`` dtype: compact for millions); ``key(i)`` gives one as text."""
    exts: np.ndarray
    """The image member's extension per sample (``jpg``, ``png``; ``S`` dtype)."""
    shard_bytes: tuple[int, ...] = ()
    shard_sha256: tuple[str, ...] = ()
    config_key: str = "data.path"
    """The config key (or argument) the location came from: what errors name."""

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def key(self, i: int) -> str:
        return self.keys[i].decode()

    def member(self, i: int) -> str:
        """The image member's name inside its shard, e.g. ``000123.jpg``."""
        return f"{self.keys[i].decode()}.{self.exts[i].decode()}"

    def describe(self, i: int) -> str:
        """Where sample ``i`` lies, for error messages: ``ROOT/shard-000003.tar:000123.jpg``."""
        return f"{display(self.root)}/{self.shard_names[int(self.shard_of[i])]}:{self.member(i)}"

    @classmethod
    def from_entries(cls, root: str, classes: tuple[str, ...], entries: list[ShardEntry],
                     config_key: str = "data.path") -> "ShardSet":
        counts = [e.samples for e in entries]
        labels = np.concatenate([e.labels for e in entries]) if classes else None
        arrays = dict(
            shard_of=np.repeat(np.arange(len(entries), dtype=np.int32), counts),
            offsets=np.concatenate([e.offsets for e in entries]).astype(np.int64),
            sizes=np.concatenate([e.sizes for e in entries]).astype(np.int64),
            labels=None if labels is None else labels.astype(np.int64),
            keys=np.array([k for e in entries for k in e.keys], dtype="S"),  # ASCII: the index checks keys
            exts=np.array([x for e in entries for x in e.exts], dtype="S"))
        for a in arrays.values():
            if a is not None:
                a.setflags(write=False)
        return cls(root=str(root), classes=tuple(classes), shard_names=tuple(e.name for e in entries),
                   shard_bytes=tuple(e.bytes for e in entries), shard_sha256=tuple(e.sha256 for e in entries),
                   config_key=config_key, **arrays)


def is_shard_set(fs: pafs.FileSystem, path: str) -> bool:
    """Whether ``path`` on ``fs`` holds an ``index.json`` (an OSError when the store cannot be reached)."""
    return fs.get_file_info(f"{path.rstrip('/')}/{INDEX}").type == pafs.FileType.File


def _read_index(location: str, key: str) -> tuple[pafs.FileSystem, str, tuple[str, ...], list[ShardEntry]]:
    """The file system, the path on it, the classes and the shard entries of the index, checked against one
    listing of the directory: a missing shard, or one whose size is not the index's, is a ConfigError."""
    fs, path = filesystem_of(location, key, need_prefix=False)
    where = display(location)
    try:
        index = fs.get_file_info(f"{path}/{INDEX}")
        if index.type != pafs.FileType.File:
            there = fs.get_file_info(path).type
            what = ("does not exist" if there == pafs.FileType.NotFound else
                    "is a file" if there == pafs.FileType.File else f"holds no {INDEX}")
            raise ConfigError(f"{key} {where!r} {what}: a shard set is a directory of tar shards with the "
                              f"{INDEX} that `distgan data pack SRC DEST` writes")
        with fs.open_input_stream(index.path) as f:
            data = f.read()
        listed = {i.base_name: i.size for i in fs.get_file_info(pafs.FileSelector(path))
                  if i.type == pafs.FileType.File}
    except OSError as exc:
        raise ConfigError(f"{key} {where!r} cannot be reached: {first_line(exc)}") from None
    classes, entries = parse_index(data, repr(f"{where}/{INDEX}"), key)
    for e in entries:
        if e.name not in listed:
            raise ConfigError(f"{key} {where!r}: shard {e.name} is missing ({INDEX} lists it); restore it or "
                              f"re-pack with `distgan data pack`")
        if listed[e.name] != e.bytes:
            raise ConfigError(f"{key} {where!r}: shard {e.name} has {listed[e.name]} bytes, {INDEX} says "
                              f"{e.bytes}: truncated, or replaced after packing; restore it or re-pack")
    return fs, path, classes, entries


def open_shard_set(location: Union[str, os.PathLike], key: str = "data.path") -> ShardSet:
    """The shard set at ``location`` (a directory or URI), its index read and checked against a listing of
    the shards; no shard is read or hashed (``check`` does that), so this is cheap enough for every start.
    Anything wrong is a ConfigError naming ``key`` and the location."""
    _, _, classes, entries = _read_index(str(location), key)
    return ShardSet.from_entries(str(location), classes, entries, config_key=key)


# -- reading one sample -------------------------------------------------------------------------------

_lock = threading.Lock()
_filesystems: dict[tuple[int, str], tuple[pafs.FileSystem, str]] = {}
_handles: OrderedDict[tuple[int, str, str], pa.NativeFile] = OrderedDict()


def _filesystem(shards: ShardSet) -> tuple[pafs.FileSystem, str]:
    # Keyed by process: a forked child makes its own client rather than share its parent's connections.
    k = (os.getpid(), shards.root)
    with _lock:
        found = _filesystems.get(k)
    if found is None:
        found = filesystem_of(shards.root, shards.config_key, need_prefix=False)
        with _lock:
            _filesystems[k] = found
    return found


def _handle(shards: ShardSet, s: int, member: str) -> pa.NativeFile:
    """An open random-access file of shard ``s``, kept per process (an object store then answers each
    later read with one ranged GET, without asking the object's size again)."""
    name = shards.shard_names[s]
    k = (os.getpid(), shards.root, name)
    with _lock:
        handle = _handles.get(k)
        if handle is not None:
            _handles.move_to_end(k)
            return handle
    fs, base = _filesystem(shards)
    where = f"{display(shards.root)}/{name}"
    try:
        handle = fs.open_input_file(f"{base}/{name}")
    except FileNotFoundError:
        raise ShardError(f"{where}:{member}: the shard is missing", where, member) from None
    except OSError as exc:
        raise ShardError(f"{where}:{member}: cannot open the shard: {first_line(exc)}", where, member) from None
    with _lock:
        _handles[k] = handle
        while len(_handles) > MAX_OPEN:
            _handles.popitem(last=False)  # not closed here: another thread may be reading it; GC closes it
    return handle


def read_sample(shards: ShardSet, i: int) -> bytes:
    """The image bytes of sample ``i``: one ranged read of its tar header and data. The header is checked
    (name and size), so a shard replaced or mis-packed since its index was written is caught, not misread;
    a shard cut short raises ``TruncatedShard``; both name the shard and the member."""
    s, offset, size = int(shards.shard_of[i]), int(shards.offsets[i]), int(shards.sizes[i])
    member = shards.member(i)
    where = f"{display(shards.root)}/{shards.shard_names[s]}"
    handle = _handle(shards, s, member)
    try:
        block = handle.read_at(size + BLOCK, offset - BLOCK)
    except OSError as exc:
        raise ShardError(f"{where}:{member}: cannot read {size} bytes at offset {offset}: {first_line(exc)}",
                         where, member) from None
    if len(block) < size + BLOCK:
        raise TruncatedShard(f"{where}:{member}: the shard is truncated: it ends at byte "
                             f"{offset - BLOCK + len(block)}, inside the member ({size} bytes at offset "
                             f"{offset}); restore the shard or re-pack", where, member)
    problem = header_problem(block[:BLOCK], member, size)
    if problem:
        raise ShardError(f"{where}:{member}: {problem}: the shard was replaced or mis-packed after its "
                         f"{INDEX} was written; re-pack", where, member)
    return block[BLOCK:]


# -- packing and checking -----------------------------------------------------------------------------

def pack(src: Union[str, os.PathLike], dest: Union[str, os.PathLike], samples_per_shard: int = 1000, *,
         prefix: str = "shard", skip_corrupt: bool = False, max_shard_bytes: int = 1 << 30,
         progress=None) -> PackReport:
    """Pack the local image folder ``src`` (PNG/JPEG, searched recursively; classes from sub-folders, as
    ``data.path`` reads it) into verified shards at ``dest`` (a new directory or URI); a folder under a URI:
    ``distgan.data.pack_sources.pack``.

    Each shard holds ``samples_per_shard`` images (fewer when it would pass ``max_shard_bytes``), written
    under a temporary name and renamed (uploaded, for a URI) when complete, then read back and verified
    (every member at its offset, sha256); ``index.json`` comes last. A failure removes what this pack wrote,
    so ``dest`` never holds an index of a partial set. An unreadable image is a ConfigError naming it,
    unless ``skip_corrupt`` (it is then left out and listed in the report). ``progress`` gets a line per
    shard written."""
    options = PackOptions(samples_per_shard, prefix, skip_corrupt, max_shard_bytes, progress).checked()
    return pack_images(LocalFolder.listed(str(src), "SRC"), str(dest), options)


def check(location: Union[str, os.PathLike], key: str = "PATH") -> CheckReport:
    """Read a data set through and report: a shard set (local or URI) in full (sha256, every member where
    the index says, every image's header), or a local image folder (every image's header); a folder under a
    URI: ``distgan.data.pack_sources.check``. Problems are in the report (``report.ok``); a location that is
    neither is a ConfigError naming ``key``."""
    location = str(location)
    fs, path = filesystem_of(location, key, need_prefix=False)
    try:
        shard_set = is_shard_set(fs, path)
    except OSError as exc:
        raise access_error(key, location, exc) from None
    if not shard_set:
        return check_images(LocalFolder.listed(location, key))
    return check_shard_set(location, key)


def check_shard_set(location: str, key: str) -> CheckReport:
    """``check`` of a shard set: its index against a listing, then every shard read through and verified."""
    fs, path, classes, entries = _read_index(location, key)
    report = CheckReport(display(location), "shards", classes=classes, shards=len(entries))
    for e in entries:
        where = f"{display(location)}/{e.name}"
        try:
            with fs.open_input_stream(f"{path}/{e.name}") as f:
                verdict = verify_shard(f, e, where, probe_bytes)
        except OSError as exc:
            report.problems.append(f"{where}: cannot be read: {first_line(exc)}")
            continue
        report.add(verdict, e)
    return report.done()

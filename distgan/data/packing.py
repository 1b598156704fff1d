"""Packing an image folder into verified shards, checking a folder, and the reports both print.

The public entry points are ``distgan.data.shards.pack`` and ``check`` (a local folder) and
``distgan.data.pack_sources`` (a folder anywhere); this module holds their bodies. They read a folder
through ``ImageFolder``: listed first, then each image screened and read in the listing's order. A local
folder (``LocalFolder``) is listed, screened and given classes by ``distgan.data.folder``, so it packs into
the same samples, in the same order and with the same labels, that ``data.path`` would read from it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import pyarrow.fs as pafs

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, filesystem_of, first_line, is_uri, local_path
from distgan.data.folder import classes as folder_classes
from distgan.data.folder import image_files, probe
from distgan.data.tarshards import INDEX, ShardEntry, ShardError, ShardWriter, Verdict, encode_index, verify_shard

Screened = tuple[int, str, tuple[int, int]]
"""One image's screening: its size in bytes, why it cannot be read ("" when it can), its upright (height, width)."""


class ImageFolder(Protocol):
    """An image folder as ``pack`` and ``check`` read it: listed (names, classes, labels), then screened
    and read image by image, in the listing's order."""

    location: str
    """The folder as messages name it: a path as given, or a URI without its query."""
    classes: tuple[str, ...]
    labels: Optional[np.ndarray]
    """int64 label per image, when there are classes."""

    def __len__(self) -> int: ...

    def name(self, i: int) -> str:
        """Image ``i`` as messages name it: its path, or its URI."""

    def screen(self, indices: Sequence[int]) -> Iterator[Screened]:
        """The screening of each image of ``indices``, in order; an image that cannot be read says why."""

    def read(self, indices: Sequence[int]) -> Iterator[tuple[bytes, int]]:
        """The bytes and modification time (Unix seconds) of each image of ``indices``, in order."""


@dataclass(frozen=True)
class LocalFolder:
    """A folder on the local (or a mounted) file system, by ``distgan.data.folder``'s listing and class rules."""

    location: str
    files: tuple[Path, ...]
    classes: tuple[str, ...]
    labels: Optional[np.ndarray]

    @classmethod
    def listed(cls, folder: str, key: str) -> "LocalFolder":
        """The folder's images and classes; errors name ``key``, the argument the folder came from."""
        if is_uri(folder):
            raise ConfigError(f"{key} {display(folder)!r}: distgan.data.shards reads an image folder from a local "
                              f"or mounted directory; a folder under a URI is read by distgan.data.pack_sources "
                              f"(what `distgan data pack` and `check` call)")
        try:
            cfg = DataConfig(path=folder)
            files, classes = image_files(cfg), folder_classes(cfg)
        except ConfigError as exc:  # its messages name data.path; this folder is the command's argument
            raise ConfigError(str(exc).replace("data.path", key, 1)) from None
        root, index = local_path(folder), {name: i for i, name in enumerate(classes)}
        labels = np.array([index[p.relative_to(root).parts[0]] for p in files], dtype=np.int64) if classes else None
        return cls(folder, tuple(files), classes, labels)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return str(self.files[i])

    def screen(self, indices: Sequence[int]) -> Iterator[Screened]:
        for i in indices:
            why, shape = probe(self.files[i])
            yield self.files[i].stat().st_size, why, shape

    def read(self, indices: Sequence[int]) -> Iterator[tuple[bytes, int]]:
        for i in indices:
            yield self.files[i].read_bytes(), int(self.files[i].stat().st_mtime)


@dataclass(frozen=True)
class PackOptions:
    """How ``pack`` cuts the shards and treats unreadable images (see ``distgan.data.shards.pack``)."""

    samples_per_shard: int = 1000
    prefix: str = "shard"
    skip_corrupt: bool = False
    max_shard_bytes: int = 1 << 30
    progress: Optional[Callable[[str], None]] = None
    """Called with a line per shard written."""

    def checked(self) -> "PackOptions":
        if self.samples_per_shard < 1:
            raise ConfigError(f"--per-shard: must be >= 1, got {self.samples_per_shard}")
        if not self.prefix or "/" in self.prefix or self.prefix.startswith("."):
            raise ConfigError(f"prefix {self.prefix!r}: a plain file-name prefix, e.g. 'shard'")
        return self


def access_error(key: str, location: str, exc: OSError) -> ConfigError:
    """The error for a location that cannot be looked at, naming ``key``; for a URI, what the store needs."""
    if not is_uri(location):
        return ConfigError(f"{key} {location!r} cannot be read: {first_line(exc)}")
    why = first_line(exc).rstrip(".")
    return ConfigError(f"{key} {display(location)!r} cannot be reached: {why}; expected a store that answers at the "
                       f"URI's address (endpoint_override in its query, for an S3-compatible server) and "
                       f"credentials where its client looks for them (environment, profile, instance role)")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _listed_lines(items: list[tuple[str, str]], limit: int = 20) -> list[str]:
    lines = [f"  {name}: {why}" for name, why in items[:limit]]
    return lines + ([f"  ... and {len(items) - limit} more"] if len(items) > limit else [])


@dataclass
class PackReport:
    """What ``pack`` wrote."""

    source: str
    dest: str
    files: int
    """Image files found in the source."""
    shards: list[tuple[str, int, int]] = field(default_factory=list)
    """(name, samples, bytes) per shard, in order."""
    classes: tuple[str, ...] = ()
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, why) of the unreadable images left out (``skip_corrupt``)."""
    seconds: float = 0.0

    @property
    def samples(self) -> int:
        return sum(n for _, n, _ in self.shards)

    @property
    def bytes(self) -> int:
        return sum(b for _, _, b in self.shards)

    def render(self) -> str:
        classes = f"; {len(self.classes)} classes: {', '.join(self.classes)}" if self.classes else "; no classes"
        lines = [f"packed {self.samples} of {self.files} images from {self.source} into {len(self.shards)} "
                 f"shard{'s' if len(self.shards) != 1 else ''} ({_size(self.bytes)}) at {self.dest}, each "
                 f"verified (read back: sha256, every member at its offset){classes}",
                 f"index: {self.dest}/{INDEX}"]
        if self.skipped:
            lines += [f"skipped {len(self.skipped)} unreadable image{'s' if len(self.skipped) != 1 else ''}:"]
            lines += _listed_lines(self.skipped)
        return "\n".join(lines + [f"took {self.seconds:.1f} s"])


@dataclass
class CheckReport:
    """What ``check`` found in a folder or a shard set. ``ok`` when nothing is unreadable or wrong."""

    location: str
    kind: str
    """``folder`` or ``shards``."""
    samples: int = 0
    bytes: int = 0
    classes: tuple[str, ...] = ()
    class_counts: list[int] = field(default_factory=list)
    shards: int = 0
    heights: Optional[tuple[int, int]] = None
    """(smallest, largest) image height in pixels, upright, from the headers."""
    widths: Optional[tuple[int, int]] = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(file, or shard:member; why) of every image that does not decode."""
    problems: list[str] = field(default_factory=list)
    """Shards that are not what their index says: wrong bytes, members missing or misplaced."""
    seconds: float = 0.0
    _shapes: list = field(default_factory=list, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def ok(self) -> bool:
        return not self.unreadable and not self.problems

    def add(self, verdict: Verdict, entry: ShardEntry) -> None:
        """One shard's verdict (``kind`` shards)."""
        self.samples += entry.samples
        self.bytes += entry.bytes
        if entry.labels is not None:
            counts = np.bincount(entry.labels, minlength=len(self.classes))
            self.class_counts = [a + int(b) for a, b in zip(self.class_counts or [0] * len(counts), counts)]
        self.unreadable += verdict.unreadable
        self.problems += verdict.problems
        self._shapes += verdict.shapes

    def done(self) -> "CheckReport":
        if self._shapes:
            hs, ws = zip(*self._shapes)
            self.heights, self.widths = (min(hs), max(hs)), (min(ws), max(ws))
        self._shapes = []
        self.seconds = time.monotonic() - self._started
        return self

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        out["unreadable"] = [{"name": n, "why": w} for n, w in self.unreadable]
        return {**out, "ok": self.ok}

    def render(self) -> str:
        what = f"{self.shards} shard{'s' if self.shards != 1 else ''}, " if self.kind == "shards" else ""
        noun = "samples" if self.kind == "shards" else "image files"
        lines = [f"{self.kind} {self.location}: {what}{self.samples} {noun}, {_size(self.bytes)}"]
        if self.classes:
            counts = ", ".join(f"{c} {n}" for c, n in zip(self.classes, self.class_counts))
            lines.append(f"classes: {len(self.classes)} ({counts})")
        else:
            lines.append("classes: none (unlabelled)")
        if self.heights and self.widths:
            lines.append(f"image sizes: height {self.heights[0]}-{self.heights[1]} px, width "
                         f"{self.widths[0]}-{self.widths[1]} px")
        if self.kind == "shards":
            lines.append(f"verified: sha256 of every shard, every member's header at its index offset "
                         f"({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''})")
            lines += [f"  {p}" for p in self.problems[:20]]
        lines.append(f"unreadable images: {len(self.unreadable)}")
        lines += _listed_lines(self.unreadable)
        lines.append(f"{'OK' if self.ok else 'PROBLEMS FOUND'} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def check_images(images: ImageFolder) -> CheckReport:
    """Every image of a folder screened (``ImageFolder.screen``: its header, ``verify``, a JPEG's end)."""
    report = CheckReport(images.location, "folder", classes=images.classes, class_counts=[0] * len(images.classes))
    for i, (size, why, shape) in enumerate(images.screen(range(len(images)))):
        report.samples += 1
        report.bytes += size
        if why:
            report.unreadable.append((images.name(i), why))
        else:
            report._shapes.append(shape)
    if images.labels is not None:
        report.class_counts = np.bincount(images.labels, minlength=len(images.classes)).tolist()
    return report.done()


class _Packer:
    """The shards of one ``pack``: the one being written, those published, and cleaning up after a failure."""

    def __init__(self, fs: pafs.FileSystem, base: str, dest: str, prefix: str):
        self.fs, self.base, self.dest, self.prefix = fs, base, dest, prefix
        self.remote = not isinstance(fs, pafs.LocalFileSystem)
        # A local shard is written beside its final name and renamed; a remote one is uploaded from here.
        self.staging = Path(tempfile.mkdtemp(prefix="distgan-pack-")) if self.remote else Path(base)
        self.entries: list[ShardEntry] = []
        self.published: list[str] = []
        self.tmp: Optional[Path] = None
        self.file = None

    @property
    def samples(self) -> int:
        return sum(e.samples for e in self.entries) + (len(self.keys) if self.file else 0)

    def _start(self) -> None:
        self.name = f"{self.prefix}-{len(self.entries):06d}.tar"
        self.tmp = self.staging / f".{self.name}.{os.getpid()}.tmp"  # not a final name: never read as a shard
        self.file = open(self.tmp, "wb")
        self.writer = ShardWriter(self.file)
        self.keys, self.exts, self.offsets, self.sizes, self.labels = [], [], [], [], []

    def add(self, key: str, data: bytes, ext: str, mtime: int, label: Optional[int]) -> None:
        if self.file is None:
            self._start()
        self.offsets.append(self.writer.add(f"{key}.{ext}", data, mtime))
        if label is not None:
            self.writer.add(f"{key}.cls", str(label).encode(), mtime)
            self.labels.append(label)
        self.keys.append(key)
        self.exts.append(ext)
        self.sizes.append(len(data))

    def full(self, samples: int, max_bytes: int) -> bool:
        return self.file is not None and (len(self.keys) >= samples or self.writer.position >= max_bytes)

    def finish_shard(self, progress: Optional[Callable[[str], None]]) -> None:
        """Close the shard, move it to its final name, read it back and verify it there."""
        if self.file is None:
            return
        size, sha = self.writer.finish()
        self.file.close()
        self.file = None
        entry = ShardEntry(self.name, size, sha, self.keys, self.exts, np.asarray(self.offsets, dtype=np.int64),
                           np.asarray(self.sizes, dtype=np.int64),
                           np.asarray(self.labels, dtype=np.int64) if self.labels else None)
        final = f"{self.base}/{self.name}"
        self.published.append(final)  # before the move: a failed upload may still leave an object
        if self.remote:
            with open(self.tmp, "rb") as src, self.fs.open_output_stream(final) as out:
                shutil.copyfileobj(src, out, 1 << 22)
            self.tmp.unlink()
        else:
            os.replace(self.tmp, final)
        where = f"{display(self.dest)}/{self.name}"
        with self.fs.open_input_stream(final) as f:
            verdict = verify_shard(f, entry, where)
        if verdict.problems:
            raise ShardError(f"{where}: failed verification after writing: {verdict.problems[0]}", where)
        self.entries.append(entry)
        if progress is not None:
            progress(f"wrote {where}: {entry.samples} samples, {_size(size)}, verified")

    def write_index(self, classes: tuple[str, ...]) -> None:
        data, final = encode_index(classes, self.entries), f"{self.base}/{INDEX}"
        self.published.append(final)
        if self.remote:  # one PUT: an object store never shows a partial object
            with self.fs.open_output_stream(final) as out:
                out.write(data)
            return
        self.tmp = self.staging / f".{INDEX}.{os.getpid()}.tmp"  # removed by discard if this fails
        self.tmp.write_bytes(data)
        os.replace(self.tmp, final)

    def discard(self) -> None:
        """After a failure: the shard being written and everything this pack published, removed."""
        if self.file is not None:
            self.file.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        for path in reversed(self.published):
            try:
                if self.fs.get_file_info(path).type == pafs.FileType.File:
                    self.fs.delete_file(path)
            except OSError:
                pass  # best effort; without index.json no reader takes these for a shard set
        self.close()

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.staging, ignore_errors=True)


def _checked_dest(dest: str, prefix: str) -> tuple[pafs.FileSystem, str]:
    """``dest``'s file system and path, checked without writing: it must not hold a shard set already
    (mixing two packs would corrupt both). Asked before the source is screened, which may take long."""
    fs, base = filesystem_of(dest, "DEST", need_prefix=False)
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            raise ConfigError(f"DEST {display(dest)!r} is a file; give a directory (or URI prefix) for the shards")
        if info.type == pafs.FileType.Directory:
            names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(base))]
            taken = [n for n in names if n == INDEX or (n.startswith(f"{prefix}-") and n.endswith(".tar"))]
            if taken:
                raise ConfigError(f"DEST {display(dest)!r} already holds {sorted(taken)[0]}: pack into a new "
                                  f"directory, or remove the old shard set first")
    except OSError as exc:
        raise access_error("DEST", dest, exc) from None
    return fs, base


def _screened(images: ImageFolder, skip_corrupt: bool) -> dict[int, str]:
    """Every image screened before anything is written: a bad file fails the pack at once, not hours in.
    Returns {index: why} of the unreadable ones (``skip_corrupt``), or raises naming the first."""
    failed = {i: why for i, (_, why, _) in enumerate(images.screen(range(len(images)))) if why}
    where = f"SRC {images.location!r}"
    if failed and not skip_corrupt:
        (i, why), more = next(iter(failed.items())), len(failed) - 1
        raise ConfigError(f"{where}: cannot read image {images.name(i)!r}{f' (and {more} more)' if more else ''}: "
                          f"{why}; fix or remove it, or pass --skip-corrupt to leave unreadable images out "
                          f"(they are listed)")
    if len(failed) == len(images):
        raise ConfigError(f"{where}: none of the {len(images)} images can be read")
    return failed


def pack_images(images: ImageFolder, dest: str, options: PackOptions) -> PackReport:
    """The body of ``distgan.data.shards.pack`` (see there), for a folder already listed."""
    started = time.monotonic()
    fs, base = _checked_dest(dest, options.prefix)
    failed = _screened(images, options.skip_corrupt)
    try:
        fs.create_dir(base, recursive=True)
    except OSError as exc:
        raise ConfigError(f"DEST {display(dest)!r} cannot be written: {first_line(exc)}") from None
    keep = [i for i in range(len(images)) if i not in failed]
    width = max(6, len(str(len(images) - 1)))  # keys sort as numbers do: 000000, 000001, ...
    packer = _Packer(fs, base, dest, options.prefix)
    try:
        for i, (data, mtime) in zip(keep, images.read(keep)):
            label = None if images.labels is None else int(images.labels[i])
            ext = Path(images.name(i)).suffix.lower().lstrip(".")
            packer.add(f"{packer.samples:0{width}d}", data, ext, mtime, label)
            if packer.full(options.samples_per_shard, options.max_shard_bytes):
                packer.finish_shard(options.progress)
        packer.finish_shard(options.progress)
        packer.write_index(images.classes)
    except BaseException:
        packer.discard()
        raise
    packer.close()
    return PackReport(images.location, display(dest), len(images), classes=images.classes,
                      shards=[(e.name, e.samples, e.bytes) for e in packer.entries],
                      skipped=[(images.name(i), why) for i, why in failed.items()], seconds=time.monotonic() - started)

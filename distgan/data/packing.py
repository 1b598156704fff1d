"""Packing an image folder into verified shards, checking a folder, and the reports both print.

The public entry points are ``distgan.data.shards.pack`` and ``check``; this module holds their bodies.
The folder is listed, screened and given classes by ``distgan.data.folder``, so a folder packs into the
same samples, in the same order and with the same labels, that ``data.path`` would read from it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow.fs as pafs

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, filesystem_of, first_line, is_uri, local_path
from distgan.data.folder import classes as folder_classes
from distgan.data.folder import image_files, probe
from distgan.data.tarshards import INDEX, ShardEntry, ShardError, ShardWriter, Verdict, encode_index, verify_shard


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _listing(folder: str, key: str) -> tuple[list[Path], tuple[str, ...]]:
    """The folder's images and classes, by ``distgan.data.folder``'s rules; errors name ``key``."""
    if is_uri(folder):
        raise ConfigError(f"{key} {display(folder)!r}: an image folder is read from a local or mounted directory")
    try:
        cfg = DataConfig(path=folder)
        return image_files(cfg), folder_classes(cfg)
    except ConfigError as exc:  # its messages name data.path; this folder is the command's argument
        raise ConfigError(str(exc).replace("data.path", key, 1)) from None


def _label_of(root: Path, classes: tuple[str, ...]) -> Callable[[Path], Optional[int]]:
    index = {name: i for i, name in enumerate(classes)}
    return lambda path: index[path.relative_to(root).parts[0]] if classes else None


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


def check_folder(folder: str, key: str) -> CheckReport:
    """Every image of a local folder probed from its header (``folder.probe``: ``verify``, JPEG end)."""
    files, classes = _listing(folder, key)
    label_of = _label_of(local_path(folder), classes)
    report = CheckReport(folder, "folder", classes=classes, class_counts=[0] * len(classes))
    for path in files:
        report.samples += 1
        report.bytes += path.stat().st_size
        why, shape = probe(path)
        if why:
            report.unreadable.append((str(path), why))
        else:
            report._shapes.append(shape)
        if classes:
            report.class_counts[label_of(path)] += 1
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

    def add(self, key: str, path: Path, label: Optional[int]) -> None:
        if self.file is None:
            self._start()
        data, mtime = path.read_bytes(), int(path.stat().st_mtime)
        ext = path.suffix.lower().lstrip(".")
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


def _prepare_dest(fs: pafs.FileSystem, base: str, dest: str, prefix: str) -> None:
    """``dest`` must not hold a shard set already (mixing two packs would corrupt both); made if missing."""
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
        fs.create_dir(base, recursive=True)
    except OSError as exc:
        raise ConfigError(f"DEST {display(dest)!r} cannot be written: {first_line(exc)}") from None


def pack_folder(src: str, dest: str, samples_per_shard: int, *, prefix: str, skip_corrupt: bool,
                max_shard_bytes: int, progress: Optional[Callable[[str], None]]) -> "PackReport":
    """The body of ``distgan.data.shards.pack`` (see there)."""
    started = time.monotonic()
    if samples_per_shard < 1:
        raise ConfigError(f"--per-shard: must be >= 1, got {samples_per_shard}")
    if not prefix or "/" in prefix or prefix.startswith("."):
        raise ConfigError(f"prefix {prefix!r}: a plain file-name prefix, e.g. 'shard'")
    files, classes = _listing(src, "SRC")
    # Every image screened before anything is written: a bad file fails the pack at once, not hours in.
    failed = {path: why for path in files if (why := probe(path)[0])}
    if failed and not skip_corrupt:
        (path, why), more = next(iter(failed.items())), len(failed) - 1
        raise ConfigError(f"SRC {src!r}: cannot read image {str(path)!r}{f' (and {more} more)' if more else ''}: "
                          f"{why}; fix or remove it, or pass --skip-corrupt to leave unreadable images out "
                          f"(they are listed)")
    if len(failed) == len(files):
        raise ConfigError(f"SRC {src!r}: none of the {len(files)} images can be read")
    fs, base = filesystem_of(dest, "DEST", need_prefix=False)
    _prepare_dest(fs, base, dest, prefix)
    label_of = _label_of(local_path(src), classes)
    width = max(6, len(str(len(files) - 1)))  # keys sort as numbers do: 000000, 000001, ...
    packer = _Packer(fs, base, dest, prefix)
    report = PackReport(src, display(dest), len(files), classes=classes,
                        skipped=[(str(p), why) for p, why in failed.items()])
    try:
        for path in files:
            if path in failed:
                continue
            packer.add(f"{packer.samples:0{width}d}", path, label_of(path))
            if packer.full(samples_per_shard, max_shard_bytes):
                packer.finish_shard(progress)
        packer.finish_shard(progress)
        packer.write_index(classes)
    except BaseException:
        packer.discard()
        raise
    packer.close()
    report.shards = [(e.name, e.samples, e.bytes) for e in packer.entries]
    report.seconds = time.monotonic() - started
    return report

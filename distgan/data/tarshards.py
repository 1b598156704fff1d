"""The on-disk format of sharded archives: tar members in the WebDataset layout, ``index.json``, verification.

A shard is a plain (uncompressed) POSIX tar file. Each sample is a run of members sharing a key: the image
``KEY.EXT`` (its file's bytes, unchanged: ``jpg``, ``jpeg`` or ``png``), then ``KEY.cls`` holding the class
index as ASCII digits when the set has classes. WebDataset and ``tar`` read these as they are.

``index.json`` is distgan's, beside the shards. Per shard it holds the name, byte size and sha256, and
per-sample arrays (key, image extension, data offset and size inside the tar, label), so one sample is one
ranged read and nothing is scanned. Uncompressed tar is what makes that possible: a member's bytes lie
whole at a known offset, right after its 512-byte header.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO, Optional

import numpy as np

from distgan.config import ConfigError

INDEX = "index.json"
FORMAT = "distgan-shards"
VERSION = 1
BLOCK = 512
"""Tar's block: headers are one block, data is padded to whole blocks."""
RECORD = 20 * BLOCK
"""Tar's record: the archive is padded to whole records, as tar and Python's tarfile write it."""

SHARD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.tar$")
"""A plain file name: an index cannot point a reader outside its directory."""
KEYS = re.compile(r"[A-Za-z0-9_-]+(?:\n[A-Za-z0-9_-]+)*")
"""Sample keys, one a line: no dots (WebDataset splits a member's name at the first dot), no slashes."""
EXT = re.compile(r"[a-z0-9]{1,8}")


class ShardError(OSError):
    """A sample cannot be read from its shard, or a shard is not what its index says; the message names
    the shard and the member. An ``OSError``, as PIL's decoding errors are, so a reader that skips bad
    files skips these too."""

    def __init__(self, message: str, shard: str = "", member: str = ""):
        super().__init__(message)
        self.shard, self.member = shard, member


class TruncatedShard(ShardError):
    """The shard ends before the member does: cut short in a copy or an upload."""


MAX_MTIME = 8 ** 11 - 1
"""The latest time a ustar header holds: 11 octal digits of seconds since 1970 (in 2242); none before 1970."""


def member_header(name: str, size: int, mtime: int) -> bytes:
    """The 512-byte ustar header of a regular file member (read-only, owned by nobody in particular). A time the
    header cannot hold (a file dated before 1970, or past 2242) becomes the nearest one it can: a member's time
    only informs, so it is no reason to refuse the file."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, min(max(int(mtime), 0), MAX_MTIME), 0o444, tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


class ShardWriter:
    """Writes one tar shard to ``out``, hashing as it goes and recording where each member's data lies."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.position = 0
        self.sha = hashlib.sha256()

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.sha.update(data)
        self.position += len(data)

    def add(self, name: str, data: bytes, mtime: int) -> int:
        """Append a member; returns the offset of its data in the shard."""
        self._write(member_header(name, len(data), mtime))
        offset = self.position
        self._write(data)
        self._write(b"\0" * (-len(data) % BLOCK))
        return offset

    def finish(self) -> tuple[int, str]:
        """Two zero blocks end the archive, padded to a whole record; returns (bytes, sha256)."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self.position % RECORD))
        return self.position, self.sha.hexdigest()


@dataclass(frozen=True, eq=False)
class ShardEntry:
    """One shard as ``index.json`` describes it."""

    name: str
    bytes: int
    sha256: str
    keys: list[str]
    exts: list[str]
    offsets: np.ndarray
    sizes: np.ndarray
    labels: Optional[np.ndarray] = None

    @property
    def samples(self) -> int:
        return len(self.keys)

    def member(self, k: int) -> str:
        return f"{self.keys[k]}.{self.exts[k]}"

    def to_json(self) -> dict:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "samples": self.samples,
                "keys": self.keys, "exts": self.exts, "offsets": self.offsets.tolist(),
                "sizes": self.sizes.tolist(), "labels": None if self.labels is None else self.labels.tolist()}


def encode_index(classes: tuple[str, ...], shards: list[ShardEntry]) -> bytes:
    """``index.json``'s bytes: one shard per line, so a reader can skim it."""
    head = {"format": FORMAT, "version": VERSION, "samples": sum(s.samples for s in shards),
            "classes": list(classes)}
    lines = ",\n".join(json.dumps(s.to_json(), separators=(",", ":")) for s in shards)
    return (json.dumps(head)[:-1] + ', "shards": [\n' + lines + "\n]}\n").encode()


def parse_index(data: bytes, where: str, key: str) -> tuple[tuple[str, ...], list[ShardEntry]]:
    """``index.json`` read and checked for consistency; anything wrong is a ConfigError naming ``key`` and
    ``where`` (the index's location). Shard files themselves are not touched."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{key} {where}: {why}; re-pack the folder with `distgan data pack SRC DEST`")

    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a distgan shard index (expected \"format\": {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise bad(f"index version {doc.get('version')!r}; this distgan reads version {VERSION}")
    classes = doc.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("\"classes\" must be a list of names")
    shards = doc.get("shards")
    if not isinstance(shards, list) or not shards:
        raise bad("it lists no shards")
    entries = [_entry(s, i, len(classes), bad) for i, s in enumerate(shards)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise bad("a shard is listed twice")
    if doc.get("samples") != sum(e.samples for e in entries):
        raise bad(f"\"samples\" {doc.get('samples')!r} is not the sum over its shards")
    return tuple(classes), entries


def _entry(doc: object, i: int, n_classes: int, bad) -> ShardEntry:
    if not isinstance(doc, dict):
        raise bad(f"shard entry {i} is not an object")
    name = doc.get("name")
    if not isinstance(name, str) or not SHARD_NAME.match(name):
        raise bad(f"shard entry {i}: {name!r} is not a shard file name (NAME.tar, no directories)")
    try:
        keys, exts = list(doc["keys"]), list(doc["exts"])
        offsets = np.asarray(doc["offsets"], dtype=np.int64)
        sizes = np.asarray(doc["sizes"], dtype=np.int64)
        labels = None if doc.get("labels") is None else np.asarray(doc["labels"], dtype=np.int64)
        size, sha = int(doc["bytes"]), str(doc["sha256"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise bad(f"shard {name}: a missing or malformed field ({type(exc).__name__}: {exc})") from None
    n = len(keys)
    if n == 0:
        raise bad(f"shard {name} is empty (no samples)")
    if offsets.ndim != 1 or sizes.ndim != 1 or not (len(exts) == offsets.shape[0] == sizes.shape[0] == n):
        raise bad(f"shard {name}: keys, exts, offsets and sizes differ in length")
    if doc.get("samples") not in (None, n):
        raise bad(f"shard {name}: \"samples\" {doc.get('samples')!r} but {n} keys")
    # One match over the keys joined (a million keys: 0.1 s, not 1 s); extensions repeat, so each once.
    if not KEYS.fullmatch("\n".join(map(str, keys))):
        raise bad(f"shard {name}: a key is not letters, digits, '_' or '-'")
    if not all(EXT.fullmatch(e) for e in set(map(str, exts))):
        raise bad(f"shard {name}: an extension is not 1-8 lowercase letters or digits")
    if len(set(keys)) != n:
        raise bad(f"shard {name}: a key appears twice")
    # Every member's data starts on a block after its header, and lies before the next member's header
    # and before the two zero blocks that end the archive.
    ends = offsets + sizes
    if ((sizes < 0).any() or (offsets % BLOCK).any() or offsets[0] < BLOCK
            or (offsets[1:] < ends[:-1] + BLOCK).any() or ends[-1] > size - 2 * BLOCK):
        raise bad(f"shard {name}: member offsets or sizes do not fit a {size}-byte tar file (mis-packed)")
    if labels is not None and (labels.shape != (n,) or (labels < 0).any() or (labels >= n_classes).any()):
        raise bad(f"shard {name}: labels must be one per sample, 0..{n_classes - 1}")
    if n_classes and labels is None:
        raise bad(f"shard {name}: the set has classes but this shard has no labels")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise bad(f"shard {name}: sha256 {sha!r} is not 64 hex digits")
    return ShardEntry(name, size, sha, keys, exts, offsets, sizes, labels)


def header_problem(block: bytes, member: str, size: int) -> str:
    """Why the 512 bytes before a member's data are not that member's tar header ("" when they are)."""
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as exc:
        return f"no tar header before it ({exc})"
    if info.name != member or info.size != size:
        return f"the header there is of {info.name!r} ({info.size} bytes), not {member!r} ({size} bytes)"
    return ""


class _Hashing:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        self.sha.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


@dataclass
class Verdict:
    """What reading one shard through found."""

    problems: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(shard:member, why) of images that do not decode."""
    shapes: list[tuple[int, int]] = field(default_factory=list)
    """(height, width) of every readable image, from its header (``probe`` only)."""


def verify_shard(raw: BinaryIO, entry: ShardEntry, where: str, probe=None) -> Verdict:
    """Read a shard once, start to end: every indexed member is at its offset with its size and its label,
    and the bytes hash to the index's sha256. ``probe`` (``folder.probe_bytes``) also checks each image."""
    verdict, stream = Verdict(), _Hashing(raw)
    expected = {entry.member(k): k for k in range(entry.samples)}
    labels = {} if entry.labels is None else {f"{entry.keys[k]}.cls": k for k in range(entry.samples)}
    found: set[int] = set()
    stopped = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                k = expected.get(info.name)
                if k is not None:
                    found.add(k)
                    if info.offset_data != entry.offsets[k] or info.size != entry.sizes[k]:
                        verdict.problems.append(
                            f"{where}:{info.name}: at offset {info.offset_data} with {info.size} bytes; the "
                            f"index says {entry.offsets[k]} and {entry.sizes[k]}")
                    elif probe is not None:
                        why, shape = probe(tar.extractfile(info).read(), info.name)
                        if why:
                            verdict.unreadable.append((f"{where}:{info.name}", why))
                        else:
                            verdict.shapes.append(shape)
                elif info.name in labels:
                    k = labels.pop(info.name)
                    text = tar.extractfile(info).read().decode("ascii", "replace").strip()
                    if text != str(entry.labels[k]):
                        verdict.problems.append(f"{where}:{info.name}: class {text!r}; the index says "
                                                f"{entry.labels[k]}")
            stopped = tar.offset  # tarfile ends quietly at a damaged header past the first: where it stopped
    except (tarfile.TarError, OSError, EOFError) as exc:
        verdict.problems.append(f"{where}: unreadable as tar after byte {stream.count}: {exc}")
    stream.drain()
    # The whole file first: when it changed, that is the cause of whatever else is found.
    if stream.count != entry.bytes:
        verdict.problems.insert(0, f"{where}: {stream.count} bytes; the index says {entry.bytes} (truncated, or "
                                   f"replaced after packing)")
    elif stream.sha.hexdigest() != entry.sha256:
        verdict.problems.insert(0, f"{where}: sha256 {stream.sha.hexdigest()[:16]}... differs from the index's "
                                   f"{entry.sha256[:16]}... (changed after packing)")
    missing = sorted(set(range(entry.samples)) - found)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        cut = (f"; tar readers stop at byte {stopped}, a damaged header"
               if 0 < stopped < entry.offsets[missing[0]] else "")
        verdict.problems.append(f"{where}: member {entry.member(missing[0])}{more} is not in the tar{cut}")
    if labels:
        verdict.problems.append(f"{where}: class member {next(iter(labels))} is not in the tar")
    return verdict

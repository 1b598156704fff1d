"""Where super-resolution's images come from, worked out from listings alone.

``data.path``, ``data.lr_path`` and ``data.val_path`` are each listed through ``distgan.data.catalog``
(a local folder, a folder under a URI, or, for ``data.path`` and ``data.val_path``, a shard set), once
per process. From the listings: HR/LR pairs matched by relative path without extension, and the held-out
validation images, chosen by a hash of the relative path (the same on every worker and in every run,
and adding files does not reshuffle the choice for the others). ``SRImages`` is what the crop tasks
carry to read the training images by bytes; ``probe`` reads one image's header, for the few files that
are checked before the first step.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from distgan.config import ConfigError, DataConfig
from distgan.core.filesystem import display, is_uri
from distgan.data.catalog import Catalog, FileReader, SampleReader, catalog_at
from distgan.data.folder import READ_ERRORS, probe as probe_file, probe_bytes
from distgan.data.shards import INDEX

KEYS = ("data.path", "data.lr_path", "data.val_path")
"""The config keys that name super-resolution's image locations."""


def location(cfg: DataConfig, key: str) -> Optional[str]:
    return getattr(cfg, key.removeprefix("data."))


def listing(cfg: DataConfig, key: str, fresh: bool = False) -> Catalog:
    """The catalog of the location config key ``key`` names (once per process unless ``fresh``)."""
    return catalog_at(location(cfg, key), key, fresh)


def require_local(cfg: DataConfig) -> None:
    """Data held in memory is read from local folders: a URI or a shard set is refused, naming its key."""
    for key in KEYS:
        where = location(cfg, key)
        if where is not None and (is_uri(where) or Path(where, INDEX).expanduser().is_file()):
            raise ConfigError(f"{key} {display(where)!r}: a URI or a shard set is read while streaming; "
                              f"data.stream=false holds local folders in memory: set data.stream to auto or true")


def _stems(found: Catalog, key: str) -> dict[str, int]:
    """Relative path without extension -> sample."""
    out: dict[str, int] = {}
    describe = found.reader.describe
    for i, name in enumerate(found.relative_names()):
        stem = name[:name.rfind(".")]  # every listed name ends in .png, .jpg or .jpeg
        if stem in out:
            raise ConfigError(f"{key} {display(found.location)!r}: {describe(out[stem])!r} and {describe(i)!r} "
                              f"differ only in extension; pairs are matched by name without extension, so keep "
                              f"one of them")
        out[stem] = i
    return out


def pair(hr: Catalog, lr: Catalog) -> dict[int, int]:
    """HR sample -> its LR sample, matched by relative path without extension; every image of either
    location must have its partner. Shard sets name samples by number, so they cannot be paired."""
    for key, found in (("data.path", hr), ("data.lr_path", lr)):
        if found.sharded:
            raise ConfigError(f"data.lr_path: {key} {display(found.location)!r} is a shard set, whose samples are "
                              f"named by number ({found.reader.relative(0)}), not by their files, so high- and "
                              f"low-resolution images cannot be paired; point {key} at the image folder, or set "
                              f"data.lr_path to null to make the low-resolution inputs on the fly")
    hr_stems, lr_stems = _stems(hr, "data.path"), _stems(lr, "data.lr_path")
    for mine, theirs, found, key, other, what in ((hr_stems, lr_stems, hr, "data.lr_path", lr, "low"),
                                                  (lr_stems, hr_stems, lr, "data.path", hr, "high")):
        missing = [stem for stem in mine if stem not in theirs]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ConfigError(f"{key} {display(other.location)!r}: no {what}-resolution image for "
                              f"{found.reader.describe(mine[missing[0]])!r}{more}; looked for "
                              f"{missing[0]}.png/.jpg/.jpeg there (pairs match by relative path, extension "
                              f"ignored)")
    return {i: lr_stems[stem] for stem, i in hr_stems.items()}


def split(found: Catalog, candidates: list[int], cfg: DataConfig, screened: bool) -> tuple[list[int], list[int]]:
    """(train, val) samples of ``candidates``: a held-out ``data.val_fraction``, chosen by a hash of the relative
    path. ``screened``: the candidates are the images found readable (the message says so)."""
    n = len(candidates)
    n_val = max(1, round(n * cfg.val_fraction))
    if n - n_val < 1:
        what = "readable images" if screened else "images"
        raise ConfigError(f"data.val_fraction: holding out {n_val} of the {n} {what} of data.path "
                          f"{display(cfg.path)!r} for validation leaves none to train on; add images, lower "
                          f"data.val_fraction, or set data.val_path to a folder of validation images")
    relative = found.reader.relative
    val = set(heapq.nsmallest(n_val, candidates, key=lambda i: hashlib.sha1(relative(i).encode()).digest()))
    return [i for i in candidates if i not in val], [i for i in candidates if i in val]


_probes: dict[tuple[int, str], tuple[str, tuple[int, int]]] = {}
"""(process, sample) -> ``probe``'s answer for images off the local disk, which cost a read each."""


def probe(found: Catalog, i: int) -> tuple[str, tuple[int, int]]:
    """Whether sample ``i`` can be read ("" if so, else why not) and its upright (height, width), from its
    header (``distgan.data.folder``'s probe; a local file's answer is cached per file version, another's
    per process)."""
    reader = found.reader
    if isinstance(reader, FileReader):
        return probe_file(Path(reader.paths[i]))
    key = (os.getpid(), reader.describe(i))
    if key not in _probes:
        try:
            _probes[key] = probe_bytes(reader.read(i), reader.relative(i))
        except READ_ERRORS as exc:  # the object is gone, the store refused, a shard is cut short
            _probes[key] = (str(exc) or type(exc).__name__, (0, 0))
    return _probes[key]


@dataclass(frozen=True)
class SRImages:
    """The training images, by training index (the order ``SRData.train_hr`` would hold them in): HR sample
    ``hr_index[i]`` of ``data.path``'s catalog and its paired LR sample ``lr_index[i]`` of ``data.lr_path``'s.
    Picklable (names and numbers): the crop tasks carry it and read each image's bytes where they run."""

    hr: SampleReader
    hr_index: np.ndarray
    location: str
    """``data.path`` as messages show it."""
    lr: Optional[SampleReader] = None
    lr_index: Optional[np.ndarray] = None
    lr_location: str = ""

    def __len__(self) -> int:
        return int(self.hr_index.shape[0])

    @property
    def paired(self) -> bool:
        return self.lr is not None

    def read_hr(self, i: int) -> bytes:
        return self.hr.read(int(self.hr_index[i]))

    def read_lr(self, i: int) -> bytes:
        return self.lr.read(int(self.lr_index[i]))

    def describe(self, i: int) -> str:
        return self.hr.describe(int(self.hr_index[i]))

    def describe_lr(self, i: int) -> str:
        return self.lr.describe(int(self.lr_index[i]))

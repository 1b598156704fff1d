"""Where runs are kept: a directory, or a URI that Ray's storage layer reads (``s3://``, ``gs://``, ...).

In a directory (local, or a shared file system every node mounts) a run directory is written in place.
Under a URI the run directory is an object-store prefix, and every process works on a node-local
staging copy (``staging_dir``) of the part it needs:

- checkpoints are Ray Train's own: each worker writes its part into a temporary directory that
  ``ray.train.report`` uploads; a resuming worker downloads the checkpoint Ray hands over (and, only when
  that one is refused, the earlier ones it falls back to) into its staging directory;
- the driver and rank 0 write the run's files (config.yaml, wandb_id, metrics.jsonl, samples,
  startup.json, the exported generator, the W&B directory at the end) into the staging copy and upload
  each as it is written, so a run resumed on any node finds them;
- the driver checks a resume against config.yaml, Ray's checkpoint record and the checkpoints' manifests
  and sizes, read from the store before anything starts.

Credentials come from where the store's client looks for them (environment, instance profile, workload
identity); a URI that holds them (``s3://KEY:SECRET@bucket``) is refused, since the URI is printed and
kept in job metadata. The store's options go in the URI's query, as pyarrow reads them
(``s3://bucket/runs?endpoint_override=host:9000&scheme=http`` for an S3-compatible server).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from distgan.config import ConfigError
# Re-exported: launchers, export and evaluate ask this module whether a location is a URI.
from distgan.core.filesystem import check_uri, is_uri, local_path, open_uri, redacted  # noqa: F401
from distgan.core.filesystem import first_line as _first_line


@dataclass(frozen=True)
class Storage:
    """``--storage``: the root that holds run directories."""

    text: str
    """What Ray Train gets as ``storage_path``: an absolute directory, or the URI with its query."""
    fs: pafs.FileSystem
    root: str
    """The root as a path on ``fs`` (a URI without scheme and query)."""
    remote: bool
    key: str = "--storage"
    """Where the user gave it (``--storage`` or ``train.storage``): what error messages name."""

    @classmethod
    def parse(cls, storage: Union[str, Path], key: str = "--storage") -> "Storage":
        """A directory (made absolute) or a URI pyarrow can open; a bad URI is a ConfigError naming it."""
        text = str(storage)
        if not is_uri(text):  # a directory, or a file:// URI of one
            path = local_path(text)
            return cls(str(path), pafs.LocalFileSystem(), str(path), remote=False, key=key)
        fs, root = open_uri(text, key)
        return cls(text, fs, root, remote=True, key=key)

    def check_reachable(self) -> None:
        """Fail early, naming the storage, when it cannot be listed (no such bucket, endpoint down, no access)."""
        try:
            self.fs.get_file_info(self.root)
            bucket = self.root.split("/", 1)[0]
            if self.remote and self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise ConfigError(f"{self.key} {self.text!r}: bucket {bucket!r} does not exist")
        except OSError as exc:
            raise ConfigError(f"{self.key} {self.text!r} cannot be reached: {_first_line(exc)}") from None

    def run(self, name: str) -> "StoreDir":
        return StoreDir(self, f"{self.root}/{name}")

    def child(self, rel: str) -> "Storage":
        """The storage rooted at ``rel`` inside this one (a sweep's ``trials``); a URI keeps its query."""
        rel = rel.strip("/")
        if not self.remote:
            return replace(self, text=str(Path(self.text) / rel), root=f"{self.root}/{rel}")
        parts = urlsplit(self.text)
        return replace(self, text=urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{rel}")),
                       root=f"{self.root}/{rel}")

    def text_of(self, fs_path: str) -> str:
        """``fs_path`` (a path on this storage's file system, under its root) as a path or URI that
        ``Storage.parse`` opens elsewhere: how a location crosses to another process."""
        if not self.remote:
            return fs_path  # a local path already is one
        if fs_path != self.root and not fs_path.startswith(self.root + "/"):
            raise ValueError(f"{fs_path} is not under {self.display()}")
        return self.child(fs_path[len(self.root):]).text if fs_path != self.root else self.text

    def as_dir(self) -> "StoreDir":
        """The storage's root itself as a directory."""
        return StoreDir(self, self.root)

    def display(self, name: Optional[str] = None) -> str:
        """The storage (or a run in it) as a user would name it: a path, or the URI without its query."""
        base = self.text if not self.remote else self.text.split("?", 1)[0].rstrip("/")
        return f"{base}/{name}" if name else base


def staging_dir(storage: Storage, name: str) -> Path:
    """This node's working copy of a run kept under a URI: the same for every process of the node.

    Keyed by the storage URI, so two stores holding runs of the same name do not share one.
    ``DISTGAN_STAGING_DIR`` moves it (default: the system temporary directory).
    """
    base = Path(os.environ.get("DISTGAN_STAGING_DIR") or Path(tempfile.gettempdir()) / f"distgan-{os.getuid()}")
    key = hashlib.sha256(storage.text.encode()).hexdigest()[:12]
    return base / "runs" / key / name


def local_dir(path: Union[str, Path]) -> "StoreDir":
    """A directory of the local file system, as a ``StoreDir``."""
    path = Path(path).resolve()
    return Storage.parse(path.parent).run(path.name)


class StoreDir:
    """A directory on a storage (a run directory, a checkpoint in it), by paths relative to it.

    Writes are whole-file and atomic: a temporary name renamed into place on a file system, a single put
    on an object store (which never shows a partial object).
    """

    def __init__(self, storage: Storage, base: str):
        self.storage = storage
        self.fs = storage.fs
        self.base = base

    def __repr__(self) -> str:
        return f"StoreDir({self.display()!r})"

    @property
    def name(self) -> str:
        return self.base.rsplit("/", 1)[-1]

    def child(self, rel: str) -> "StoreDir":
        return StoreDir(self.storage, self.path(rel))

    def parent(self) -> "StoreDir":
        return StoreDir(self.storage, self.base.rsplit("/", 1)[0])

    def path(self, rel: str = "") -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def display(self, rel: str = "") -> str:
        """How messages name ``rel``: a local path, or a URI without the store's options."""
        scheme = urlsplit(self.storage.text).scheme if self.storage.remote else ""
        return f"{scheme}://{self.path(rel)}" if scheme else self.path(rel)

    def info(self, rel: str) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path(rel))

    def is_file(self, rel: str) -> bool:
        return self.info(rel).type == pafs.FileType.File

    def is_dir(self, rel: str) -> bool:
        return self.info(rel).type == pafs.FileType.Directory

    def size(self, rel: str) -> Optional[int]:
        info = self.info(rel)
        return info.size if info.type == pafs.FileType.File else None

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes; FileNotFoundError when it is not there."""
        if not self.is_file(rel):
            raise FileNotFoundError(self.display(rel))
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.path(rel)
        if not self.storage.remote:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(f"{target}.{os.getpid()}.tmp")  # per process: two ranks may write one file at once
            tmp.write_bytes(data)
            os.replace(tmp, target)
            return
        with self.fs.open_output_stream(target) as f:
            f.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode())

    def delete(self, rel: str) -> None:
        if self.is_file(rel):
            self.fs.delete_file(self.path(rel))

    def subdirs(self) -> list[str]:
        """Names of the run directory's subdirectories (none when it does not exist)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def sizes(self, rel: str) -> dict[str, int]:
        """Every file under ``rel`` with its size, by path relative to ``rel``."""
        root = self.path(rel)
        infos = self.fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        return {i.path[len(root) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}

    def upload(self, local: Path, rel: str) -> None:
        """Copy a local file, or a directory tree, to ``rel``; links in a tree are left out (W&B's
        ``latest-run`` would otherwise be a second copy of the run)."""
        local = Path(local)
        if not local.is_dir():
            self.write_bytes(rel, local.read_bytes())
            return
        for top, _, names in os.walk(local):  # does not descend into linked directories
            for name in sorted(names):
                path = Path(top) / name
                if path.is_file() and not path.is_symlink():
                    inside = path.relative_to(local).as_posix()
                    self.write_bytes(f"{rel}/{inside}" if rel else inside, path.read_bytes())

    def download(self, rel: str, local: Path) -> None:
        """Copy ``rel`` (a file or a directory tree) to ``local``, replacing what is there."""
        local = Path(local)
        if local.is_dir():
            shutil.rmtree(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        if self.is_dir(rel):
            pafs.copy_files(self.path(rel), str(local), source_filesystem=self.fs)
        else:
            local.write_bytes(self.read_bytes(rel))


class CheckpointDownloads:
    """A worker's view of a run's checkpoints under a URI: each downloaded into ``local`` when it is tried.

    Ray Train hands a resuming worker the latest checkpoint; only when that one is refused are the earlier
    ones (``siblings``) downloaded, one at a time, newest first. Each rank has its own ``local``
    directory, since ranks of one node download at once; ``discard`` removes it after the restore.
    """

    def __init__(self, run: StoreDir, local: Path):
        self.run = run
        self.local = Path(local)

    def siblings(self) -> list[str]:
        return self.run.subdirs()

    def fetch(self, local: Path) -> None:
        """Download the checkpoint named ``local.name`` to ``local`` (a directory in ``self.local``)."""
        local = Path(local)
        if local.parent != self.local:
            raise ValueError(f"{local} is not a download of {self.local}")
        if not self.run.is_dir(local.name):
            raise FileNotFoundError(f"checkpoint {self.run.display(local.name)} is not in the storage")
        self.run.download(local.name, local)

    def discard(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)

"""A directory or a URI as a pyarrow file system and a path on it: what run storage and data both read.

A location is a directory (made absolute; ``file://`` URIs count as directories) or a URI that pyarrow
opens (``s3://``, ``gs://``, ``hdfs://``, ...), with the store's options in the URI's query as pyarrow reads
them (``s3://bucket/data?endpoint_override=host:9000&scheme=http`` for an S3-compatible server).

Credentials come from where the store's client looks for them (environment, profile, instance role,
workload identity); a URI that holds them (``s3://KEY:SECRET@bucket``) is refused, since locations are
printed, logged and kept in job metadata and run directories. Every error names the config key or flag the
location came from (``--storage``, ``train.storage``, ``data.path``), so the user knows what to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from distgan.config import ConfigError

PREFIXED_SCHEMES = frozenset({"s3", "gs", "gcs"})
"""Object stores whose URIs name a bucket first: the bucket alone is refused where a prefix is needed."""


def is_uri(location: Union[str, Path]) -> bool:
    """Whether ``location`` names an object store (or another non-local file system) rather than a directory."""
    text = str(location)
    return "://" in text and urlsplit(text).scheme != "file"


def check_uri(text: str, key: str = "--storage", need_prefix: bool = True) -> None:
    """What can be said of a URI without reaching the store: no credentials in it, and (``need_prefix``) a
    prefix inside the bucket rather than the bucket itself. ``key`` is what the error names."""
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise ConfigError(f"{key} {redacted(text)}: credentials in the URI would be printed and kept in "
                          f"job metadata; give them the store's usual way (environment, profile, instance "
                          f"role) and leave them out of the URI")
    if need_prefix and parts.scheme in PREFIXED_SCHEMES and not parts.path.strip("/"):
        raise ConfigError(f"{key} {text!r}: name a prefix inside the bucket ({parts.scheme}://bucket/runs), "
                          f"not the bucket itself")


def redacted(uri: str) -> str:
    """``repr(uri)``, with any user and password in it replaced by ``***``."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return repr(uri)
    return repr(parts._replace(netloc=f"***@{parts.hostname or ''}").geturl())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (pyarrow's S3 errors run to several), or its type's name."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def local_path(location: Union[str, Path]) -> Path:
    """A directory location (a path, or a ``file://`` URI) as an absolute path."""
    text = str(location)
    if "://" in text and urlsplit(text).scheme == "file":
        text = urlsplit(text).path
    return Path(text).expanduser().resolve()


def display(location: Union[str, Path]) -> str:
    """How messages name a location: a path as given, or the URI without its query (the store's options);
    without a trailing slash either way, since messages join names to it (``dest/shard-000000.tar``)."""
    text = str(location)
    shown = text.split("?", 1)[0] if is_uri(text) else text
    return shown.rstrip("/") or shown  # "/" stays "/"


def open_uri(text: str, key: str = "--storage", need_prefix: bool = True) -> tuple[pafs.FileSystem, str]:
    """A URI's file system and its path there (no scheme, no query, no trailing slash); a bad URI is a
    ConfigError naming ``key``. S3 may ask the store where the bucket lives here (when the URI has no
    ``region=``), so an unreachable address can fail here too."""
    check_uri(text, key, need_prefix)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except ValueError as exc:  # pyarrow's ArrowInvalid: a scheme or option it does not know
        raise ConfigError(f"{key} {text!r}: not a storage URI this installation can open ({exc}); "
                          f"use a directory, or s3://, gs://, hdfs:// with the store's options in the "
                          f"query (s3://bucket/prefix?endpoint_override=host:9000)") from None
    except OSError as exc:
        raise ConfigError(f"{key} {text!r} cannot be reached: {first_line(exc)}") from None
    return fs, path.rstrip("/")


def filesystem_of(location: Union[str, Path], key: str, need_prefix: bool = True) -> tuple[pafs.FileSystem, str]:
    """``location`` (a directory or a URI) as (file system, path on it); errors name ``key``."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(local_path(location))
    return open_uri(str(location), key, need_prefix)

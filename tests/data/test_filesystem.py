"""``distgan.core.filesystem``: a directory or URI as (pyarrow file system, path), errors naming the config key
that gave it; run storage (``distgan.persist.storage``) keeps its names and its behaviour on top of it."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from distgan.config import ConfigError
from distgan.core import filesystem
from distgan.persist import storage


def test_a_directory_is_local_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for given in ("data", "file://" + str(tmp_path / "data"), tmp_path / "data"):
        fs, path = filesystem.filesystem_of(given, "data.path")
        assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "data")
        assert not filesystem.is_uri(given)


def test_a_uri_opens_without_reaching_the_store():
    fs, path = filesystem.filesystem_of("s3://bucket/data/?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http",
                                        "data.path")
    assert fs.type_name == "s3" and path == "bucket/data"
    assert filesystem.display("s3://bucket/data?region=x") == "s3://bucket/data"


def test_credentials_in_a_data_uri_are_refused_naming_the_key_not_the_secret():
    with pytest.raises(ConfigError, match="credentials in the URI") as err:
        filesystem.filesystem_of("s3://AKIAEXAMPLE:s3cr3t-v4lue@bucket/data", "data.path")
    assert str(err.value).startswith("data.path ")
    assert "s3cr3t" not in str(err.value) and "AKIAEXAMPLE" not in str(err.value)


def test_a_bucket_alone_is_refused_for_runs_but_may_hold_data():
    with pytest.raises(ConfigError, match="name a prefix inside the bucket"):
        filesystem.check_uri("gs://bucket/", "--storage")
    filesystem.check_uri("s3://bucket", "data.path", need_prefix=False)


def test_an_unknown_scheme_names_the_key():
    with pytest.raises(ConfigError, match="not a storage URI this installation can open") as err:
        filesystem.filesystem_of("foo://bucket/data", "data.path")
    assert str(err.value).startswith("data.path 'foo://bucket/data'")


def test_run_storage_re_exports_the_same_functions():
    assert storage.is_uri is filesystem.is_uri and storage.check_uri is filesystem.check_uri
    assert storage.redacted is filesystem.redacted
    assert storage.redacted("s3://k:s@bucket/runs") == repr("s3://***@bucket/runs")

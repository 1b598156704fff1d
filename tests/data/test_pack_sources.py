"""``distgan.data.pack_sources``: an image folder in a bucket is checked and packed as the same folder on disk
is (same counts, same samples in the same order with the same labels), and a store that cannot be used is
named before anything is written. The bucket is on the suite's local S3 server (``s3_server``)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from data.test_shards import make_folder
from distgan.config import ConfigError
from distgan.data import pack_sources, shards
from buckets import upload


@pytest.fixture
def src(tmp_path) -> Path:
    # "cat-2" sorts before "cat/..." as text, after "cat" as a folder: the listing keeps the folder's order.
    return make_folder(tmp_path / "src", per_class=4, classes=("cat", "cat-2", "dog"))


@pytest.fixture
def bucket(s3_server, request):
    """A fresh bucket per test: ``bucket(folder, prefix)`` uploads a folder, ``bucket(None, prefix)`` names a
    prefix; either way, the prefix's URI."""
    name = "packsrc-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3", endpoint_url=f"http://{s3_server}").create_bucket(Bucket=name)
    return lambda root, prefix: (upload(root, s3_server, name, prefix) if root is not None
                                 else f"s3://{name}/{prefix}?endpoint_override={s3_server}&scheme=http")


def test_a_bucket_folder_is_checked_as_the_local_folder_is(src, bucket):
    (src / "dog" / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    uri = bucket(src, "photos")
    local, remote = shards.check(str(src)), pack_sources.check(uri)
    assert remote.location == uri.split("?")[0] and remote.kind == "folder"
    assert (remote.samples, remote.bytes, remote.classes, remote.class_counts, remote.heights, remote.widths) == (
        local.samples, local.bytes, local.classes, local.class_counts, local.heights, local.widths)
    assert (remote.samples, remote.classes, remote.class_counts) == (13, ("cat", "cat-2", "dog"), [4, 4, 5])
    assert [name for name, _ in remote.unreadable] == [f"{uri.split('?')[0]}/dog/zz_bad.png"]
    assert not remote.ok and "endpoint_override" not in remote.render()


def _samples(location: str) -> tuple[list[bytes], list[int], tuple[str, ...]]:
    s = shards.open_shard_set(location)
    return [shards.read_sample(s, i) for i in range(len(s))], s.labels.tolist(), s.classes


def test_a_bucket_folder_packs_the_samples_of_the_local_folder(src, bucket, tmp_path):
    (src / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    uri = bucket(src, "photos")
    with pytest.raises(ConfigError, match="--skip-corrupt") as err:
        pack_sources.pack(uri, tmp_path / "refused")
    assert f"{uri.split('?')[0]}/cat/broken.jpg" in str(err.value) and not (tmp_path / "refused").exists()

    local = shards.pack(src, tmp_path / "local", samples_per_shard=5, skip_corrupt=True)
    lines: list[str] = []
    remote = pack_sources.pack(uri, tmp_path / "remote", samples_per_shard=5, skip_corrupt=True,
                               progress=lines.append)
    assert (remote.files, remote.samples, remote.classes) == (local.files, local.samples, local.classes) == (
        13, 12, ("cat", "cat-2", "dog"))
    assert [(n, k) for n, k, _ in remote.shards] == [(n, k) for n, k, _ in local.shards] and len(lines) == 3
    bad = f"{uri.split('?')[0]}/cat/broken.jpg"
    assert remote.skipped == [(bad, f"cannot identify image file {bad!r}")]
    assert local.skipped == [(str(src / "cat" / "broken.jpg"), f"cannot identify image file {local.skipped[0][0]!r}")]
    assert remote.source == uri.split("?")[0] and "endpoint_override" not in remote.render()
    assert _samples(str(tmp_path / "remote")) == _samples(str(tmp_path / "local"))
    assert shards.check(str(tmp_path / "remote")).ok


def test_a_bucket_folder_packs_into_a_bucket(src, bucket, monkeypatch):
    uri, dest = bucket(src, "photos"), bucket(None, "packed")
    monkeypatch.setattr(pack_sources, "READERS", 3)  # fewer readers than images: the window slides
    report = pack_sources.pack(uri, dest, samples_per_shard=8)
    assert report.dest == dest.split("?")[0] and report.samples == 12 and len(report.shards) == 2
    files = sorted(p for p in src.rglob("*") if p.is_file())
    data, labels, classes = _samples(dest)
    assert data == [p.read_bytes() for p in sorted(files, key=lambda p: p.relative_to(src).parts)]
    assert classes == ("cat", "cat-2", "dog") and labels == [0] * 4 + [1] * 4 + [2] * 4
    assert pack_sources.check(dest).ok and pack_sources.check(dest).kind == "shards"
    with pytest.raises(ConfigError, match=r"SRC 's3://.*/packed' holds a shard set"):
        pack_sources.pack(dest, bucket(None, "again"))


def test_an_image_removed_while_packing_is_named_and_nothing_is_kept(src, bucket, tmp_path, monkeypatch):
    uri = bucket(src, "photos")
    screen = pack_sources.StoreFolder._screen_one

    def screen_then_remove(self, i):
        found = screen(self, i)
        if i == 6:  # screened, then gone before the pack reads it
            self.fs.delete_file(self.paths[i])
        return found

    monkeypatch.setattr(pack_sources.StoreFolder, "_screen_one", screen_then_remove)
    with pytest.raises(OSError, match=r"s3://.*/cat-2/im02.jpg: cannot be read") as err:
        pack_sources.pack(uri, tmp_path / "out", samples_per_shard=4)
    assert "changed or removed while packing" in str(err.value)
    assert list((tmp_path / "out").iterdir()) == []  # the first shard was written, then removed


def test_readers_hold_at_most_readers_images(monkeypatch):
    """The bounded-memory promise: a slow consumer never has more than READERS fetched images waiting."""
    monkeypatch.setattr(pack_sources, "READERS", 3)
    lock, held, most = threading.Lock(), [0], [0]

    def fetch(i):
        with lock:
            held[0] += 1
            most[0] = max(most[0], held[0])
        return i

    got = []
    for i in pack_sources._in_order(fetch, range(20)):
        time.sleep(0.005)  # the writer is slower than the readers
        got.append(i)
        with lock:
            held[0] -= 1
    assert got == list(range(20)) and most[0] <= 3


# -- a store that cannot be used: named before anything is written -----------------------------------

class _Refusing(BaseHTTPRequestHandler):
    """What S3 answers a request without credentials on a private bucket: 403 AccessDenied."""

    signed: list = []

    def _deny(self):
        self.signed.append("Authorization" in self.headers)
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = _deny

    def log_message(self, *args):
        pass


@pytest.fixture
def without_credentials(monkeypatch, tmp_path):
    """An S3 endpoint that refuses unsigned requests, and no credentials anywhere the client looks."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Refusing.signed = []
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    assert _Refusing.signed and not any(_Refusing.signed)  # the client really had no credentials to sign with


def test_missing_credentials_are_named_with_what_the_store_needs(without_credentials, src, tmp_path):
    uri = f"s3://private/photos?endpoint_override={without_credentials}&scheme=http"
    for call, key in ((lambda: pack_sources.check(uri), "PATH"),
                      (lambda: pack_sources.pack(uri, tmp_path / "out"), "SRC"),
                      (lambda: pack_sources.pack(src, uri), "DEST")):
        with pytest.raises(ConfigError, match="ACCESS_DENIED") as err:
            call()
        assert str(err.value).startswith(f"{key} 's3://private/photos' cannot be reached: "), err.value
        assert "credentials where its client looks for them" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_source_uris_are_named_without_their_secrets(bucket, tmp_path):
    with pytest.raises(ConfigError, match="credentials in the URI") as err:
        pack_sources.pack("s3://AKIAEXAMPLE:s3cr3t@bucket/photos", tmp_path / "out")
    assert str(err.value).startswith("SRC 's3://***@bucket/photos'") and "s3cr3t" not in str(err.value)
    with pytest.raises(ConfigError, match="credentials in the URI") as err:
        pack_sources.check("s3://AKIAEXAMPLE:s3cr3t@bucket/photos")
    assert str(err.value).startswith("PATH ") and "s3cr3t" not in str(err.value)
    empty = bucket(None, "nothing")
    with pytest.raises(ConfigError, match="no PNG/JPEG images found") as err:
        pack_sources.pack(empty, tmp_path / "out")
    assert str(err.value).startswith(f"SRC {empty.split('?')[0]!r}") and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="no PNG/JPEG images found") as err:
        pack_sources.check(empty)
    assert str(err.value).startswith(f"PATH {empty.split('?')[0]!r}")


def test_hidden_objects_in_a_bucket_folder_are_ignored(src, bucket):
    """An uploaded folder keeps its ``.ipynb_checkpoints`` and macOS ``._`` files: no class, no image, as on disk."""
    from distgan.data import catalog

    (src / ".ipynb_checkpoints").mkdir()
    (src / "cat" / "im00.jpg").replace(src / ".ipynb_checkpoints" / "im00-checkpoint.jpg")
    (src / "dog" / "._im01.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    uri = bucket(src, "photos")
    remote, local = pack_sources.check(uri), shards.check(str(src))
    assert remote.ok and (remote.samples, remote.classes, remote.class_counts) == (
        local.samples, local.classes, local.class_counts) == (11, ("cat", "cat-2", "dog"), [3, 4, 4])
    assert catalog.catalog_at(uri).relative_names() == catalog.catalog_at(str(src)).relative_names()

"""Catalogs: a shard set or a URI is listed once per process, whoever asks (the driver's check, the classes, the
feed, the reference set), a local folder every time (so a change in place is seen); a folder in a bucket lists in the local folder's order; every source names its samples by
their path inside it; a store that cannot be reached is named."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data import catalog, shards
from distgan.data.stream import ThreadStreamer
from buckets import upload


def save(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    for i in range(6):
        save(tmp_path / "imgs" / ("a" if i < 3 else "b") / f"{i}.png", seed=i)
    return tmp_path / "imgs"


@pytest.fixture
def listings(monkeypatch) -> list[str]:
    """The locations ``catalog`` lists, one entry per listing."""
    listed: list[str] = []
    real = catalog._list

    def counting(location: str, key: str) -> catalog.Catalog:
        listed.append(location)
        return real(location, key)

    monkeypatch.setattr(catalog, "_list", counting)
    return listed


def test_a_start_lists_a_shard_set_once(folder, tmp_path, listings):
    shards.pack(folder, tmp_path / "packed", samples_per_shard=4)
    cfg = DataConfig(path=str(tmp_path / "packed"), resolution=8, channels=3)
    data.check(cfg)  # the driver
    data.check(cfg)  # the worker, again
    assert data.class_names(cfg) == ("a", "b")
    feed = data.open_feed(cfg, 2, 0, 1, 0, ThreadStreamer())
    feed.next_batch()
    x, labels, _ = data.reference_set(cfg, 4, 0, ThreadStreamer(), feed)
    assert x.shape == (4, 3, 8, 8) and listings == [str(tmp_path / "packed")]


def test_another_process_a_fresh_listing_or_a_forgotten_one_lists_again(folder, tmp_path, listings, monkeypatch):
    shards.pack(folder, tmp_path / "packed", samples_per_shard=4)
    packed = str(tmp_path / "packed")
    first = catalog.catalog_at(packed)
    assert catalog.catalog_at(packed) is first and len(listings) == 1
    assert catalog.catalog_at(packed, fresh=True) is not first and len(listings) == 2
    catalog.forget()
    catalog.catalog_at(packed)
    assert len(listings) == 3
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a forked child does not trust its parent's listing
    catalog.catalog_at(packed)
    assert len(listings) == 4


def test_a_local_folder_is_listed_afresh_each_time(folder, listings):
    assert len(catalog.catalog_at(str(folder))) == 6
    save(folder / "b" / "9.png", seed=9)  # changed in place, between two runs of one process
    assert len(catalog.catalog_at(str(folder))) == 7 and len(listings) == 2


def test_errors_are_not_kept(tmp_path, listings):
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"data.lr_path '.*empty': no PNG/JPEG images found"):
            catalog.catalog_at(str(tmp_path / "empty"), "data.lr_path")
    assert len(listings) == 2


def test_every_source_names_its_samples_and_a_bucket_keeps_the_folder_order(tmp_path, s3_server):
    # As strings "a-c.png" < "a.png" < "a/b.png"; a folder lists by path components: "a/b.png" first.
    for name in ("a-c.png", "a.png", "a/b.png", "a/z/d.jpg"):
        save(tmp_path / "mixed" / name, seed=len(name))
    local = catalog.catalog_at(str(tmp_path / "mixed"))
    remote = catalog.catalog_at(upload(tmp_path / "mixed", s3_server, "catalog-order", "set"))
    assert local.relative_names() == remote.relative_names() == ["a/b.png", "a/z/d.jpg", "a-c.png", "a.png"]
    assert [remote.reader.read(i) for i in range(4)] == [local.reader.read(i) for i in range(4)]
    assert local.name == "mixed" and remote.name == "set" and not remote.sharded
    shards.pack(tmp_path / "mixed", tmp_path / "packed", samples_per_shard=3)
    packed = catalog.catalog_at(str(tmp_path / "packed"))
    assert packed.sharded and packed.relative_names() == ["000000.png", "000001.jpg", "000002.png", "000003.png"]


def test_a_store_that_cannot_be_reached_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.val_path 's3://nowhere/set' cannot be reached: "):
        catalog.catalog_at("s3://nowhere/set?endpoint_override=127.0.0.1:9&scheme=http", "data.val_path")

"""Every place a streamed data set can live gives the same batches: a local folder, the shard set packed from it,
and both kept in an S3 bucket (the suite's local S3 server stands in for a cloud store, which cannot exist here)."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
import torch
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data import shards
from distgan.data.stream import ThreadStreamer
from buckets import upload

BATCH, STEPS = 4, 9  # 36 samples: past the end of the 24-image epoch


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources") / "imgs"
    rng = np.random.default_rng(0)
    for i in range(24):
        sub = root / ("a" if i < 10 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(sub / f"{i:02d}.png")
    return root


def batches(path: str, **extra) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = DataConfig(path=path, resolution=8, channels=3, **extra)
    assert data.class_names(cfg) == ("a", "b")
    data.check(cfg)
    feed = data.open_feed(cfg, BATCH, 0, 1, 5, ThreadStreamer())
    xs, ys = zip(*(feed.next_batch() for _ in range(STEPS)))
    return torch.cat(xs), torch.cat(ys)


def test_a_shard_set_streams_the_batches_of_its_folder(folder, tmp_path):
    shards.pack(folder, tmp_path / "packed", samples_per_shard=5)
    x_folder, y_folder = batches(str(folder))
    x_shards, y_shards = batches(str(tmp_path / "packed"))
    assert torch.equal(x_folder, x_shards) and torch.equal(y_folder, y_shards)


def test_a_folder_and_a_shard_set_in_a_bucket_stream_the_same_batches(folder, tmp_path, s3_server):
    shards.pack(folder, tmp_path / "packed", samples_per_shard=7)
    x_local, y_local = batches(str(folder))
    for uri in (upload(folder, s3_server, "stream-folder", "imgs"),
                upload(tmp_path / "packed", s3_server, "stream-shards", "packed")):
        x, y = batches(uri)
        assert torch.equal(x, x_local) and torch.equal(y, y_local), uri


def test_a_bucket_prefix_without_images_is_named(s3_server):
    boto3.client("s3", endpoint_url=f"http://{s3_server}").create_bucket(Bucket="stream-empty")
    uri = f"s3://stream-empty/nothing?endpoint_override={s3_server}&scheme=http"
    with pytest.raises(ConfigError, match=r"data.path 's3://stream-empty/nothing': no PNG/JPEG images found"):
        data.check(DataConfig(path=uri))


def test_a_uri_cannot_be_held_in_memory(s3_server):
    uri = f"s3://stream-empty/x?endpoint_override={s3_server}&scheme=http"
    with pytest.raises(ConfigError, match="data.stream=false holds a local folder in memory"):
        data.check(DataConfig(path=uri, stream=False))


def test_a_truncated_shard_is_named_when_its_sample_comes(folder, tmp_path):
    shards.pack(folder, tmp_path / "packed", samples_per_shard=12)
    last = sorted((tmp_path / "packed").glob("*.tar"))[-1]
    last.write_bytes(last.read_bytes()[:2000])  # the size in index.json no longer matches
    with pytest.raises(ConfigError, match=r"shard"):
        batches(str(tmp_path / "packed"))

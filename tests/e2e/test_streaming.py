"""Streaming through Ray Data on the shared local Ray: the decoding tasks give back what a thread of this process
gives, in order; a bad file is named through Ray's wrapping; and a 2-worker run trains from a streamed folder,
logging its data wait and the file it skipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import distgan
from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data.catalog import catalog
from distgan.data.stream import DecodeImages, ThreadStreamer
from distgan.launch.streaming import RayDataStreamer
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream") / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def decoded(streamer, cfg: DataConfig, index: np.ndarray, batch: int) -> list[dict]:
    return list(streamer.stream({"index": index}, DecodeImages(catalog(cfg), 16, 1, cfg.skip_corrupt), batch))


def test_ray_data_decodes_in_the_order_given(local_ray, folder):
    cfg = DataConfig(path=str(folder), resolution=16)
    index = np.random.default_rng(1).permutation(64)[:40]
    ray_batches = decoded(RayDataStreamer(prefetch_batches=2, cpus_per_task=1), cfg, index, 8)
    thread_batches = decoded(ThreadStreamer(), cfg, index, 8)
    assert [len(b["index"]) for b in ray_batches] == [8] * 5
    for got, want in zip(ray_batches, thread_batches):
        assert np.array_equal(got["index"], want["index"]) and np.array_equal(got["image"], want["image"])


def test_a_bad_file_is_named_through_ray(local_ray, folder, tmp_path):
    for i in range(8):
        Image.new("L", (16, 16), i).save(tmp_path / f"{i}.png")
    (tmp_path / "5.png").write_bytes(b"not a png")
    cfg = DataConfig(path=str(tmp_path), resolution=16)
    feed = data.open_feed(cfg, 4, 0, 1, 0, RayDataStreamer(prefetch_batches=1, cpus_per_task=1))
    with pytest.raises(ConfigError, match=r"cannot read image '.*5\.png'.*data\.skip_corrupt=true"):
        for _ in range(2):  # the whole folder
            feed.next_batch()


def test_a_run_trains_from_a_streamed_folder(local_ray, folder, tmp_path):
    (folder / "063.png").write_bytes(b"damaged")  # met in the first epoch (2 global batches of 32)
    # Pixel features (identity): the reference-subset path without training a domain network for this folder.
    cfg = tiny(f"data.path={folder}", "data.skip_corrupt=true", "data.stream=true", "eval.n=64",
               "eval.reference_n=48", "eval.features=identity", "eval.metrics=fid", "data.prefetch_batches=2")
    result = distgan.train(cfg, name="streamed", storage=tmp_path)
    records = read_metrics(tmp_path / "streamed" / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6] and result.metrics["step"] == 6
    assert all(r["data_wait_s"] >= 0 for r in records)
    assert records[-1]["data_skipped"] == 1  # one bad file, counted once however often it came round
    assert records[-1]["fid"] > 0  # evaluated against the reference subset of the streamed folder

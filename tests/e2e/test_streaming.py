"""Streaming under Ray on the shared local Ray, with either engine (plain tasks, Ray Data): the decoding tasks give
back what a thread of this process gives, in order, and a bad file is named through Ray's wrapping. The streamed 2-worker training run is in
test_loopback.py, where its start-up also serves the check that nothing listens beyond loopback."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data.catalog import catalog
from distgan.data.stream import DecodeImages, ThreadStreamer
from distgan.launch.streaming import STREAMERS

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


@pytest.mark.parametrize("engine", sorted(STREAMERS))
def test_ray_decodes_in_the_order_given(local_ray, folder, engine):
    cfg = DataConfig(path=str(folder), resolution=16)
    index = np.random.default_rng(1).permutation(64)[:40]
    ray_batches = decoded(STREAMERS[engine](prefetch_batches=2, cpus_per_task=1), cfg, index, 8)
    thread_batches = decoded(ThreadStreamer(), cfg, index, 8)
    assert [len(b["index"]) for b in ray_batches] == [8] * 5
    for got, want in zip(ray_batches, thread_batches):
        assert np.array_equal(got["index"], want["index"]) and np.array_equal(got["image"], want["image"])


@pytest.mark.parametrize("engine", sorted(STREAMERS))
def test_a_bad_file_is_named_through_ray(local_ray, folder, tmp_path, engine):
    for i in range(8):
        Image.new("L", (16, 16), i).save(tmp_path / f"{i}.png")
    (tmp_path / "5.png").write_bytes(b"not a png")
    cfg = DataConfig(path=str(tmp_path), resolution=16)
    feed = data.open_feed(cfg, 4, 0, 1, 0, STREAMERS[engine](prefetch_batches=1, cpus_per_task=1))
    with pytest.raises(ConfigError, match=r"cannot read image '.*5\.png'.*data\.skip_corrupt=true"):
        for _ in range(2):  # the whole folder
            feed.next_batch()



@dataclass(frozen=True)
class MarkedDecode:
    """Decodes as ``DecodeImages`` does, and leaves a file per batch it decoded: what the driver can see of
    tasks that ran in other processes."""

    decode: DecodeImages
    marks: str

    def __call__(self, rows):
        Path(self.marks, f"{int(rows['index'][0])}").touch()
        return self.decode(rows)


def test_the_task_window_is_the_back_pressure(local_ray, folder, tmp_path):
    cfg = DataConfig(path=str(folder), resolution=16)
    transform = MarkedDecode(DecodeImages(catalog(cfg), 16, 1, False), str(tmp_path))
    batches = STREAMERS["tasks"](prefetch_batches=2, cpus_per_task=1).stream({"index": np.arange(64)}, transform, 4)
    first = next(batches)
    assert np.array_equal(first["index"], np.arange(4))

    def decoded() -> list[int]:
        return sorted(int(p.name) for p in tmp_path.iterdir())

    # The refill's task may wait for a Ray worker process to start (seconds on a loaded machine): wait for
    # it, then give any task submitted beyond the window as long again to show itself.
    deadline = time.monotonic() + 60
    while len(decoded()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    # The batch taken, and the window of 2 refilled once: 16 batches are due, 3 were ever decoded.
    assert decoded() == [0, 4, 8]
    assert [int(b["index"][0]) for b in batches] == list(range(4, 64, 4))  # and the rest, in order

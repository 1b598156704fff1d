"""Streamed image folders give exactly the batches the same folder gives from memory, resume exactly, and name
(or skip) a bad file when its turn comes; in-process, through ``ThreadStreamer`` (Ray Data: tests/launch)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data.stream import ImageStream, ThreadStreamer, chunk_batches

N_IMAGES = 30


@pytest.fixture
def folder(tmp_path):
    """30 PNGs of distinct grey levels in two class folders (lossless, so the decoded values are exact)."""
    root = tmp_path / "imgs"
    for i in range(N_IMAGES):
        sub = root / ("cats" if i % 3 else "dogs")
        sub.mkdir(parents=True, exist_ok=True)
        Image.new("L", (12 + i % 5, 10), 8 * i).save(sub / f"{i:03d}.png")
    return root


def feed(folder, stream: bool, batch: int = 3, rank: int = 0, world: int = 1, seed: int = 7, **extra):
    cfg = DataConfig(path=str(folder), resolution=8, stream=stream, **extra)
    return data.open_feed(cfg, batch, rank, world, seed, ThreadStreamer())


def take(source, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(source.next_batch() for _ in range(steps)))
    return torch.cat(xs), torch.cat(ys)


def test_streamed_batches_are_the_in_memory_batches(folder):
    steps = 25  # two and a half epochs of 10 batches: the epochs roll over with new orders
    memory = feed(folder, stream=False)
    streamed = feed(folder, stream=True)
    assert isinstance(streamed, ImageStream) and not isinstance(memory, ImageStream)
    x_mem, y_mem = take(memory, steps)
    x_str, y_str = take(streamed, steps)
    assert torch.equal(x_mem, x_str) and torch.equal(y_mem, y_str)
    assert set(y_str.tolist()) == {0, 1}  # labels from the class folders ride along


def test_two_workers_see_what_one_worker_with_twice_the_batch_sees(folder):
    one = take(feed(folder, stream=True, batch=6), 7)[0].reshape(7, 6, -1)
    ranks = [take(feed(folder, stream=True, batch=3, rank=r, world=2), 7)[0].reshape(7, 3, -1) for r in (0, 1)]
    assert torch.equal(one, torch.cat(ranks, dim=1))


def test_a_resumed_stream_continues_where_its_checkpoint_stopped(folder):
    uninterrupted = take(feed(folder, stream=True), 16)[0]
    first = feed(folder, stream=True)
    before = take(first, 6)[0]
    state = first.state_dict()  # batches decoded ahead but not consumed do not count
    resumed = feed(folder, stream=True)
    resumed.load_state_dict(state)
    after = take(resumed, 10)[0]
    assert torch.equal(torch.cat([before, after]), uninterrupted)


def test_the_order_is_a_function_of_the_seed(folder):
    a, b, c = (take(feed(folder, stream=True, seed=s), 4)[0] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_shuffle_every_epoch_keeps_the_listing_order(folder):
    for stream in (True, False):
        x, _ = take(feed(folder, stream=stream, shuffle=False), 20)  # two epochs of 10 batches
        levels = torch.round((x.mean(dim=(1, 2, 3)) + 1) * 127.5).tolist()
        listing = sorted(range(N_IMAGES), key=lambda i: ("cats" if i % 3 else "dogs", i))
        assert levels == [8.0 * i for i in listing] * 2


def test_data_seed_fixes_the_order_whatever_the_run_seed(folder):
    cfg = DataConfig(path=str(folder), resolution=8, seed=11)
    a, b = (data.open_feed(cfg, 3, 0, 1, run_seed, ThreadStreamer()).next_batch()[0] for run_seed in (1, 2))
    c = data.open_feed(DataConfig(path=str(folder), resolution=8), 3, 0, 1, 1, ThreadStreamer()).next_batch()[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_chunks_follow_each_other_without_a_seam(folder, monkeypatch):
    monkeypatch.setattr("distgan.data.stream.MIN_CHUNK_BATCHES", 2)
    assert chunk_batches(DataConfig(prefetch_batches=1)) == 4  # a new chunk every 4 batches
    streamed = feed(folder, stream=True, prefetch_batches=1)
    assert torch.equal(take(streamed, 13)[0], take(feed(folder, stream=False), 13)[0])


def test_check_only_lists_a_streamed_folder(folder):
    (folder / "cats" / "broken.png").write_bytes(b"not a png")
    data.check(DataConfig(path=str(folder), resolution=8))  # not read before the first step
    with pytest.raises(ConfigError, match=r"broken\.png"):
        data.check(DataConfig(path=str(folder), resolution=8, stream=False))


def test_a_bad_file_stops_the_stream_naming_it(folder):
    (folder / "cats" / "001.png").write_bytes(b"not a png")
    source = feed(folder, stream=True, batch=5)
    with pytest.raises(ConfigError, match=r"cannot read image '.*001\.png'.*data\.skip_corrupt=true"):
        take(source, 6)  # every file is met within the first epoch


def test_a_bad_file_is_replaced_and_counted_under_skip_corrupt(folder, caplog):
    bad = folder / "cats" / "001.png"
    bad.write_bytes(b"not a png")
    source = feed(folder, stream=True, batch=5, skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        x, _ = take(source, 12)
    assert source.skipped == {0} and "001.png" in caplog.text  # sorted listing: cats/001 is sample 0
    assert caplog.text.count("001.png") == 1  # named once, however often it comes round
    # Its place is taken by the next file of the listing (cats/002.png, grey 16), the same every epoch.
    levels = torch.round((x.mean(dim=(1, 2, 3)) + 1) * 127.5)
    assert 8.0 not in levels.tolist() and levels.tolist().count(16.0) == 4


def test_reference_set_is_a_seeded_subset_when_streaming(folder):
    cfg = DataConfig(path=str(folder), resolution=8)
    x, labels, kind = data.reference_set(cfg, 12, seed=3, streamer=ThreadStreamer())
    again, _, _ = data.reference_set(cfg, 12, seed=3, streamer=ThreadStreamer())
    assert x.shape == (12, 1, 8, 8) and kind == "image" and labels is not None and torch.equal(x, again)
    whole, _, _ = data.reference_set(cfg, 1000, seed=3, streamer=ThreadStreamer())
    assert len(whole) == N_IMAGES


def test_data_stream_true_needs_a_folder():
    with pytest.raises(ConfigError, match="data.stream: true streams an image folder"):
        data.streams(DataConfig(name="digits", stream=True))
    assert not data.streams(DataConfig(name="digits"))


def test_thread_streamer_keeps_order_and_raises_where_the_consumer_waits():
    rows = {"index": np.arange(10)}
    out = list(ThreadStreamer(prefetch=2).stream(rows, lambda b: {"index": b["index"] * 2}, 3))
    assert [b["index"].tolist() for b in out] == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]

    def fail(batch):
        if batch["index"][0] >= 6:
            raise ValueError("decode failed")
        return batch

    seen = []
    with pytest.raises(ValueError, match="decode failed"):
        for b in ThreadStreamer().stream(rows, fail, 3):
            seen.append(b)
    assert len(seen) == 2


def test_a_bad_streamed_file_is_named_by_its_path_not_by_a_buffer(folder):
    bad = (folder / "cats" / "001.png").resolve()
    bad.write_bytes(b"not a png")
    with pytest.raises(ConfigError) as err:
        take(feed(folder, stream=True, batch=5), 6)
    assert "BytesIO" not in str(err.value)
    assert f"cannot identify image file {str(bad)!r}" in str(err.value)

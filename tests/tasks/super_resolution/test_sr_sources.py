"""Super-resolution streams from every place a data set can live, through its catalog: a local folder, a shard set
and a folder in an S3 bucket give the batches of the local folder held in memory, paired LR/HR folders too; what
the in-memory path screens before the first step is found while streaming, named or skipped; each location is
listed once per process."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distgan.config import ConfigError, DataConfig, DegradationConfig
from distgan.data import catalog, shards
from distgan.data.stream import ThreadStreamer
from distgan.tasks.super_resolution import sources
from distgan.tasks.super_resolution.batches import SRBatches
from distgan.tasks.super_resolution.data import check_sr, load_sr
from distgan.tasks.super_resolution.stream import SRCrops, SRStream
from buckets import upload

SCALE, SEED, STEPS = 2, 7, 6
DEGRADED = DegradationConfig(blur_sigma=(0.2, 1.0), noise_sigma=(0.0, 5.0), jpeg_quality=(60, 95))


def rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sr_sources") / "hr"
    for i in range(8):
        save(root / f"img{i}.png", rgb(20 + 2 * i, 24, seed=i))
    return root


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sr_sources") / "val"
    for i in range(2):
        save(root / f"v{i}.png", rgb(18, 22, seed=50 + i))
    return root


def paired_folders(root: Path, n: int = 6) -> tuple[Path, Path]:
    """HR = its LR with every pixel repeated twice each way; one HR is a JPEG (pairs match without extension)."""
    for i in range(n):
        lr = rgb(10 + i, 12, seed=20 + i)
        save(root / "lr" / "sub" / f"p{i}.png", lr)
        hr = root / "hr" / "sub" / f"p{i}.{'jpg' if i == 0 else 'png'}"
        save(hr, lr.repeat(SCALE, 0).repeat(SCALE, 1))
    return root / "hr", root / "lr"


def config(path, **values) -> DataConfig:
    return DataConfig(**{"path": str(path), "resolution": 8, "channels": 3, "val_crop": 0, "val_fraction": 0.25,
                         "degradation": DEGRADED, **values})


def streamed(cfg: DataConfig, batch: int = 4, rank: int = 0, world: int = 1) -> SRStream:
    sr = load_sr(cfg, SCALE, stream=True)
    assert sr.train_hr == [] and sr.train_images is not None  # listed, none decoded
    # Pickled as Ray Data ships it to its tasks: names and numbers only, the store's client made where it runs.
    crops = pickle.loads(pickle.dumps(SRCrops(sr.train_images, cfg, SCALE, SEED)))
    return SRStream(crops, batch, rank, world, ThreadStreamer())


def in_memory(cfg: DataConfig, batch: int = 4) -> SRBatches:
    return SRBatches(load_sr(cfg, SCALE), cfg, SCALE, batch, 0, 1, SEED)


def take(source, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    lrs, hrs, _ = zip(*(source.next_batch() for _ in range(steps)))
    return torch.cat(lrs), torch.cat(hrs)


def same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def same_validation(cfg: DataConfig, other: DataConfig) -> bool:
    a, b = load_sr(cfg, SCALE, stream=True), load_sr(other, SCALE, stream=True)
    return (a.val_names == b.val_names and len(a.val_hr) == len(b.val_hr)
            and all(torch.equal(x, y) for x, y in zip(a.val_hr + a.val_lr, b.val_hr + b.val_lr)))


# -- the same batches from every source -------------------------------------------------------------------


def test_streamed_paired_folders_give_the_in_memory_batches_for_any_split_and_after_a_resume(tmp_path):
    hr, lr = paired_folders(tmp_path)
    cfg = config(hr, lr_path=str(lr), degradation=DegradationConfig())
    check_sr(cfg, SCALE)
    memory = take(in_memory(cfg))
    assert same(take(streamed(cfg)), memory)
    halves = [take(streamed(cfg, batch=2, rank=r, world=2)) for r in (0, 1)]
    assert torch.equal(torch.cat([h[0].reshape(STEPS, 2, -1) for h in halves], dim=1),
                       memory[0].reshape(STEPS, 4, -1))
    first = streamed(cfg)
    take(first, 2)
    resumed = streamed(cfg)
    resumed.load_state_dict(first.state_dict())
    assert same(take(resumed, STEPS - 2), (memory[0][8:], memory[1][8:]))
    # Validation decoded through the catalog: the in-memory path's pairs, names and all.
    a, b = load_sr(cfg, SCALE), load_sr(cfg, SCALE, stream=True)
    assert a.val_names == b.val_names and len(b.val_names) == 2 and b.val_names[0].startswith("sub/p")
    assert all(torch.equal(x, y) for x, y in zip(a.val_hr + a.val_lr, b.val_hr + b.val_lr))


def test_a_shard_set_gives_the_batches_of_its_folder(hr_folder, val_folder, tmp_path):
    shards.pack(hr_folder, tmp_path / "packed", samples_per_shard=3)
    local = config(hr_folder, val_path=str(val_folder))
    packed = dataclasses.replace(local, path=str(tmp_path / "packed"))
    check_sr(packed, SCALE)
    expected = take(in_memory(local))
    assert same(take(streamed(local)), expected) and same(take(streamed(packed)), expected)
    assert same_validation(local, packed)
    # Validating on a held-out fraction of a shard set: chosen by member name (its files' names are not kept).
    held_out = load_sr(dataclasses.replace(packed, val_path=None), SCALE, stream=True)
    assert len(held_out.val_names) == 2 and all(n.endswith(".png") and n[:6].isdigit() for n in held_out.val_names)


def test_a_bucket_gives_the_batches_of_the_local_folder(hr_folder, val_folder, tmp_path, s3_server):
    local = config(hr_folder)
    uri = config(upload(hr_folder, s3_server, "sr-hr"))
    check_sr(uri, SCALE)
    expected = take(in_memory(local))
    assert same(take(streamed(uri)), expected)
    assert same_validation(local, uri)  # the same images held out: chosen by the same relative names
    # A shard set in the bucket, validated on a shard set in the bucket.
    shards.pack(hr_folder, tmp_path / "packed", samples_per_shard=5)
    shards.pack(val_folder, tmp_path / "packed_val", samples_per_shard=5)
    local_val = config(hr_folder, val_path=str(val_folder))
    in_bucket = config(upload(tmp_path / "packed", s3_server, "sr-shards"),
                       val_path=upload(tmp_path / "packed_val", s3_server, "sr-shards-val"))
    check_sr(in_bucket, SCALE)
    assert same(take(streamed(in_bucket)), take(in_memory(local_val)))
    assert [x.shape for x in load_sr(in_bucket, SCALE, stream=True).val_hr] == [(3, 18, 22)] * 2


def test_paired_folders_in_a_bucket_give_the_local_batches(tmp_path, s3_server):
    hr, lr = paired_folders(tmp_path)
    local = config(hr, lr_path=str(lr))
    remote = dataclasses.replace(local, path=upload(hr, s3_server, "sr-pairs-hr"),
                                 lr_path=upload(lr, s3_server, "sr-pairs-lr"))
    check_sr(remote, SCALE)
    assert same(take(streamed(remote)), take(in_memory(local)))
    assert same_validation(local, remote)


# -- bad input, found while streaming ----------------------------------------------------------------------


def test_a_pair_whose_sizes_do_not_match_is_named_while_streaming_or_skipped(tmp_path, caplog):
    hr, lr = paired_folders(tmp_path)
    cfg = config(hr, lr_path=str(lr))
    trained = Path(load_sr(cfg, SCALE, stream=True).train_images.describe(1))
    bad_lr = lr / trained.relative_to(hr.resolve()).with_suffix(".png")
    save(bad_lr, rgb(7, 12, seed=99))  # HR is twice 10+i rows, not 14
    check_sr(cfg, SCALE)  # a training image: not read before the first step
    with pytest.raises(ConfigError, match=rf"data.lr_path: sizes do not match for '.*{bad_lr.name}': it is 12x7, "
                                          rf"its high-resolution image '.*{trained.name}' is .*found while streaming"):
        take(streamed(cfg))
    with caplog.at_level(logging.WARNING):
        source = streamed(dataclasses.replace(cfg, skip_corrupt=True))
        take(source)
    assert source.skipped == {1} and trained.name in caplog.text
    # Held in memory, the same pair is named before the first step, as before.
    with pytest.raises(ConfigError, match="data.lr_path: sizes do not match"):
        check_sr(dataclasses.replace(cfg, stream=False), SCALE)


def test_an_image_smaller_than_the_crop_is_named_while_streaming_or_skipped(hr_folder, val_folder, tmp_path, caplog):
    folder = tmp_path / "hr"
    shutil.copytree(hr_folder, folder)
    small = save(folder / "a_small.png", rgb(6, 30, seed=3))  # first in the listing: training image 0
    cfg = config(folder, val_path=str(val_folder))
    check_sr(cfg, SCALE)
    with pytest.raises(ConfigError, match=r"data.path .*: image '.*a_small.png' is 30x6, smaller than the 8x8 "
                                          r"training crop \(data.resolution=8\).*data.skip_corrupt=true skips"):
        take(streamed(cfg))
    with caplog.at_level(logging.WARNING):
        source = streamed(dataclasses.replace(cfg, skip_corrupt=True))
        lr, hr = take(source)
    assert source.skipped == {0} and small.name in caplog.text and hr.shape == (4 * STEPS, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"a_small.png' is 30x6, smaller than the 8x8"):
        check_sr(dataclasses.replace(cfg, stream=False), SCALE)  # in memory: before the first step


def test_an_unreadable_validation_image_is_named_before_the_first_step(hr_folder, tmp_path):
    val = tmp_path / "val"
    save(val / "ok.png", rgb(18, 22, seed=1))
    (val / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cfg = config(hr_folder, val_path=str(val))
    with pytest.raises(ConfigError, match=r"data.val_path .*: cannot read image '.*broken.png'"):
        check_sr(cfg, SCALE)
    lenient = dataclasses.replace(cfg, skip_corrupt=True)
    check_sr(lenient, SCALE)
    sr = load_sr(lenient, SCALE, stream=True)
    assert sr.val_names == ["ok.png"] and sr.skipped == 1


def test_what_cannot_stream_or_pair_is_refused(hr_folder, tmp_path):
    shards.pack(hr_folder, tmp_path / "packed", samples_per_shard=4)
    hr, lr = paired_folders(tmp_path / "pairs")
    with pytest.raises(ConfigError, match=r"data.lr_path: data.path '.*packed' is a shard set, whose samples are "
                                          r"named by number \(000000.png\)"):
        check_sr(config(tmp_path / "packed", lr_path=str(lr)), SCALE)
    with pytest.raises(ConfigError, match=r"data.lr_path: data.lr_path '.*packed' is a shard set"):
        check_sr(config(hr, lr_path=str(tmp_path / "packed")), SCALE)
    for cfg, key in ((config(tmp_path / "packed", stream=False), "data.path"),
                     (config(hr_folder, val_path="s3://bucket/val", stream=False), "data.val_path")):
        with pytest.raises(ConfigError, match=rf"{key} .*: a URI or a shard set is read while streaming; "
                                              rf"data.stream=false holds local folders in memory"):
            check_sr(cfg, SCALE)


# -- one listing per process -------------------------------------------------------------------------------


def test_each_location_in_a_bucket_is_listed_once_per_process(tmp_path, monkeypatch, s3_server):
    hr, lr = paired_folders(tmp_path)
    hr, lr = upload(hr, s3_server, "sr-once-hr"), upload(lr, s3_server, "sr-once-lr")
    listed: list[str] = []
    real, real_pair = catalog._list, sources.pair

    def counting(location: str, key: str):
        listed.append(key)
        return real(location, key)

    monkeypatch.setattr(catalog, "_list", counting)
    paired = []
    monkeypatch.setattr(sources, "pair", lambda hr, lr: paired.append(hr) or real_pair(hr, lr))
    cfg = config(hr, lr_path=str(lr))
    for _ in range(2):  # the driver's check, then the worker's
        check_sr(cfg, SCALE)
    take(streamed(cfg), 1)
    load_sr(cfg, SCALE, stream=True)  # as `distgan evaluate` does
    assert sorted(listed) == ["data.lr_path", "data.path"]
    assert len(paired) == 1  # and the pairs and the split are worked out once from them

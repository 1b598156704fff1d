"""Data sources (built-in sets, image folders) and the sharded batch sampler, on tiny inputs."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan.data import ShardedBatches
from distgan.data.builtin import ring8_modes


def config(**values) -> DataConfig:
    """Image folders held in memory: these tests are of loading and checking them whole (streaming: test_stream)."""
    return DataConfig(**{"stream": False, **values})


# -- built-in sets ---------------------------------------------------------


@pytest.mark.parametrize("resolution", [8, 32])
def test_digits(resolution):
    cfg = DataConfig(name="digits", resolution=resolution)
    ds = data.load_dataset(cfg)
    assert data.data_shape(cfg) == (1, resolution, resolution)
    assert ds.x.shape == (1797, 1, resolution, resolution) and ds.x.dtype == torch.float32
    assert ds.x.min() == -1.0 and ds.x.max() == 1.0  # 8x8 digits use both ends of the 0..16 scale
    assert ds.kind == "image" and ds.name == "digits" and len(ds) == 1797
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == set(range(10))


def test_digits_and_photos_are_scikit_learn_s_own_read_without_importing_it():
    # Read from the files scikit-learn ships (importing it costs every worker 2.5-3.5 s at every start).
    import subprocess
    import sys

    import numpy as np
    import sklearn.datasets

    from distgan.data.packaged import sklearn_digits, sklearn_photo

    images, labels = sklearn_digits()
    reference = sklearn.datasets.load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    photos = sklearn.datasets.load_sample_images()
    for name in ("china", "flower"):
        (index,) = [i for i, f in enumerate(photos.filenames) if f.endswith(f"{name}.jpg")]
        assert np.array_equal(sklearn_photo(name), photos.images[index]), name
    check = ("import sys; from distgan.config import DataConfig; from distgan.data.builtin import load_digits; "
             "load_digits(DataConfig(name='digits', resolution=16)); "
             "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_a_missing_package_file_is_named():
    from distgan.data.packaged import package_file

    with pytest.raises(ConfigError, match=r"digits.tsv is missing from the installed sklearn; reinstall it"):
        package_file("sklearn", "datasets", "data", "digits.tsv")
    with pytest.raises(ConfigError, match=r"ships inside no_such_package, which is not installed"):
        package_file("no_such_package", "x")


def test_digits_refuse_other_resolutions():
    data.check(config(name="digits", resolution=64))
    with pytest.raises(ConfigError, match=r"data.resolution: digits is available at 8, 16, 32, 64 px, got 24"):
        data.check(config(name="digits", resolution=24))


def test_ring8_lies_on_its_modes():
    modes = ring8_modes()
    assert modes.shape == (8, 2)
    assert torch.allclose(modes.norm(dim=1), torch.full((8,), 2.0))
    assert torch.allclose(modes[0], torch.tensor([2.0, 0.0])) and torch.allclose(modes[2], torch.tensor([0.0, 2.0]),
                                                                                  atol=1e-6)
    cfg = DataConfig(name="ring8", num_samples=4000)
    ds = data.load_dataset(cfg)
    assert data.data_shape(cfg) == (2,) and ds.x.shape == (4000, 2) and ds.kind == "points"
    # Each point sits within 6 std (0.02) of its own mode, and every mode is used about equally.
    assert (ds.x - modes[ds.labels]).norm(dim=1).max() < 0.12
    counts = torch.bincount(ds.labels, minlength=8)
    assert counts.min() > 400 and counts.max() < 600


def test_ring8_is_the_same_everywhere():
    torch.manual_seed(123)  # the global seed differs per rank in training; the data must not
    a = data.load_dataset(DataConfig(name="ring8", num_samples=100)).x
    torch.manual_seed(456)
    b = data.load_dataset(DataConfig(name="ring8", num_samples=100)).x
    assert torch.equal(a, b)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"data.name: unknown data set 'digit'.*did you mean 'digits'"):
        data.check(config(name="digit"))
    with pytest.raises(ConfigError, match=r"data.name: unknown data set 'mnist'; choose one of digits, photos, ring8"):
        data.data_shape(DataConfig(name="mnist"))


# -- image folders ---------------------------------------------------------


@pytest.fixture
def images(tmp_path):
    """Three images of different sizes, modes and formats, one in a subfolder with an upper-case suffix."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "wide.png")
    Image.new("L", (12, 30), 0).save(root / "tall.jpg")
    Image.new("RGBA", (64, 64), (0, 0, 255, 255)).save(root / "sub" / "big.PNG")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_loads_any_size(images, channels):
    cfg = config(path=str(images), resolution=16, channels=channels, name="ring8")  # path wins over name
    data.check(cfg)
    ds = data.load_dataset(cfg)
    assert data.data_shape(cfg) == (channels, 16, 16)
    assert ds.x.shape == (3, channels, 16, 16) and ds.x.dtype == torch.float32
    assert ds.x.min() >= -1.0 and ds.x.max() <= 1.0
    assert ds.kind == "image" and ds.labels is None and ds.skipped == 0 and ds.name == "imgs"
    # Sorted paths: sub/big.PNG (blue), tall.jpg (black), wide.png (red).
    big, tall, wide = ds.x.mean(dim=(2, 3))
    assert torch.allclose(tall, torch.full((channels,), -1.0), atol=0.02)
    if channels == 3:
        assert torch.allclose(wide, torch.tensor([1.0, -1.0, -1.0]), atol=0.02)
        assert torch.allclose(big, torch.tensor([-1.0, -1.0, 1.0]), atol=0.02)
    else:
        assert -1.0 < big.item() < wide.item() < 1.0  # luma of blue < luma of red


def test_folder_centre_crops(tmp_path):
    # A wide image, white in the middle third and black on both sides: the crop keeps only the middle.
    img = Image.new("L", (90, 30), 0)
    img.paste(255, (30, 0, 60, 30))
    img.save(tmp_path / "a.png")
    x = data.load_dataset(config(path=str(tmp_path), resolution=8)).x
    assert x[0, 0, :, 2:6].min() > 0.9


def test_empty_folder(tmp_path):
    (tmp_path / "readme.md").write_text("nothing here")
    with pytest.raises(ConfigError, match=r"data.path '.*': no PNG/JPEG images found"):
        data.check(config(path=str(tmp_path)))


def test_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=rf"data.path '{missing}' does not exist"):
        data.check(config(path=str(missing)))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a directory"):
        data.check(config(path=str(tmp_path / "file.png")))


def test_corrupt_image_is_named(images):
    (images / "x.png").write_bytes(b"definitely not a png" * 10)
    with pytest.raises(ConfigError, match=r"cannot read image '.*x\.png'.*data.skip_corrupt=true"):
        data.check(config(path=str(images)))
    with pytest.raises(ConfigError, match=r"x\.png"):
        data.load_dataset(config(path=str(images)))


def test_corrupt_image_is_skipped_and_counted(images, caplog):
    (images / "x.png").write_bytes(b"definitely not a png" * 10)
    cfg = config(path=str(images), resolution=8, skip_corrupt=True)
    data.check(cfg)
    with caplog.at_level(logging.WARNING):
        ds = data.load_dataset(cfg)
    assert ds.skipped == 1 and ds.x.shape == (3, 1, 8, 8)
    assert "skipped 1 unreadable image" in caplog.text


def test_a_file_broken_after_a_passing_check_is_caught(images):
    cfg = config(path=str(images))
    data.check(cfg)  # caches the verdicts; a later change of the file must not be hidden by them
    (images / "wide.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"wide\.png"):
        data.check(cfg)


def test_truncated_image_fails_at_load(tmp_path):
    # verify() passes a truncated JPEG (it only reads headers); decoding it must still be caught.
    Image.effect_noise((64, 64), 50).convert("L").save(tmp_path / "a.jpg", quality=90)
    Image.new("L", (8, 8)).save(tmp_path / "b.png")
    raw = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ConfigError, match=r"a\.jpg"):
        data.load_dataset(config(path=str(tmp_path), resolution=8))
    assert data.load_dataset(config(path=str(tmp_path), resolution=8, skip_corrupt=True)).skipped == 1


def test_all_corrupt_is_an_error_even_when_skipping(tmp_path):
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="none of the 1 images can be read"):
        data.check(config(path=str(tmp_path), skip_corrupt=True))


# -- sharded batches -------------------------------------------------------


def epoch_of(world: int, num_items: int = 50, batch: int = 4, seed: int = 0) -> list[list[torch.Tensor]]:
    """Per step, the index batches of all ranks."""
    samplers = [ShardedBatches(num_items, batch, rank, world, seed) for rank in range(world)]
    return [[s.next_indices() for s in samplers] for _ in range(samplers[0].batches_per_epoch)]


def test_ranks_are_disjoint_and_cover_the_epoch_once():
    steps = epoch_of(world=3)  # 50 items, global batch 12 -> 4 steps, 48 items, 2 dropped
    assert len(steps) == 4
    for ranks in steps:
        assert all(len(b) == 4 and b.dtype == torch.int64 for b in ranks)
        assert len(set(torch.cat(ranks).tolist())) == 12
    seen = torch.cat([torch.cat(ranks) for ranks in steps]).tolist()
    assert len(seen) == len(set(seen)) == 48 and set(seen) <= set(range(50))


def test_epochs_roll_over_with_a_new_order():
    s = ShardedBatches(8, 2, 0, 2, seed=0)
    assert s.batches_per_epoch == 2
    first = [s.next_indices() for _ in range(2)]
    assert s.state_dict() == {"epoch": 0, "batch": 2, "global_batch": 4}
    second = [s.next_indices() for _ in range(2)]
    assert s.state_dict() == {"epoch": 1, "batch": 2, "global_batch": 4}
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_seed_changes_the_order():
    a, b = ShardedBatches(100, 10, 0, 1, seed=0), ShardedBatches(100, 10, 0, 1, seed=1)
    assert not torch.equal(a.next_indices(), b.next_indices())


def test_state_dict_resumes_exactly():
    s = ShardedBatches(30, 4, 1, 2, seed=7)
    for _ in range(5):  # into the second epoch (3 batches per epoch)
        s.next_indices()
    state = s.state_dict()
    expected = [s.next_indices() for _ in range(7)]
    resumed = ShardedBatches(30, 4, 1, 2, seed=7)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [resumed.next_indices() for _ in range(7)]))


@pytest.mark.parametrize("saved_world, saved_batch, world, batch", [(2, 4, 1, 4), (1, 4, 3, 2), (2, 3, 2, 5)])
def test_state_from_another_worker_count_goes_on_with_the_epoch(saved_world, saved_batch, world, batch):
    """A resharded resume: the epoch continues after the items already consumed, none of them seen twice."""
    saved = [ShardedBatches(60, saved_batch, r, saved_world, seed=3) for r in range(saved_world)]
    seen = [i for _ in range(3) for s in saved for i in s.next_indices().tolist()]
    resumed = [ShardedBatches(60, batch, r, world, seed=3) for r in range(world)]
    for s in resumed:
        s.load_state_dict(saved[0].state_dict())
    rest = [i for _ in range(resumed[0].batches_per_epoch - resumed[0].batch) for s in resumed
            for i in s.next_indices().tolist()]
    assert resumed[0].epoch == 0 and len(set(seen + rest)) == len(seen) + len(rest)
    skipped = 60 - len(seen) - len(rest)  # the rounding up to a whole global batch, and the epoch's tail
    assert skipped < 2 * batch * world


def test_state_from_another_layout_is_refused():
    with pytest.raises(ValueError, match="different train.batch_size"):
        ShardedBatches(30, 4, 0, 2, seed=0).load_state_dict({"epoch": 0, "batch": 9})


def test_too_small_a_data_set():
    with pytest.raises(ValueError, match=r"10 items, fewer than one global batch of 16 .*train.batch_size of at most 5"):
        ShardedBatches(10, 8, 0, 2, seed=0)

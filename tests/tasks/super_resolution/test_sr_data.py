"""Super-resolution data: the photos set, HR folders, paired folders, bad inputs, and the crop sampler."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distgan import data
from distgan.config import ConfigError, DataConfig, DegradationConfig
from distgan.data.degradations import from_uint8, quantize
from distgan.data.resize import imresize
from distgan.data import photos as photo_set
from distgan.tasks.super_resolution.data import SRData, check_sr, load_sr, read_image
from distgan.tasks.super_resolution.batches import SRBatches


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def hr_folder(root: Path, n: int = 4, h: int = 40, w: int = 48) -> Path:
    for i in range(n):
        save(root / f"img{i}.png", rgb(h, w, seed=i))
    return root


def folder_cfg(path: Path, **values) -> DataConfig:
    """Held in memory: every header is checked before Ray starts (what streaming finds later:
    test_sr_sources.py)."""
    return DataConfig(**{"path": str(path), "resolution": 16, "channels": 3, "val_crop": 0, "stream": False,
                         **values})


def both(cfg: DataConfig, scale: int = 4) -> SRData:
    """check_sr, then load_sr: the check must pass whenever the load does."""
    check_sr(cfg, scale)
    return load_sr(cfg, scale)


# -- the built-in photos ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos() -> SRData:
    return load_sr(DataConfig(name="photos", resolution=128, channels=3, val_crop=256), 4)


def test_photos(photos):
    assert photos.name == "photos" and photos.train_lr is None and photos.skipped == 0
    assert len(photos.train_hr) == 13 and photos.val_names == ["coffee", "rocket", "flower"]
    assert all(x.dtype == torch.uint8 and x.shape[0] == 3 for x in photos.train_hr)
    assert min(min(x.shape[-2:]) for x in photos.train_hr) == photo_set.MIN_SIDE
    assert not set(photo_set.TRAINING) & set(photo_set.VALIDATION)  # validation photos are never trained on
    assert [tuple(x.shape) for x in photos.val_hr] == [(3, 256, 256)] * 3
    assert [tuple(x.shape) for x in photos.val_lr] == [(3, 64, 64)] * 3
    for hr, lr in zip(photos.val_hr, photos.val_lr):
        assert hr.dtype == lr.dtype == torch.float32 and hr.min() >= -1 and hr.max() <= 1
        assert torch.equal(lr, quantize(imresize(hr, 0.25)))  # no degradation configured: bicubic only
    # The grey photos are R = G = B; the colour ones are not.
    camera = photos.train_hr[6]
    assert torch.equal(camera[0], camera[1]) and torch.equal(camera[1], camera[2])
    assert not torch.equal(photos.train_hr[0][0], photos.train_hr[0][1])


def test_photos_registry_entry_and_checks():
    cfg = DataConfig(name="photos", resolution=96, channels=3)
    assert data.data_shape(cfg) == (3, 96, 96)
    data.DATASETS.get("photos").check(cfg)
    with pytest.raises(ConfigError, match="photos is a super-resolution data set"):
        data.load_dataset(cfg)
    with pytest.raises(ConfigError, match=r"data.resolution: .* at most 300, got 320"):
        check_sr(DataConfig(name="photos", resolution=320), 4)
    with pytest.raises(ConfigError, match=r"data.resolution: .* multiple of model.scale=4, got 30; use 28"):
        check_sr(DataConfig(name="photos", resolution=30), 4)
    with pytest.raises(ConfigError, match=r"data.val_path: applies to image folders .*coffee, rocket, flower"):
        check_sr(DataConfig(name="photos", resolution=32, val_path="/tmp"), 4)
    with pytest.raises(ConfigError, match=r"data.name: 'digits' is not a super-resolution data set"):
        check_sr(DataConfig(name="digits", resolution=32), 4)


def test_photos_in_grey():
    grey = load_sr(DataConfig(name="photos", resolution=64, channels=1, val_crop=64), 2)
    assert all(x.shape[0] == 1 for x in grey.train_hr + grey.val_hr + grey.val_lr)


# -- HR folders ------------------------------------------------------------------------------------------


def test_hr_folder_holds_out_a_fraction(tmp_path):
    hr_folder(tmp_path / "hr", n=10)
    sr = both(folder_cfg(tmp_path / "hr", val_fraction=0.2))
    assert sr.name == "hr" and len(sr.train_hr) == 8 and len(sr.val_hr) == 2 and sr.train_lr is None
    assert all(n.startswith("img") and n.endswith(".png") for n in sr.val_names)
    again = load_sr(folder_cfg(tmp_path / "hr", val_fraction=0.2), 4)
    assert again.val_names == sr.val_names and all(torch.equal(a, b) for a, b in zip(again.val_lr, sr.val_lr))
    # Adding a file keeps the choice among the old ones (ranked by a hash of the name, not shuffled): the
    # new one can displace at most one of the two held out.
    save(tmp_path / "hr" / "zz_new.png", rgb(40, 48, seed=99))
    grown = load_sr(folder_cfg(tmp_path / "hr", val_fraction=0.2), 4)
    assert len(grown.val_names) == 2 and len(set(sr.val_names) & set(grown.val_names)) >= 1


def test_val_path_and_val_crop(tmp_path):
    hr_folder(tmp_path / "hr", n=2)
    save(tmp_path / "val" / "sub" / "v.png", rgb(37, 50, seed=5))
    deg = DegradationConfig(noise_sigma=(5.0, 5.0))
    sr = both(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "val"), degradation=deg))
    assert len(sr.train_hr) == 2 and sr.val_names == ["sub/v.png"]
    assert sr.val_hr[0].shape == (3, 36, 48) and sr.val_lr[0].shape == (3, 9, 12)  # cut to multiples of 4
    cropped = load_sr(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "val"), val_crop=30, degradation=deg), 4)
    assert cropped.val_hr[0].shape == (3, 28, 28)
    # The centred crop: rows 4.., columns 8.. (offsets on the 4-pixel grid).
    whole = from_uint8(torch.from_numpy(rgb(37, 50, seed=5)).permute(2, 0, 1))
    assert torch.equal(cropped.val_hr[0], whole[:, 4:32, 8:36])
    # Validation LR is degraded once with a fixed seed, whatever train.seed: the same on every load.
    assert torch.equal(load_sr(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "val"), degradation=deg),
                               4).val_lr[0], sr.val_lr[0])


def test_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"data.path .*empty.*: no PNG/JPEG images found"):
        check_sr(folder_cfg(tmp_path / "empty"), 4)
    hr_folder(tmp_path / "hr", n=2)
    with pytest.raises(ConfigError, match=r"data.lr_path .*empty.*: no PNG/JPEG images found"):
        check_sr(folder_cfg(tmp_path / "hr", lr_path=str(tmp_path / "empty")), 4)
    with pytest.raises(ConfigError, match=r"data.val_path .*nowhere.* does not exist"):
        check_sr(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "nowhere")), 4)


def test_corrupt_png_is_named_or_skipped(tmp_path):
    hr_folder(tmp_path / "hr", n=4)
    (tmp_path / "hr" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ConfigError, match=r"data.path .*: cannot read image .*bad.png.*data.skip_corrupt=true"):
        check_sr(folder_cfg(tmp_path / "hr"), 4)
    sr = both(folder_cfg(tmp_path / "hr", skip_corrupt=True))
    assert sr.skipped == 1 and len(sr.train_hr) + len(sr.val_hr) == 4


def test_truncated_jpeg_is_named_before_ray_starts_or_skipped(tmp_path):
    hr_folder(tmp_path / "hr", n=3)
    good = save(tmp_path / "hr" / "cut.jpg", rgb(40, 48, seed=9), quality=90).read_bytes()
    (tmp_path / "hr" / "cut.jpg").write_bytes(good[: len(good) // 2])
    # Its header is intact; the check finds no end-of-image marker and decodes it, as for generation folders.
    with pytest.raises(ConfigError, match=r"data.path .*: cannot read image .*cut.jpg.*truncated"):
        check_sr(folder_cfg(tmp_path / "hr"), 4)
    sr = load_sr(folder_cfg(tmp_path / "hr", skip_corrupt=True), 4)
    assert sr.skipped == 1 and len(sr.train_hr) + len(sr.val_hr) == 3


def test_image_smaller_than_the_crop(tmp_path):
    hr_folder(tmp_path / "hr", n=3)
    save(tmp_path / "hr" / "a_small.png", rgb(12, 30))
    for skip in (False, True):  # not a corrupt file: skipping it would hide a config mistake
        with pytest.raises(ConfigError, match=r"data.path .*: image .*a_small.png' is 30x12, smaller than the "
                                              r"16x16 training crop \(data.resolution=16\); lower data.resolution"):
            check_sr(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "hr"), skip_corrupt=skip), 4)


def test_val_fraction_leaving_nothing_to_train_on(tmp_path):
    hr_folder(tmp_path / "hr", n=1)
    with pytest.raises(ConfigError, match=r"data.val_fraction: holding out 1 of the 1 readable images .* leaves "
                                          r"none to train on"):
        check_sr(folder_cfg(tmp_path / "hr"), 4)
    hr_folder(tmp_path / "hr2", n=4)
    with pytest.raises(ConfigError, match=r"data.val_fraction: holding out 4 of the 4"):
        check_sr(folder_cfg(tmp_path / "hr2", val_fraction=0.9), 4)
    with pytest.raises(ConfigError, match=r"data.val_fraction: must be in \(0, 1\)"):
        check_sr(folder_cfg(tmp_path / "hr2", val_fraction=0.0), 4)


def test_settings_are_checked(tmp_path):
    hr_folder(tmp_path / "hr", n=2)
    bad = {"degradation": DegradationConfig(jpeg_quality=(0, 50))}
    with pytest.raises(ConfigError, match=r"data.degradation.jpeg_quality: expected \[min, max\] with 1 <= min"):
        check_sr(folder_cfg(tmp_path / "hr", **bad), 4)
    with pytest.raises(ConfigError, match=r"data.degradation.blur_sigma: expected \[min, max\]"):
        check_sr(folder_cfg(tmp_path / "hr", degradation=DegradationConfig(blur_sigma=(2.0, 1.0))), 4)
    with pytest.raises(ConfigError, match=r"data.val_crop: must be 0 .* at least model.scale=4, got 3"):
        check_sr(DataConfig(path=str(tmp_path / "hr"), resolution=16, val_crop=3), 4)


# -- image reading ---------------------------------------------------------------------------------------


def test_grey_rgba_16bit_cmyk_and_exif_are_converted(tmp_path):
    grey = save(tmp_path / "grey.png", np.full((4, 6), 77, np.uint8))
    assert read_image(grey, 3).shape == (3, 4, 6) and (read_image(grey, 3) == 77).all()
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:2, ..., 3], rgba[2:, ..., 3] = 255, 0  # top opaque, bottom transparent: composited on black
    img = read_image(save(tmp_path / "rgba.png", rgba), 3)
    assert img[:, :2].flatten(1).unique(dim=1).tolist() == [[200], [100], [50]] and (img[:, 2:] == 0).all()
    luma = read_image(tmp_path / "rgba.png", 1)
    assert luma.shape == (1, 4, 6) and luma[0, 0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    wide = np.array([[65535, 32896, 257, 0]] * 3, np.uint16)  # 16-bit: /257 -> 255, 128, 1, 0; not clipped
    img16 = read_image(save(tmp_path / "deep.png", wide), 3)
    assert img16[:, 0].tolist() == [[255, 128, 1, 0]] * 3
    assert from_uint8(img16).max() == 1.0
    cmyk = Image.new("CMYK", (6, 4), (0, 255, 255, 0))  # pure red in CMYK
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    red = read_image(tmp_path / "cmyk.jpg", 3).float().mean(dim=(1, 2))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    save(tmp_path / "rot" / "tall.jpg", rgb(20, 44), exif=exif)
    assert read_image(tmp_path / "rot" / "tall.jpg", 3).shape == (3, 44, 20)
    # The header-only check sees the upright size too: 20 wide is too narrow for a 32 crop.
    with pytest.raises(ConfigError, match=r"tall.jpg' is 20x44, smaller than the 32x32"):
        check_sr(DataConfig(path=str(tmp_path / "rot"), resolution=32, val_path=str(tmp_path / "rot"),
                            stream=False), 4)


# -- paired folders --------------------------------------------------------------------------------------


def blocky_pairs(root: Path, n: int = 3, scale: int = 2, lh: int = 12, lw: int = 14,
                 jpeg_first: bool = False) -> tuple[Path, Path]:
    """HR = LR with every pixel repeated scale x scale times, so the LR is exactly HR[::s, ::s]."""
    for i in range(n):
        lr = rgb(lh, lw, seed=i)
        save(root / "lr" / f"sub/p{i}.png", lr)
        jpeg = jpeg_first and i == 0  # pairs match whatever the extensions
        save(root / "hr" / f"sub/p{i}.{'jpg' if jpeg else 'png'}", lr.repeat(scale, 0).repeat(scale, 1))
    return root / "hr", root / "lr"


def test_paired_folders_load_and_validate(tmp_path):
    hr, lr = blocky_pairs(tmp_path, n=4, jpeg_first=True)
    sr = both(DataConfig(path=str(hr), lr_path=str(lr), resolution=8, channels=3, val_crop=0), 2)
    assert len(sr.train_hr) == 3 and len(sr.train_lr) == 3 and len(sr.val_hr) == 1
    assert sr.val_hr[0].shape == (3, 24, 28) and sr.val_lr[0].shape == (3, 12, 14)
    with pytest.raises(ConfigError, match=r"data.val_path: not supported with paired folders"):
        check_sr(DataConfig(path=str(hr), lr_path=str(lr), val_path=str(hr), resolution=8), 2)


@pytest.mark.parametrize("stream", [False, True])  # the listings are enough: streamed, nothing else is read
def test_unpaired_files_are_named(tmp_path, stream):
    hr, lr = blocky_pairs(tmp_path)
    save(hr / "sub" / "extra.png", rgb(24, 28))
    with pytest.raises(ConfigError, match=r"data.lr_path .*: no low-resolution image for .*extra.png'; looked for "
                                          r"sub/extra.png/.jpg/.jpeg there"):
        check_sr(DataConfig(path=str(hr), lr_path=str(lr), resolution=8, stream=stream), 2)
    (hr / "sub" / "extra.png").unlink()
    save(lr / "orphan.png", rgb(12, 14))
    with pytest.raises(ConfigError, match=r"data.path .*: no high-resolution image for .*orphan.png'"):
        check_sr(DataConfig(path=str(hr), lr_path=str(lr), resolution=8, stream=stream), 2)


def test_mismatched_pair_sizes_are_named(tmp_path):
    hr, lr = blocky_pairs(tmp_path)
    save(lr / "sub" / "p1.png", rgb(12, 13))
    with pytest.raises(ConfigError, match=r"data.lr_path: sizes do not match for .*p1.png': it is 13x12, its "
                                          r"high-resolution image .*p1.png' is 28x24; .* model.scale=2 times larger, "
                                          r"26x24"):
        check_sr(DataConfig(path=str(hr), lr_path=str(lr), resolution=8, stream=False), 2)


def test_unreadable_lr_names_its_key_or_skips_the_pair(tmp_path):
    hr, lr = blocky_pairs(tmp_path, n=4)
    (lr / "sub" / "p2.png").write_bytes(b"garbage")
    cfg = DataConfig(path=str(hr), lr_path=str(lr), resolution=8, channels=3, stream=False)
    with pytest.raises(ConfigError, match=r"data.lr_path .*: cannot read image .*p2.png'"):
        check_sr(cfg, 2)
    sr = both(dataclasses.replace(cfg, skip_corrupt=True), 2)
    assert sr.skipped == 1 and len(sr.train_hr) + len(sr.val_hr) == 3


def test_validation_image_too_small(tmp_path):
    hr_folder(tmp_path / "hr", n=2)
    save(tmp_path / "val" / "tiny.png", rgb(3, 40))
    with pytest.raises(ConfigError, match=r"data.val_path .*: validation image .*tiny.png' is 40x3, 40x0 once cut"):
        check_sr(folder_cfg(tmp_path / "hr", val_path=str(tmp_path / "val")), 4)


# -- the crop sampler ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_photos() -> tuple[SRData, DataConfig]:
    cfg = DataConfig(name="photos", resolution=32, channels=3, val_crop=32)
    return load_sr(cfg, 4), cfg


def test_batches_shapes_determinism_and_ranks(small_photos):
    sr, cfg = small_photos
    a, b = SRBatches(sr, cfg, 4, 3, 0, 2, seed=5), SRBatches(sr, cfg, 4, 3, 0, 2, seed=5)
    other_rank, other_seed = SRBatches(sr, cfg, 4, 3, 1, 2, seed=5), SRBatches(sr, cfg, 4, 3, 0, 2, seed=6)
    lr, hr, _ = a.next_batch()
    assert lr.shape == (3, 3, 8, 8) and hr.shape == (3, 3, 32, 32) and lr.dtype == hr.dtype == torch.float32
    assert hr.min() >= -1 and hr.max() <= 1 and lr.min() >= -1 and lr.max() <= 1
    assert torch.equal(b.next_batch()[1], hr)
    assert not torch.equal(other_rank.next_batch()[1], hr) and not torch.equal(other_seed.next_batch()[1], hr)
    assert not torch.equal(a.next_batch()[1], hr)  # the next batch is new crops


def test_global_batches_do_not_depend_on_the_worker_count(small_photos):
    """One worker with batch 4 sees exactly what two workers with batch 2 see together, batch after batch."""
    sr, cfg = small_photos
    one = SRBatches(sr, cfg, 4, 4, 0, 1, seed=2)
    two = [SRBatches(sr, cfg, 4, 2, r, 2, seed=2) for r in range(2)]
    for _ in range(3):
        lr, hr, _ = one.next_batch()
        halves = [b.next_batch() for b in two]
        assert torch.equal(lr, torch.cat([h[0] for h in halves])) and torch.equal(hr, torch.cat([h[1] for h in halves]))


def test_batches_resume_exactly(small_photos):
    sr, cfg = small_photos
    first = SRBatches(sr, cfg, 4, 2, 1, 2, seed=0)
    for _ in range(3):
        first.next_batch()
    state = first.state_dict()
    assert state == {"batch": 3}
    resumed = SRBatches(sr, cfg, 4, 2, 1, 2, seed=0)
    resumed.load_state_dict(state)
    for x, y in zip(first.next_batch(), resumed.next_batch()):
        assert torch.equal(x, y)


def test_batch_lr_is_imresize_of_the_hr_crop(small_photos):
    sr, cfg = small_photos
    lr, hr, _ = SRBatches(sr, cfg, 4, 8, 0, 1, seed=1).next_batch()
    assert torch.equal(lr, quantize(imresize(hr, 0.25)))  # no degradation: exactly bicubic, on the 8-bit grid


def test_paired_crops_align_under_flips_and_rotations(tmp_path):
    hr, lr = blocky_pairs(tmp_path, n=3, lh=16, lw=20)
    cfg = DataConfig(path=str(hr), lr_path=str(lr), resolution=8, channels=3, val_fraction=0.3)
    sr = load_sr(cfg, 2)
    batches = SRBatches(sr, cfg, 2, 64, 0, 1, seed=3)
    lr_b, hr_b, _ = batches.next_batch()
    # Aligned crops and the same flip/rotation on both: every HR 2x2 block equals its LR pixel.
    assert torch.equal(lr_b, hr_b[..., ::2, ::2]) and torch.equal(lr_b, hr_b[..., 1::2, 1::2])
    # Augmentations are used: some crops are transposed relative to the unflipped, unrotated ones.
    plain = SRBatches(sr, dataclasses.replace(cfg, flip=False, rot90=False), 2, 64, 0, 1, seed=3)
    assert not torch.equal(plain.next_batch()[1], hr_b)


def test_paired_crops_match_imresize_of_the_hr_crop(tmp_path):
    # LR files are the (8-bit) bicubic downsample of the HR files; away from the crop's border, where
    # imresize of a crop mirrors instead of seeing the neighbours, the LR crop is imresize of the HR crop.
    for i in range(2):
        hr_img = np.array(Image.fromarray(rgb(24, 24, seed=i)).resize((48, 48), Image.Resampling.BICUBIC))
        save(tmp_path / "hr" / f"{i}.png", hr_img)
        hr_t = from_uint8(torch.from_numpy(hr_img).permute(2, 0, 1))
        lr_t = quantize(imresize(hr_t, 0.5))
        save(tmp_path / "lr" / f"{i}.png", ((lr_t + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    cfg = DataConfig(path=str(tmp_path / "hr"), lr_path=str(tmp_path / "lr"), resolution=32, channels=3,
                     val_fraction=0.4)
    sr = load_sr(cfg, 2)
    lr_b, hr_b, _ = SRBatches(sr, cfg, 2, 6, 0, 1, seed=0).next_batch()
    inner = (..., slice(4, -4), slice(4, -4))
    assert (lr_b - imresize(hr_b, 0.5))[inner].abs().max() <= 0.5 / 127.5 + 1e-6


def test_batches_refuse_bad_arguments(small_photos):
    sr, cfg = small_photos
    with pytest.raises(ValueError, match="0 <= rank < world_size"):
        SRBatches(sr, cfg, 4, 2, 2, 2, seed=0)
    with pytest.raises(ValueError, match="not a multiple of model.scale"):
        SRBatches(sr, cfg, 3, 2, 0, 1, seed=0)

"""An image folder for generation that mixes PIL modes: every file becomes 8-bit grey or RGB by the rules of
``distgan.data.images`` (16-bit scaled, not clipped; transparency on black), as super-resolution reads them.
And a truncated JPEG, which ``Image.verify`` passes, is still named by the check that runs before Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from distgan import data
from distgan.config import ConfigError, DataConfig
from distgan import load_config

SIDE = 8


def uniform(mode: str, value) -> Image.Image:
    return Image.new(mode, (SIDE, SIDE), value)


def mixed_folder(root: Path) -> dict[str, tuple[int, int, int]]:
    """One file per mode, each a single colour; returns file name -> the RGB it must load as."""
    root.mkdir()
    expected = {}
    uniform("L", 77).save(root / "a_grey.png")
    expected["a_grey.png"] = (77, 77, 77)
    # 16-bit grey: 15420 = 60 * 257 scales to 60; PIL's convert("L") would clip it to 255.
    Image.fromarray(np.full((SIDE, SIDE), 15420, np.uint16)).save(root / "b_grey16.png")
    expected["b_grey16.png"] = (60, 60, 60)
    # 16-bit grey whose level is the transparent one (tRNS): on black, as every other transparency.
    Image.fromarray(np.full((SIDE, SIDE), 15420, np.uint16)).save(root / "b_grey16_transparent.png",
                                                                   transparency=15420)
    expected["b_grey16_transparent.png"] = (0, 0, 0)
    # Translucent colour: 20 % alpha over black.
    uniform("RGBA", (200, 100, 50, 51)).save(root / "c_rgba.png")
    expected["c_rgba.png"] = (40, 20, 10)
    uniform("RGBA", (255, 255, 255, 0)).save(root / "d_transparent.png")  # white but fully transparent
    expected["d_transparent.png"] = (0, 0, 0)
    uniform("LA", (90, 255)).save(root / "e_grey_alpha.png")
    expected["e_grey_alpha.png"] = (90, 90, 90)
    palette = Image.new("P", (SIDE, SIDE), 1)
    palette.putpalette([0, 0, 0, 10, 120, 230] + [0] * 762)
    palette.save(root / "f_palette.png")
    expected["f_palette.png"] = (10, 120, 230)
    see_through = Image.new("P", (SIDE, SIDE), 1)  # a palette whose colour 1 is the transparent one
    see_through.putpalette([0, 0, 0, 250, 250, 250] + [0] * 762)
    see_through.save(root / "g_palette_transparent.png", transparency=1)
    expected["g_palette_transparent.png"] = (0, 0, 0)
    uniform("1", 1).save(root / "h_bilevel.png")
    expected["h_bilevel.png"] = (255, 255, 255)
    uniform("RGB", (30, 60, 90)).save(root / "i_rgb.jpg", quality=100)
    expected["i_rgb.jpg"] = (30, 60, 90)
    return expected


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """The loader's [-1, 1] floats back to 0..255."""
    return np.rint((x.numpy() + 1.0) * 127.5).astype(int)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_folder_of_mixed_modes_loads_every_image_converted(tmp_path, channels):
    expected = mixed_folder(tmp_path / "mixed")
    # The Python API path and the CLI's: the folder validates as a training config, then loads.
    cfg = load_config(None, (f"data.path={tmp_path / 'mixed'}", f"data.resolution={SIDE}",
                             f"data.channels={channels}"))
    ds = data.load_dataset(cfg.data)
    assert ds.skipped == 0 and ds.x.shape == (len(expected), channels, SIDE, SIDE)
    for image, (name, rgb) in zip(as_uint8(ds.x), sorted(expected.items())):
        want = rgb if channels == 3 else (round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]),)
        # Every pixel the same (uniform images stay uniform through the crop and Lanczos resize).
        assert (image == image[:, :1, :1]).all(), name
        tolerance = 2 if name.endswith(".jpg") else 1  # JPEG's chroma rounding; alpha blending's
        assert np.abs(image[:, 0, 0] - np.array(want)).max() <= tolerance, (name, image[:, 0, 0].tolist(), want)


def test_sixteen_bit_keeps_its_full_range(tmp_path):
    """A 16-bit gradient spans 0..255 after loading, in order, where clipping would leave it almost all white."""
    (tmp_path / "deep").mkdir()
    ramp = np.tile(np.linspace(0, 65535, SIDE).round().astype(np.uint16), (SIDE, 1))
    Image.fromarray(ramp).save(tmp_path / "deep" / "ramp.png")
    x = as_uint8(data.load_dataset(DataConfig(path=str(tmp_path / "deep"), resolution=SIDE)).x)[0, 0]
    assert x[:, 0].max() <= 2 and x[:, -1].min() >= 253
    assert (np.diff(x[0]) > 0).all(), x[0].tolist()


def noisy_jpeg(path: Path) -> bytes:
    Image.effect_noise((64, 64), 50).convert("L").save(path, quality=90)
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9, "all but the end marker"])
def test_a_truncated_jpeg_is_named_by_the_check(tmp_path, keep):
    raw = noisy_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes(raw[:-2] if isinstance(keep, str) else raw[: int(len(raw) * keep)])
    Image.new("L", (8, 8)).save(tmp_path / "fine.png")
    with Image.open(tmp_path / "cut.jpg") as img:
        img.verify()  # what the check used to rely on: headers only, so it passes
    with pytest.raises(ConfigError, match=r"cannot read image '.*cut\.jpg'.*truncated.*data.skip_corrupt"):
        # Held in memory, a folder is checked in full before the run starts (streamed, when its turn comes).
        load_config(None, (f"data.path={tmp_path}", f"data.resolution={SIDE}", "data.stream=false"))
    cfg = DataConfig(path=str(tmp_path), resolution=SIDE, skip_corrupt=True, stream=False)
    assert data.load_dataset(cfg).skipped == 1


def test_data_appended_after_a_whole_jpeg_is_no_alarm(tmp_path):
    """Motion photos carry a video after the JPEG's end marker: the file is whole and loads."""
    raw = noisy_jpeg(tmp_path / "motion.jpg")
    (tmp_path / "motion.jpg").write_bytes(raw + bytes(range(256)) * 64)
    cfg = load_config(None, (f"data.path={tmp_path}", f"data.resolution={SIDE}"))
    assert data.load_dataset(cfg.data).x.shape == (1, 1, SIDE, SIDE)


def smooth_photo(side: int) -> Image.Image:
    """A smooth colour image with detail at every scale a reduced decode could drop: rings and a ramp."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    rings = 0.5 + 0.5 * np.sin(40 * np.hypot(yy - 0.4, xx - 0.6))
    rgb = np.stack([rings, xx, 1 - yy], axis=-1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def test_a_large_jpeg_is_decoded_reduced_but_not_below_twice_the_size(tmp_path):
    from distgan.data.images import REDUCING_GAP, fit_square, open_upright

    smooth_photo(512).save(tmp_path / "big.jpg", quality=95)
    smooth_photo(512).save(tmp_path / "big.png")
    # 32 px wanted: the decoder scales the DCT by 1/8 (64 = 2 * 32 on both sides), a PNG has no such path.
    assert open_upright(tmp_path / "big.jpg", at_least=REDUCING_GAP * 32).size == (64, 64)
    assert open_upright(tmp_path / "big.png", at_least=REDUCING_GAP * 32).size == (512, 512)
    # 200 px wanted: no reduction keeps 400 px, so the JPEG is decoded in full.
    assert open_upright(tmp_path / "big.jpg", at_least=REDUCING_GAP * 200).size == (512, 512)
    # Lanczos does the last reduction: within a level or two of the full decode's result, on average far less.
    reduced = fit_square(tmp_path / "big.jpg", 32, 3).astype(int)
    with Image.open(tmp_path / "big.jpg") as img:
        full = np.asarray(ImageOps.fit(img.convert("RGB"), (32, 32), method=Image.Resampling.LANCZOS))
    diff = np.abs(reduced - full.transpose(2, 0, 1).astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 6, (diff.mean(), diff.max())


def exif(*entries: tuple[int, int, bytes]) -> bytes:
    """An EXIF block (big-endian IFD0) of (tag, TIFF type, value bytes) entries, written as given: a camera
    that writes a tag with the wrong type is what this can make and PIL's writer cannot."""
    import struct

    data_at, body, ifd = 8 + 2 + 12 * len(entries) + 4, b"", b""
    for tag, kind, value in entries:
        count = len(value) if kind == 2 else len(value) // {3: 2, 5: 8}[kind]
        if len(value) <= 4:
            ifd += struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            ifd += struct.pack(">HHII", tag, kind, count, data_at + len(body))
            body += value
    return b"Exif\0\0MM\0*" + struct.pack(">IH", 8, len(entries)) + ifd + b"\0\0\0\0" + body


ROTATED = (0x0112, 3, (6).to_bytes(2, "big"))
"""Orientation 6: the stored pixels are turned 90 degrees; shown upright, the image is taller than wide."""


@pytest.mark.parametrize("bad", [(0x013E, 2, b"Canon\0"), (0x0128, 2, b"Canon\0")],
                         ids=["text-where-a-rational-belongs", "text-where-a-short-belongs"])
def test_broken_exif_metadata_still_reads_upright(tmp_path, bad):
    """PIL's ``exif_transpose`` rewrites the whole EXIF block and fails on a mistyped tag (TypeError,
    struct.error); the pixels are fine and the orientation tag readable, so the image reads upright, in
    the check, held in memory and streamed alike."""
    from distgan.data import folder, shards
    from distgan.data.images import read_image
    from distgan.data.stream import ThreadStreamer

    picture = Image.fromarray(np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (8, 1)))  # 16 wide, 8 high
    picture.convert("RGB").save(tmp_path / "clean.jpg", exif=exif(ROTATED), quality=95)
    picture.convert("RGB").save(tmp_path / "broken.jpg", exif=exif(ROTATED, bad), quality=95)
    with Image.open(tmp_path / "broken.jpg") as img, pytest.raises(Exception):
        ImageOps.exif_transpose(img)  # what used to stop training even under data.skip_corrupt

    clean, broken = read_image(tmp_path / "clean.jpg", 3), read_image(tmp_path / "broken.jpg", 3)
    assert clean.shape == (3, 16, 8) and torch.equal(broken, clean)
    assert folder.probe(tmp_path / "broken.jpg") == ("", (16, 8)) and shards.check(tmp_path).ok
    memory = DataConfig(path=str(tmp_path), resolution=SIDE, stream=False)
    data.check(memory)
    held = data.load_dataset(memory)
    assert held.skipped == 0 and torch.equal(held.x[0], held.x[1])
    streamed = data.open_feed(DataConfig(path=str(tmp_path), resolution=SIDE), 2, 0, 1, 0, ThreadStreamer())
    x, _ = streamed.next_batch()
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], held.x[0])

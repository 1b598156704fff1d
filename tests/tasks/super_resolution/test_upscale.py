"""Tiled upscaling (exactness, bounded tile inputs) and ``distgan upscale`` end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from distgan.cli import main as cli_main
from distgan.tasks.super_resolution.upscale import read_image, upscale_tensor, upscale_to_uint8

RADIUS = 3  # three 3x3 convs at low resolution


class LocalSR(nn.Module):
    """x``scale`` with a receptive-field radius of exactly ``RADIUS`` low-resolution pixels (zero-padded convs)."""

    def __init__(self, channels: int = 3, scale: int = 2, width: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _lr(h: int = 37, w: int = 29, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def model() -> LocalSR:
    torch.manual_seed(0)
    return LocalSR()


@pytest.fixture(scope="module")
def whole(model) -> torch.Tensor:
    return upscale_tensor(model, _lr(), 2)


@pytest.mark.parametrize("tile", [5, 8, 16, 30, 64])  # 64: one tile bigger than the image
@pytest.mark.parametrize("overlap", [RADIUS, RADIUS + 2])
def test_tiles_with_enough_overlap_equal_the_whole_image(model, whole, tile, overlap):
    tiled = upscale_tensor(model, _lr(), 2, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape == (1, 3, 74, 58)
    assert (tiled - whole).abs().max() <= 1e-5


def test_too_little_overlap_differs_at_the_seams_only(model, whole):
    tile, overlap = 8, 1
    tiled = upscale_tensor(model, _lr(), 2, tile=tile, overlap=overlap)
    diff = (tiled - whole).abs()[0].amax(dim=0)
    assert diff.max() > 1e-3  # an overlap below the radius is only approximate
    # An output pixel is exact when its input pixel p sees all of p - RADIUS .. p + RADIUS within its tile's
    # context, i.e. when p is at least RADIUS - overlap input pixels inside every inner tile border.
    reach = RADIUS - overlap

    def far_from_seams(size: int) -> torch.Tensor:
        p = torch.arange(size * 2) // 2  # the input pixel under each output pixel
        seams = torch.arange(tile, size, tile)
        inside = torch.where(p[:, None] >= seams[None], p[:, None] - seams[None], seams[None] - 1 - p[:, None])
        return (inside >= reach).all(dim=1)

    far = far_from_seams(37)[:, None] & far_from_seams(29)[None, :]
    assert far.any() and diff[far].max() <= 1e-5
    assert diff[~far].max() > 1e-3


def test_eval_mode_no_grad_and_training_flag_restored():
    g = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.PixelShuffle(2)).train()
    seen = []
    g.register_forward_pre_hook(lambda m, args: seen.append((m.training, torch.is_grad_enabled())))
    out = upscale_tensor(g, _lr(9, 9), 2, tile=4, overlap=2)
    assert out.shape == (1, 3, 18, 18) and not out.requires_grad
    assert seen and all(state == (False, False) for state in seen)
    assert g.training


def test_a_large_image_never_reaches_g_whole():
    """2000 x 2000 -> 8000 x 8000 with tile 256: no forward ever sees more than (256 + 2*16) per side."""
    torch.manual_seed(0)
    g = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.PixelShuffle(4))
    sides = []
    g.register_forward_pre_hook(lambda m, args: sides.append(tuple(args[0].shape[2:])))
    lr = torch.rand(1, 1, 2000, 2000, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = upscale_to_uint8(g, lr, 4, tile=256, overlap=16)
    assert out.shape == (8000, 8000, 1) and out.dtype == np.uint8
    assert len(sides) == 64 and max(max(s) for s in sides) == 256 + 2 * 16
    # Spot check against G on one whole 300 px crop: the middle of it is away from every crop border.
    with torch.no_grad():
        crop = g(lr[:, :, 500:800, 500:800])[0, :, 200:1000, 200:1000]
    expect = ((crop.clamp(-1, 1).double() + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert (np.abs(out[2200:3000, 2200:3000].astype(int) - expect.astype(int)) <= 1).all()


# --------------------------------------------------------------------------
# distgan upscale, on an exported SRResNet
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    from distgan.config import ModelConfig
    from distgan.persist.export import save_generator
    from distgan.models import build_generator

    torch.manual_seed(0)
    cfg = ModelConfig(family="srresnet", g_width=8, blocks=1, scale=2, g_norm="none")
    g = build_generator(cfg, (3, 32, 32))
    directory = tmp_path_factory.mktemp("sr") / "run"
    save_generator(directory, g.eval(), {"model": dataclasses.asdict(cfg), "data_shape": [3, 32, 32],
                                         "num_classes": 0, "task": "sr", "scale": 2})
    return directory


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _photo(h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: something an SR model would see."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 64], axis=-1)
    return (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)


def _fail(capsys, args) -> str:
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("distgan: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_upscales_a_file_tiled_like_whole(generator_dir, tmp_path, capsys):
    _save(tmp_path / "photo.png", _photo())
    assert cli_main(["upscale", str(generator_dir), str(tmp_path / "photo.png")]) == 0
    whole = Image.open(tmp_path / "photo_x2.png")
    assert whole.mode == "RGB" and whole.size == (40, 48)
    out = tmp_path / "tiled.png"
    args = ["upscale", str(generator_dir), str(tmp_path / "photo.png"), "--out", str(out), "--tile", "7",
            "--tile-overlap", "8", "--scale", "2", "--device", "cpu"]
    assert cli_main(args) == 0
    assert "wrote 1 image" in capsys.readouterr().out
    # SRResNet with one block has a radius of about 7 input pixels: overlap 8 is exact (up to rounding to uint8).
    diff = np.abs(np.asarray(Image.open(out), dtype=int) - np.asarray(whole, dtype=int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_cli_grey_rgba_and_16_bit_inputs(generator_dir, tmp_path):
    grey = _photo()[:, :, 0]
    _save(tmp_path / "grey.png", grey)
    rgba = np.concatenate([_photo(seed=1), np.full((24, 20, 1), 128, np.uint8)], axis=-1)
    rgba[:4, :4, 3] = 0
    _save(tmp_path / "rgba.png", rgba)
    Image.fromarray(np.full((24, 20), 65535, np.uint16)).save(tmp_path / "white16.png")  # 16-bit grey
    for name in ("grey", "rgba", "white16"):
        assert cli_main(["upscale", str(generator_dir), str(tmp_path / f"{name}.png")]) == 0
    out = Image.open(tmp_path / "grey_x2.png")
    assert out.mode == "RGB" and out.size == (40, 48)  # the generator's channels
    out = np.asarray(Image.open(tmp_path / "rgba_x2.png"))
    assert out.shape == (48, 40, 4)  # alpha kept, resized beside G's colour channels
    assert (out[12:, 12:, 3] == 128).all() and (out[:4, :4, 3] == 0).all()
    white = np.asarray(Image.open(tmp_path / "white16_x2.png"), dtype=int)
    assert white.shape == (48, 40, 3) and white.mean() > 240  # 65535 is white, not clipped garbage


def test_16_bit_grey_with_a_transparent_colour_reads_as_without_one(tmp_path):
    ramp = (np.arange(24 * 20).reshape(24, 20) * 136).astype(np.uint16)  # 0 .. 65144: mostly above 255
    Image.fromarray(ramp).save(tmp_path / "plain.png")
    Image.fromarray(ramp).save(tmp_path / "keyed.png", transparency=int(ramp[3, 7]))
    plain, no_alpha = read_image(tmp_path / "plain.png", 3)
    keyed, alpha = read_image(tmp_path / "keyed.png", 3)
    assert no_alpha is None and (keyed == plain).all() and plain.max() > 250  # scaled as training data, not clipped
    assert alpha[3, 7] == 0 and (alpha == 0).sum() == 1 and (alpha[alpha > 0] == 255).all()


def test_cli_upscales_a_folder_mirroring_the_tree(generator_dir, tmp_path):
    _save(tmp_path / "in" / "a.png", _photo())
    _save(tmp_path / "in" / "sub" / "b.jpg", _photo(16, 16, seed=2))
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "._a.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)  # macOS AppleDouble metadata
    _save(tmp_path / "in" / ".ipynb_checkpoints" / "a-checkpoint.png", _photo())
    assert cli_main(["upscale", str(generator_dir), str(tmp_path / "in"), "--tile", "8"]) == 0
    root = tmp_path / "in_x2"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == ["a.png", "sub/b.png"]
    assert Image.open(root / "sub" / "b.png").size == (32, 32)


def test_cli_errors_are_one_line(generator_dir, tmp_path, capsys):
    _save(tmp_path / "photo.png", _photo())
    err = _fail(capsys, ["upscale", str(generator_dir), str(tmp_path / "photo.png"), "--scale", "4"])
    assert "--scale 4 differs from the generator's scale 2" in err
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    err = _fail(capsys, ["upscale", str(generator_dir), str(tmp_path / "broken.png")])
    assert "broken.png: not a readable image" in err
    folder = tmp_path / "mixed"
    _save(folder / "ok.png", _photo())
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    assert "bad.jpg: not a readable image" in _fail(capsys, ["upscale", str(generator_dir), str(folder)])
    assert "does not exist" in _fail(capsys, ["upscale", str(generator_dir), str(tmp_path / "absent.png")])
    assert "--tile: must be >= 0" in _fail(capsys, ["upscale", str(generator_dir), str(tmp_path / "photo.png"),
                                                    "--tile", "-1"])
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _fail(capsys, ["upscale", str(generator_dir), str(tmp_path / "photo.png"),
                                               "--device", "cuda"])


def test_cli_refuses_a_generator_that_is_not_super_resolution(tmp_path, capsys):
    from distgan.config import ModelConfig
    from distgan.persist.export import save_generator
    from distgan.models import build_generator

    cfg = ModelConfig(g_width=8, latent_dim=8)
    save_generator(tmp_path / "dcgan", build_generator(cfg, (1, 16, 16)).eval(),
                   {"model": dataclasses.asdict(cfg), "data_shape": [1, 16, 16], "num_classes": 0})
    _save(tmp_path / "photo.png", _photo())
    err = _fail(capsys, ["upscale", str(tmp_path / "dcgan"), str(tmp_path / "photo.png")])
    assert "not a super-resolution generator" in err and "'dcgan'" in err and "upscale needs one" in err
    # Scoring against a folder of high-resolution images names its own command.
    err = _fail(capsys, ["evaluate", str(tmp_path / "dcgan"), "--hr-folder", str(tmp_path)])
    assert "not a super-resolution generator" in err and "evaluate --hr-folder needs one" in err

"""``distgan evaluate GEN --hr-folder DIR [--lr-folder DIR]``: the SR papers' table, on small synthetic folders,
with numbers equal to ones computed directly; a generator made by ``import-weights`` scores end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from distgan.cli import main as cli_main
from distgan.config import ConfigError
from distgan.data.resize import imresize
from distgan.metrics.image_quality import psnr, ssim, to_uint8
from distgan.persist.export import load_generator
from distgan.persist.import_weights import import_weights
from distgan.tasks.super_resolution.benchmark import format_table, score_folders

from published_weights import basicsr_rrdbnet

SCALE = 2
SIZES = {"baby.png": (41, 37), "bird.png": (36, 48), "sub/butterfly.png": (30, 31)}
"""HR sizes, some not multiples of the scale (cropped from the bottom and right)."""


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour structure plus noise: an image SSIM and bicubic have something to say about."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (3 + c) + c) * np.cos(yy / (4 + c)) for c in range(3)], axis=-1)
    return np.clip(127.5 + 90 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bench")
    for seed, (name, (h, w)) in enumerate(SIZES.items()):
        (root / "hr" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(h, w, seed)).save(root / "hr" / name)
    torch.save({"params_ema": basicsr_rrdbnet(blocks=1, stages=1)}, root / "x2.pth")
    import_weights(root / "x2.pth", "rrdb", root / "gen")
    return {"root": root, "hr": root / "hr", "gen": root / "gen"}


def direct(gen: Path, hr_path: Path, lr: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """The protocol written out: modcrop, MATLAB bicubic LR in uint8, G, bicubic up, Y PSNR/SSIM, border 2."""
    g, _ = load_generator(gen)
    hr = torch.from_numpy(np.asarray(Image.open(hr_path).convert("RGB")).copy()).permute(2, 0, 1)
    hr = hr[:, :hr.shape[1] // SCALE * SCALE, :hr.shape[2] // SCALE * SCALE]
    low = (imresize(hr.double(), 1 / SCALE).round().clamp(0, 255).to(torch.uint8) if lr is None
           else torch.from_numpy(lr).permute(2, 0, 1))
    with torch.no_grad():
        sr = to_uint8(g(low[None].float() / 127.5 - 1))
    bic = imresize(low.double(), SCALE).round().clamp(0, 255).to(torch.uint8)[None]
    return (float(psnr(sr, hr[None], SCALE, True)[0]), float(ssim(sr, hr[None], SCALE, True)[0]),
            float(psnr(bic, hr[None], SCALE, True)[0]), float(ssim(bic, hr[None], SCALE, True)[0]))


def test_scores_equal_the_protocol_computed_directly_with_bicubic_beside(bench):
    result = score_folders(bench["gen"], str(bench["hr"]))
    assert [r.image for r in result.rows] == sorted(SIZES)
    for row in result.rows:
        want = direct(bench["gen"], bench["hr"] / row.image)
        assert (row.psnr, row.ssim, row.bicubic_psnr, row.bicubic_ssim) == pytest.approx(want, abs=1e-9)
        h, w = SIZES[row.image]
        assert (row.height, row.width) == (h // 2 * 2, w // 2 * 2)
    mean = result.mean()
    assert mean["psnr"] == pytest.approx(np.mean([r.psnr for r in result.rows]))
    assert mean["bicubic_ssim"] == pytest.approx(np.mean([r.bicubic_ssim for r in result.rows]))
    # Bicubic's PSNR by an independent implementation: skimage on the BT.601 luma, border cut.
    row = result.rows[0]
    hr = np.asarray(Image.open(bench["hr"] / row.image).convert("RGB"), dtype=np.float64)[:row.height, :row.width]
    low = imresize(torch.from_numpy(hr).permute(2, 0, 1), 1 / SCALE).round().clamp(0, 255)
    bic = imresize(low, SCALE).round().clamp(0, 255).permute(1, 2, 0).numpy()
    luma = [16 + (x @ np.array([65.481, 128.553, 24.966])) / 255 for x in (hr, bic)]
    crop = (slice(SCALE, -SCALE),) * 2
    assert row.bicubic_psnr == pytest.approx(peak_signal_noise_ratio(luma[0][crop], luma[1][crop], data_range=255))


def test_an_lr_folder_pairs_by_name_and_gives_the_same_numbers(bench, tmp_path):
    made = score_folders(bench["gen"], str(bench["hr"]))
    for name in SIZES:  # the LR files a benchmark ships: bicubic of the cropped HR, saved as JPEG-free PNG
        hr = torch.from_numpy(np.asarray(Image.open(bench["hr"] / name).convert("RGB")).copy()).permute(2, 0, 1)
        hr = hr[:, :hr.shape[1] // 2 * 2, :hr.shape[2] // 2 * 2]
        lr = imresize(hr.double(), 0.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        (tmp_path / "lr" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(lr).save(tmp_path / "lr" / name.replace(".png", "x2.png"))  # DIV2K's LR names
    given = score_folders(bench["gen"], str(bench["hr"]), str(tmp_path / "lr"), out=tmp_path / "sr")
    assert given.to_dict()["images"] == made.to_dict()["images"]
    assert Image.open(tmp_path / "sr" / "sub" / "butterfly.png").size == (30, 30)


def test_the_table_has_a_row_per_image_and_a_mean_row(bench, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert cli_main(["evaluate", str(bench["gen"]), "--hr-folder", str(bench["hr"]), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "x2 on 3 images" in lines[0] and "PSNR/SSIM on Y, 2 px border cropped" in lines[0]
    assert lines[1].split() == ["image", "PSNR", "SSIM", "bicubic", "PSNR", "bicubic", "SSIM"]
    saved = json.loads(out.read_text())
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == sorted(SIZES) + ["mean"]
    for image in saved["images"]:
        assert rows[image["image"]] == [f"{image['psnr']:.2f}", f"{image['ssim']:.4f}",
                                        f"{image['bicubic_psnr']:.2f}", f"{image['bicubic_ssim']:.4f}"]
    assert rows["mean"][0] == f"{saved['mean']['psnr']:.2f}" and saved["crop_border"] == 2
    assert format_table(score_folders(bench["gen"], str(bench["hr"]))).splitlines()[2:] == lines[2:]


def _folder(root: Path, name: str, sizes: dict) -> Path:
    for file, (h, w) in sizes.items():
        (root / name / file).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_photo(h, w, 0)).save(root / name / file)
    return root / name


@pytest.mark.parametrize("hr, lr, needle", [
    ({}, None, "--hr-folder"),
    ({"a.png": (32, 32), "b.png": (32, 32)}, {"a.png": (16, 16)}, "--lr-folder"),
    ({"a.png": (32, 32)}, {"a.png": (16, 15)}, "a.png: 16x15 px x2 is 32x30, but its high-resolution image"),
])
def test_bad_folders_are_named(bench, tmp_path, hr, lr, needle):
    hr_dir = _folder(tmp_path, "hr", hr)
    hr_dir.mkdir(exist_ok=True)
    lr_dir = None if lr is None else str(_folder(tmp_path, "lr", lr))
    with pytest.raises(ConfigError) as caught:
        score_folders(bench["gen"], str(hr_dir), lr_dir)
    assert needle in str(caught.value)
    if not hr:
        assert "no PNG/JPEG images" in str(caught.value)
    if lr and len(hr) > len(lr):
        assert "b.png" in str(caught.value) and "no low-resolution image" in str(caught.value)


def test_evaluate_flags_that_do_not_apply_to_a_folder_are_refused(bench, capsys):
    assert cli_main(["evaluate", str(bench["gen"]), "--hr-folder", str(bench["hr"]), "--n", "5"]) == 2
    assert "--n does not apply" in capsys.readouterr().err


def test_import_then_evaluate_from_the_command_line(tmp_path, bench):
    """The installed ``distgan`` entry point, end to end, in two processes."""
    distgan = Path(sys.executable).with_name("distgan")
    torch.save({"params": basicsr_rrdbnet(seed=7, blocks=1, stages=1)}, tmp_path / "net.pth")
    done = subprocess.run([str(distgan), "import-weights", str(tmp_path / "net.pth"), "--family", "rrdb",
                           "--scale", "2", "--out", str(tmp_path / "g")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "basicsr layout, params" in done.stdout and "rrdb x2" in done.stdout
    done = subprocess.run([str(distgan), "evaluate", str(tmp_path / "g"), "--hr-folder", str(bench["hr"]),
                           "--out", str(tmp_path / "sr")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mean = done.stdout.splitlines()[-2].split()
    assert mean[0] == "mean" and len(mean) == 5
    assert sorted(p.relative_to(tmp_path / "sr").as_posix() for p in (tmp_path / "sr").rglob("*.png")) == \
        sorted(SIZES)

"""``distgan sample --truncation``, ``--mix`` and ``--interpolate`` on exported generators made here (no
training, no Ray): psi 0 gives the average image for every latent, the mixing grid has the expected size and
takes its styles where it says, a walk's strips, animation and array have their expected shapes and start at
the plain samples, and misuse is refused naming the flag; ``train.init_from`` compares the file's
``model.stylegan2`` architecture keys with the config's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from distgan import models
from distgan.cli import main as cli_main
from distgan.config import Config, ModelConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.persist.export import load_generator, save_generator
from distgan.tasks.generation.sampling import mixing_grid

SHAPE = (1, 16, 16)


def export(path, model: ModelConfig):
    torch.manual_seed(0)
    g = models.build_generator(model, SHAPE)
    if hasattr(g, "mapping"):
        g.train()
        g.mapping(torch.randn(16, model.latent_dim))  # a non-zero w_avg, as training leaves it
    save_generator(path, g, {"model": Config(model=model).to_dict()["model"], "data_shape": list(SHAPE),
                             "num_classes": 0})
    return path


@pytest.fixture(scope="module")
def stylegan(tmp_path_factory):
    style = StyleGAN2Config(w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    return export(tmp_path_factory.mktemp("sg2"), ModelConfig(family="stylegan2", latent_dim=8, stylegan2=style))


def images(path) -> np.ndarray:
    return np.load(path)["images"]


def test_truncation_zero_gives_the_same_image_for_every_latent(stylegan, tmp_path):
    assert cli_main(["sample", str(stylegan), "--truncation", "0", "--n", "5", "--out", str(tmp_path / "a.npz")]) == 0
    same = images(tmp_path / "a.npz")
    assert same.shape == (5, *SHAPE) and np.array_equal(same, np.broadcast_to(same[:1], same.shape))
    assert cli_main(["sample", str(stylegan), "--n", "5", "--out", str(tmp_path / "b.npz")]) == 0
    varied = images(tmp_path / "b.npz")
    assert not np.allclose(varied[0], varied[1]), "without truncation the latents must differ"
    assert cli_main(["sample", str(stylegan), "--truncation", "1", "--n", "5", "--out", str(tmp_path / "c.npz")]) == 0
    assert np.array_equal(images(tmp_path / "c.npz"), varied), "psi 1 leaves w as it is"


def test_mix_writes_a_grid_of_the_expected_size(stylegan, tmp_path):
    out = tmp_path / "mix.png"
    assert cli_main(["sample", str(stylegan), "--mix", "2x3", "--out", str(out)]) == 0
    # (rows + 1) x (cols + 1) tiles of 16 px with a 1 px border: the first row and column are the sources.
    assert Image.open(out).size == (4 * 17 + 1, 3 * 17 + 1)


def test_mixing_grid_cells_take_coarse_styles_from_rows_and_fine_from_columns(stylegan):
    g, _ = load_generator(stylegan)
    grid = mixing_grid(g, 2, 3, seed=0, crossover=g.num_ws - 1).unflatten(0, (3, 4))
    assert grid.shape == (3, 4, *SHAPE) and torch.all(grid[0, 0] == -1)
    # Only the last style (ToRGB at 16 px) comes from the column: each cell is close to its row's source ...
    assert (grid[1, 1:] - grid[1, :1]).abs().mean() < (grid[1, 1:] - grid[2, :1]).abs().mean()
    # ... and with crossover 1 (everything but the first style from the column) close to its column's.
    grid = mixing_grid(g, 2, 3, seed=0, crossover=1).unflatten(0, (3, 4))
    assert (grid[1:, 1] - grid[:1, 1]).abs().mean() < (grid[1:, 1] - grid[:1, 2]).abs().mean()


@pytest.mark.parametrize("args, needle", [
    (["--mix", "2by3"], "--mix '2by3': give ROWSxCOLS"),
    (["--mix", "0x3"], "--mix '0x3': rows and columns must be >= 1"),
    (["--mix", "--out", "{tmp}/x.npz"], "--mix: writes a .png grid"),
    (["--crossover", "2"], "--crossover: sets where --mix's grid switches"),
    (["--mix", "2x2", "--crossover", "6"], "--crossover: must be from 1 to 5"),
])
def test_bad_mix_use_names_the_flag(stylegan, tmp_path, capsys, args, needle):
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")]
    assert cli_main(["sample", str(stylegan), *argv]) == 2
    assert needle in capsys.readouterr().err


def test_interpolate_writes_strips_an_animation_and_an_array_from_the_plain_samples(stylegan, tmp_path):
    assert cli_main(["sample", str(stylegan), "--interpolate", "3x5", "--seed", "2", "--truncation", "0.7",
                     "--out", str(tmp_path / "walk.npz")]) == 0
    walk = images(tmp_path / "walk.npz")
    assert walk.shape == (3, 5, *SHAPE)
    assert cli_main(["sample", str(stylegan), "--n", "3", "--seed", "2", "--truncation", "0.7",
                     "--out", str(tmp_path / "plain.npz")]) == 0
    assert np.array_equal(walk[:, 0], images(tmp_path / "plain.npz")), "the keyframes are the plain samples"
    assert np.array_equal(walk[:, -1], np.roll(walk, -1, axis=0)[:, 0]), "each row ends where the next starts"
    assert cli_main(["sample", str(stylegan), "--interpolate", "3x5", "--out", str(tmp_path / "walk.png")]) == 0
    assert Image.open(tmp_path / "walk.png").size == (5 * 17 + 1, 3 * 17 + 1)  # rows of 16 px tiles
    gif = tmp_path / "walk.gif"
    assert cli_main(["sample", str(stylegan), "--interpolate", "--zoom", "2", "--fps", "25", "--out", str(gif)]) == 0
    with Image.open(gif) as anim:
        # The default 4x8, each row's last frame left out (the next row's first): 4 x 7 frames of 32 px.
        assert (anim.n_frames, anim.size, anim.info["loop"], anim.info["duration"]) == (28, (32, 32), 0, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.npz", "walk.gif", "walk.npz", "walk.png"]


@pytest.mark.parametrize("args, needle", [
    (["--interpolate", "3by5"], "--interpolate '3by5': give KEYFRAMESxSTEPS"),
    (["--interpolate", "1x5"], "--interpolate '1x5': a walk needs at least 2 keyframes and 2 steps"),
    (["--interpolate", "--fps", "0", "--out", "{tmp}/x.gif"], "--fps: must be in [1/655, 50]"),
    (["--interpolate", "--fps", "0.001", "--out", "{tmp}/x.gif"], "--fps: must be in [1/655, 50]"),
    (["--interpolate", "--fps", "200", "--out", "{tmp}/x.gif"], "a GIF frame lasts 0.02 s to 655 s), got 200"),
    (["--truncation", "nan"], "--truncation: must be a finite number"),
    (["--truncation", "inf"], "--truncation: must be a finite number"),
    (["--seed", "99999999999999999999"], "--seed: must be in [0, 2^63)"),
    (["--seed", "-1"], "--seed: must be in [0, 2^63), got -1"),
    (["--interpolate", "--mix"], "--mix and --interpolate: each makes its own picture"),
    (["--out", "{tmp}/x.gif"], "--out '{tmp}/x.gif': must end in .png (a grid) or .npz (an array), or with "
                               "--interpolate in .gif"),
])
def test_bad_walk_fps_truncation_or_seed_is_refused_naming_the_flag(stylegan, tmp_path, capsys, args, needle):
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")]
    assert cli_main(["sample", str(stylegan), *argv]) == 2
    assert needle.format(tmp=tmp_path) in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_generator_of_points_has_no_walk_to_draw(tmp_path, capsys):
    torch.manual_seed(0)
    mlp = ModelConfig(family="mlp", latent_dim=2)
    save_generator(tmp_path / "mlp", models.build_generator(mlp, (2,)),
                   {"model": Config(model=mlp).to_dict()["model"], "data_shape": [2], "num_classes": 0})
    assert cli_main(["sample", str(tmp_path / "mlp"), "--interpolate", "--out", str(tmp_path / "x.png")]) == 2
    assert "--interpolate: walks between images; this generator makes points" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--truncation", "0.5"], ["--mix"], ["--noise-mode", "const"],
                                  ["--truncation", "0.5", "--interpolate"]])
def test_a_generator_without_a_mapping_network_refuses_style_flags(tmp_path, capsys, flag):
    dcgan = export(tmp_path / "dcgan", ModelConfig(g_width=8, latent_dim=8))
    assert cli_main(["sample", str(dcgan), *flag, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]}: needs a generator with a mapping network" in err and "DCGAN" in err.upper()


def test_init_from_a_stylegan2_generator_checks_its_section_s_architecture(stylegan):
    from distgan.config import ConfigError
    from distgan.persist.export import check_init_from

    saved = Config(model=ModelConfig(family="stylegan2", latent_dim=8, stylegan2=StyleGAN2Config(
        w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)))
    saved.train.init_from = str(stylegan)
    check_init_from(saved)  # the architecture it was exported with: accepted
    wider = Config(model=ModelConfig(family="stylegan2", latent_dim=8, stylegan2=StyleGAN2Config(
        w_dim=8, mapping_layers=2, channel_base=64, channel_max=16)))
    wider.train.init_from = str(stylegan)
    with pytest.raises(ConfigError, match=r"model.stylegan2.channel_max 16 \(the file has 8\)"):
        check_init_from(wider)

"""Conditional G and D: labels change the output, projection is an exact inner product, config checks."""

from __future__ import annotations

import pytest
import torch

from distgan import models
from distgan.config import ConfigError
from distgan import load_config
from distgan.models.conditional import ProjectionDiscriminator

CASES = [("dcgan", (1, 16, 16), ()), ("dcgan", (3, 8, 8), ()), ("mlp", (2,), ("data.name=ring8",))]


def model_cfg(family: str, conditioning: str, extra=()):
    return load_config(None, ("model.conditional=true", f"model.family={family}", "model.latent_dim=8",
                              "model.g_width=8", "model.d_width=8", f"model.d_conditioning={conditioning}",
                              "model.d_norm=none", *extra)).model


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
@pytest.mark.parametrize("family, shape, extra", CASES, ids=str)
def test_labels_steer_both_networks(family, shape, extra, conditioning):
    cfg = model_cfg(family, conditioning, extra)
    torch.manual_seed(0)
    g = models.build_generator(cfg, shape, num_classes=5).eval()
    d = models.build_discriminator(cfg, shape, num_classes=5)
    z = torch.randn(4, 8)
    a, b = g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.full((4,), 3))
    assert a.shape == (4, *shape) and not torch.allclose(a, b), "G ignores its labels"
    x = torch.randn(4, *shape)
    if conditioning == "projection":  # the class term starts small: make it visible
        torch.nn.init.normal_(d.embed.weight)
    assert d(x, torch.zeros(4, dtype=torch.long)).shape == (4,)
    assert not torch.allclose(d(x, torch.zeros(4, dtype=torch.long)), d(x, torch.full((4,), 3)))


def test_projection_adds_the_inner_product_of_embedding_and_features():
    cfg = model_cfg("dcgan", "projection")
    d = models.build_discriminator(cfg, (1, 16, 16), num_classes=4)
    assert isinstance(d, ProjectionDiscriminator)
    x, y = torch.randn(3, 1, 16, 16), torch.tensor([0, 2, 3])
    h = d.base.features(x)
    expected = d.base.head(h).squeeze(1) + (d.embed.weight[y] * h).sum(1)
    assert torch.allclose(d(x, y), expected)


def test_unlabelled_data_refuses_a_conditional_model(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("L", (20, 20), color=i * 40).save(tmp_path / f"{i}.png")
    with pytest.raises(ConfigError, match="model.conditional: data.path .* carries no class labels .*sub-folder"):
        load_config(None, ("model.conditional=true", f"data.path={tmp_path}", "data.resolution=16"))


def test_folder_classes_come_from_sub_folders(tmp_path):
    from PIL import Image

    from distgan.config import DataConfig
    from distgan.data import class_names, load_dataset

    for cls, n in (("cats", 2), ("dogs", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("L", (20, 20), color=100 if cls == "dogs" else 0).save(tmp_path / cls / f"{i}.png")
    cfg = DataConfig(name=None, path=str(tmp_path), resolution=16)
    assert class_names(cfg) == ("cats", "dogs")
    data = load_dataset(cfg)
    assert data.labels.tolist() == [0, 0, 1, 1, 1]
    assert (data.x[data.labels == 1] > -0.5).all() and (data.x[data.labels == 0] == -1).all()
    Image.new("L", (20, 20)).save(tmp_path / "loose.png")  # an image outside the class folders
    assert class_names(cfg) == ()


def test_conditional_run_exports_a_generator_that_samples_requested_classes(process_group, tmp_path):
    """Two real steps in-process, then the export and ``distgan sample --labels`` round trip."""
    import numpy as np

    from distgan.cli import main as cli_main
    from distgan.persist.export import load_generator
    from distgan.runtime.loop import RunInfo
    from distgan.tasks import build_trainer
    from sessions import LocalSession
    from tiny_run import OVERRIDES

    cfg = load_config(None, (*OVERRIDES, "train.steps=2", "model.conditional=true", "tracking.wandb=false",
                             "scaling.num_workers=1"))
    run = tmp_path / "cgan"
    run.mkdir()
    build_trainer(cfg, RunInfo(run, "cgan", "cgan"), LocalSession(tmp_path / "store")).run()
    generator, meta = load_generator(run)
    assert meta["num_classes"] == 10 and meta["class_names"] == [str(d) for d in range(10)]
    assert (run / "samples" / "step_000002.png").is_file()
    assert cli_main(["sample", str(run), "--n", "6", "--labels", "3,7", "--out", str(tmp_path / "s.npz")]) == 0
    saved = np.load(tmp_path / "s.npz")
    assert saved["labels"].tolist() == [3, 7, 3, 7, 3, 7] and saved["images"].shape == (6, 1, 16, 16)
    assert cli_main(["sample", str(run), "--labels", "12", "--out", str(tmp_path / "x.png")]) == 2

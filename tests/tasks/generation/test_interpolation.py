"""Latent walks (``distgan.tasks.generation.interpolation``): slerp's geometry, and on tiny generators that a
walk starts at the plain command's samples, rows join end to start in a loop, a style-based G walks straight in
W and any other along the sphere in z, and a conditional G holds each row's class."""

from __future__ import annotations

import math

import pytest
import torch

from distgan import models
from distgan.config import ModelConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.persist.export import generate
from distgan.tasks.generation.interpolation import fractions, latent_walk, slerp
from distgan.tasks.generation.sampling import generate_styled, truncated_ws

SHAPE = (1, 16, 16)


def built(model: ModelConfig, num_classes: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    g = models.build_generator(model, SHAPE, num_classes).eval()
    if hasattr(g, "mapping"):
        with torch.no_grad():
            g.mapping.train()(torch.randn(16, model.latent_dim))  # a non-zero w_avg, as training leaves it
            g.mapping.eval()
    return g


@pytest.fixture(scope="module")
def stylegan():
    return built(ModelConfig(family="stylegan2", latent_dim=8,
                             stylegan2=StyleGAN2Config(w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)))


@pytest.fixture(scope="module")
def dcgan():
    return built(ModelConfig(g_width=8, latent_dim=8))


# -- slerp -------------------------------------------------------------------------------------------


def test_slerp_keeps_its_ends_and_walks_the_great_circle():
    a, b = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    path = slerp(a, b, torch.tensor([0.0, 0.25, 0.5, 1.0]))[0]
    torch.testing.assert_close(path[0], a[0])
    torch.testing.assert_close(path[-1], b[0])
    # Equal norms: every point stays on the sphere; a quarter of the way is a quarter of the 90 degrees.
    torch.testing.assert_close(path.norm(dim=-1), torch.full((4,), 2.0))
    torch.testing.assert_close(path[1], 2 * torch.tensor([math.cos(math.pi / 8), math.sin(math.pi / 8), 0.0]))
    # The straight line's midpoint dips inside the sphere; slerp's does not.
    assert ((a + b) / 2).norm() < path[2].norm() - 0.5


def test_slerp_interpolates_norms_linearly_and_survives_parallel_latents():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    torch.testing.assert_close(slerp(a, b, torch.tensor([0.5]))[0, 0].norm(), torch.tensor(2.0))
    same = slerp(a, 4 * a, torch.tensor([0.0, 0.5, 1.0]))[0]
    torch.testing.assert_close(same, torch.tensor([[1.0, 0.0], [2.5, 0.0], [4.0, 0.0]]))
    opposite = slerp(a, -a, torch.tensor([0.0, 0.25, 1.0]))[0]
    assert torch.isfinite(opposite).all()
    torch.testing.assert_close(opposite[[0, 2]], torch.cat([a, -a]))


def test_a_walk_needs_two_ends(dcgan):
    with pytest.raises(ValueError, match="at least 2 steps"):
        fractions(1)
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        latent_walk(dcgan, 1, 4, seed=0)


# -- walks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("psi", [1.0, 0.6])
def test_a_style_based_walk_goes_straight_in_w_from_the_plain_samples(stylegan, psi):
    walk = latent_walk(stylegan, 3, 5, seed=4, truncation_psi=psi)
    assert walk.shape == (3, 5, *SHAPE)
    torch.testing.assert_close(latent_walk(stylegan, 3, 5, seed=4, truncation_psi=psi, batch=4), walk)
    torch.testing.assert_close(walk[:, 0], generate_styled(stylegan, 3, 4, truncation_psi=psi))
    torch.testing.assert_close(walk[:, -1], walk.roll(-1, dims=0)[:, 0])  # row i ends where row i + 1 starts
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    ws = truncated_ws(stylegan, z, None, psi)
    with torch.no_grad():
        halfway = stylegan.synthesis((ws + ws.roll(-1, dims=0)) / 2, "const")
    torch.testing.assert_close(walk[:, 2], halfway)
    assert not torch.allclose(walk[:, 1], walk[:, 3]), "the frames between the ends differ"


def test_any_other_generator_walks_along_the_sphere_in_z(dcgan):
    walk = latent_walk(dcgan, 4, 3, seed=7)
    torch.testing.assert_close(walk[:, 0], generate(dcgan, 4, 7))
    torch.testing.assert_close(walk[:, -1], walk.roll(-1, dims=0)[:, 0])
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    middle = slerp(z, z.roll(-1, dims=0), torch.tensor([0.5]))[:, 0]
    with torch.no_grad():
        torch.testing.assert_close(walk[:, 1], dcgan(middle))


def test_a_conditional_generator_holds_each_row_s_class():
    g = built(ModelConfig(g_width=8, latent_dim=8, conditional=True), num_classes=10)
    labels = torch.tensor([3, 7])
    walk = latent_walk(g, 2, 4, seed=1, labels=labels, batch=3)  # chunks that cut across rows
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    path = slerp(z, z.roll(-1, dims=0), fractions(4))
    with torch.no_grad():
        for row, label in enumerate(labels.tolist()):
            torch.testing.assert_close(walk[row], g(path[row], torch.full((4,), label)))
    assert not torch.allclose(walk[0, -1], walk[1, 0]), "a class change shows where the row ends"

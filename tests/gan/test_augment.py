"""DiffAugment operations on tiny images: exact geometry, differentiability, policies."""

from __future__ import annotations

import pytest
import torch

from distgan.config import ConfigError
from distgan import load_config
from distgan.gan.augment import AUGMENTS, build_augment, cutout, translation


def test_translation_moves_whole_images_by_whole_pixels():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one lit pixel per image
    out = translation(x)
    assert out.shape == x.shape
    lit = out[:, 0].flatten(1).argmax(1)
    dy, dx = lit // 16 - 8, lit % 16 - 8
    assert out.sum(dim=(1, 2, 3)).eq(1).all(), "a pixel 2 away from the centre never leaves a 16 px image"
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and (dy != 0).any() and (dx != 0).any()


def test_translation_fills_with_zeros():
    torch.manual_seed(1)
    out = translation(torch.ones(32, 1, 16, 16))
    zero_rows = (out[:, 0] == 0).all(dim=2).sum(dim=1)
    assert zero_rows.max() <= 2 and zero_rows.sum() > 0 and set(out.unique().tolist()) <= {0.0, 1.0}


def test_cutout_zeroes_at_most_a_half_size_square():
    torch.manual_seed(2)
    out = cutout(torch.ones(64, 3, 16, 16))
    zeros = (out[:, 0] == 0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0  # an 8x8 square, clipped at the border
    assert torch.equal(out[:, 0], out[:, 2]), "the same square on every channel"


def test_color_changes_values_per_image_but_not_shape():
    torch.manual_seed(3)
    x = torch.rand(8, 3, 4, 4) * 2 - 1
    out = AUGMENTS.get("color")(x)
    assert out.shape == x.shape and not torch.allclose(out, x)


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_op_passes_gradients_to_its_input(name):
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    AUGMENTS.get(name)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_policy_composes_in_order_and_empty_is_identity():
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(build_augment("")(x), x)
    torch.manual_seed(4)
    composed = build_augment("translation, cutout")(x)
    torch.manual_seed(4)
    assert torch.equal(composed, cutout(translation(x)))


@pytest.mark.parametrize("overrides, needle", [
    (["augment.policy=color,flip"], "augment.policy: unknown augmentation 'flip'"),
    (["augment.policy=translation", "data.name=ring8", "model.family=mlp"], "holds points"),
])
def test_bad_policies_are_refused(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, tuple(overrides))

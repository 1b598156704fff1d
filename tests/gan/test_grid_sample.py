"""distgan.gan.grid_sample: torch's bilinear grid_sample, with a gradient that can be differentiated again
(R1 through ADA's geometric transforms on CUDA, where torch has no such rule; tests/runtime/test_gpu.py runs
it there). On the CPU torch has its own rule, which these tests take as the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distgan.gan.grid_sample import grid_sample


def affine_grid(shape, dtype=torch.float64) -> torch.Tensor:
    """A rotation, shear and shift that reaches outside the image, so the padding rule matters."""
    theta = torch.tensor([[[0.9, 0.3, 0.25], [-0.35, 1.2, -0.3]], [[1.1, -0.2, -0.4], [0.1, 0.8, 0.2]]],
                         dtype=dtype)
    return F.affine_grid(theta[: shape[0]], list(shape), align_corners=False)


@pytest.mark.parametrize("padding", ["reflection", "zeros", "border"])
def test_values_gradients_and_second_gradients_are_torchs(padding):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    grid = affine_grid(x.shape)

    def r1_like(sample):
        y = sample(x, grid)
        (grad,) = torch.autograd.grad(y.sin().sum(), x, create_graph=True)
        (second,) = torch.autograd.grad(grad.square().sum(), x)
        return y, grad, second

    ours = r1_like(lambda x, g: grid_sample(x, g, padding))
    torchs = r1_like(lambda x, g: F.grid_sample(x, g, mode="bilinear", padding_mode=padding, align_corners=False))
    for a, b in zip(ours, torchs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert ours[2].abs().sum() > 0  # the second gradient is not trivially zero


def test_the_rule_passes_torchs_numerical_checks_to_the_third_order():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    grid = affine_grid(x.shape)
    assert torch.autograd.gradcheck(lambda x: grid_sample(x, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda x: grid_sample(x, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda x: torch.autograd.grad(grid_sample(x, grid).pow(3).sum(), x,
                                                                      create_graph=True)[0], (x,))


def test_bf16_images_resample_in_bf16():
    x = torch.randn(2, 1, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    grid = affine_grid(x.shape, torch.bfloat16)
    y = grid_sample(x, grid)
    (grad,) = torch.autograd.grad(y.float().sin().sum(), x, create_graph=True)
    grad.float().square().sum().backward()
    assert y.dtype == grad.dtype == x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


def test_a_grid_that_requires_grad_is_refused():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="grid must not require grad"):
        grid_sample(x, affine_grid(x.shape, torch.float32).requires_grad_())

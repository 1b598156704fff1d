"""Bilinear ``grid_sample`` whose gradient with respect to the images can itself be differentiated.

ADA's geometric transforms resample every image D sees, and lazy R1 takes the gradient of D's output with
respect to the (augmented) reals with ``create_graph``, then backpropagates it: a double backward through the
resampling. PyTorch implements no derivative of ``grid_sampler_2d_backward`` on CUDA (torch 2.11 raises
"derivative for aten::grid_sampler_2d_backward is not implemented" at the first R1 step), so StyleGAN2 with
ADA on a GPU needs its own rule; the CPU's native one is bypassed too so that the CPU tests check the path the
GPU takes.

The rule: with the sampling grid fixed (ADA's grid is built from drawn transforms, never learned), bilinear
resampling is a linear map A of the input, output = A x. Its backward is the adjoint, grad_x = A^T grad_out,
computed by torch's own ``grid_sampler_2d_backward``, and that is again linear, in grad_out, with adjoint A:
the derivative of the backward is a forward resampling with the same grid. Each order is one of the two
functions below, so gradients of any order exist.
"""

from __future__ import annotations

import torch

PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}
"""The integer codes of ``aten::grid_sampler_2d``'s padding modes (bilinear interpolation is code 0)."""
BILINEAR = 0


def grid_sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """``F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)`` with a
    differentiable gradient in ``x``. ``grid`` must not require grad (its gradient is not computed)."""
    if grid.requires_grad:
        raise ValueError("grid_sample: the grid must not require grad (only the images' gradient is computed)")
    return _Resample.apply(x, grid, PADDING_MODES[padding_mode])


class _Resample(torch.autograd.Function):
    """output = A x (bilinear resampling on a fixed grid); backward: grad_x = A^T grad_output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, grid)
        ctx.padding = padding
        return torch.grid_sampler(x, grid, BILINEAR, padding, False)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, grid = ctx.saved_tensors
        grad_x = _ResampleAdjoint.apply(grad_output, x, grid, ctx.padding) if ctx.needs_input_grad[0] else None
        return grad_x, None, None


class _ResampleAdjoint(torch.autograd.Function):
    """grad_x = A^T grad_output; backward: the gradient of grad_output is A applied to the incoming gradient
    (the adjoint of the adjoint), and there is none for ``x``: bilinear weights depend on the grid alone."""

    @staticmethod
    def forward(ctx, grad_output: torch.Tensor, x: torch.Tensor, grid: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.padding = padding
        # x gives the input's shape and dtype; output_mask leaves out the grid's gradient.
        grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(grad_output, x, grid, BILINEAR, padding, False,
                                                            [True, False])
        return grad_x

    @staticmethod
    def backward(ctx, grad_grad_x: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return _Resample.apply(grad_grad_x, grid, ctx.padding), None, None, None


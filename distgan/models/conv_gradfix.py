"""``conv2d`` whose second derivative runs on the convolution kernels of a first one.

StyleGAN2's regularizers differentiate a gradient: lazy R1 backpropagates D's input gradient into D's weights,
and the path-length penalty G's gradient with respect to w into G's weights. Through a convolution that second
pass differentiates the convolution's backward, and PyTorch's generic rule for it
(``_convolution_double_backward``) computes the weight's term whenever the input gradient is differentiated,
whether or not the weight needs a gradient, as a convolution whose kernel is the whole feature map, and for
a grouped convolution one group at a time. StyleGAN2's resampling filters are fixed depthwise convolutions:
on an H200 that unused filter gradient was 99% of the GPU time of the path-length pass of the 1024 px G
(14.2 of 14.3 s, batch 2, bf16, torch.profiler) against 72 ms for its adversarial pass, and 98% of lazy R1
through its D (12.0 of 12.1 s). ``python benchmarks/regularization.py`` times both, with and without this
module.

Here each term of the first backward is an op whose own backward is again a plain convolution, transposed
convolution or weight gradient, which cuDNN computes with its ordinary kernels:

  y = conv(x, W)               grad_x = conv_transpose(grad_y, W)      grad_W = weight_grad(grad_y, x)
  weight_grad(g, x) = grad_W   d/dg    = conv(x, ggW)                  d/dx   = conv_transpose(g, ggW)

(bilinearity: the weight gradient is linear in each of grad_y and x, with these adjoints). Each gradient
is computed only when asked for. Only ``torch.autograd.grad(..., create_graph=True)`` callers gain
anything; the values are F.conv2d's. Dilation 1 and no bias (StyleGAN2's layers add theirs in ``bias_act``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
           groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, 1, groups)``, differentiable twice on fast kernels."""
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return F.conv2d(x, weight, None, stride, padding, 1, groups)
    return _Conv2d.apply(x, weight, stride, padding, groups)


def input_grad(grad_y: torch.Tensor, weight: torch.Tensor, x_shape: torch.Size, stride: int, padding: int,
               groups: int) -> torch.Tensor:
    """The gradient of conv(x, weight) with respect to x: a transposed convolution back to ``x_shape``."""
    k = weight.shape[-2:]
    # A stride-2 convolution maps two input sizes to one output size; output_padding picks x's.
    output_padding = [x_shape[2 + i] - ((grad_y.shape[2 + i] - 1) * stride - 2 * padding + k[i]) for i in (0, 1)]
    return F.conv_transpose2d(grad_y, weight, None, stride, padding, output_padding, groups)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, groups)
        return F.conv2d(x, weight, None, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        stride, padding, groups = ctx.conv
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = input_grad(grad_y, weight, x.shape, stride, padding, groups)
        if ctx.needs_input_grad[1]:
            grad_w = _WeightGrad.apply(grad_y, x, weight, stride, padding, groups)
        return grad_x, grad_w, None, None, None


class _WeightGrad(torch.autograd.Function):
    """grad_W of conv(x, W) given grad_y, by the convolution's own backward kernel (``weight`` gives only the
    shape); its backward is the pair of adjoints in the module docstring."""

    @staticmethod
    def forward(ctx, grad_y, x, weight, stride, padding, groups):
        ctx.save_for_backward(grad_y, x)
        ctx.conv = (stride, padding, groups)
        _, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_y, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups,
            [False, True, False])
        return grad_w

    @staticmethod
    def backward(ctx, grad_grad_w):
        grad_y, x = ctx.saved_tensors
        stride, padding, groups = ctx.conv
        d_grad_y = d_x = None
        if ctx.needs_input_grad[0]:
            d_grad_y = conv2d(x, grad_grad_w, stride, padding, groups)
        if ctx.needs_input_grad[1]:
            d_x = input_grad(grad_y, grad_grad_w, x.shape, stride, padding, groups)
        return d_grad_y, d_x, None, None, None, None

"""distgan.models.conv_gradfix: F.conv2d's values and first and second derivatives, by other kernels (why:
the module docstring). torch's own rule is the reference, in float64 on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from distgan.config import ModelConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.gan.ada import AdaPipeline
from distgan.gan.regularizers import R1, path_length_noise, path_lengths
from distgan.models import build_discriminator, build_generator, conv_gradfix, stylegan2_layers

CASES = [  # (input side, kernel, stride, padding, groups): StyleGAN2's convs, and sizes a stride cannot halve
    (8, 3, 1, 1, 1), (9, 3, 2, 0, 1), (8, 3, 2, 0, 1), (7, 1, 1, 0, 1), (8, 4, 1, 0, 2), (6, 3, 1, 1, 4)]


def twice(conv, x, w):
    """y, first derivatives in x and w (with create_graph), and the derivatives of an R1-like penalty on them."""
    y = conv(x, w)
    gx, gw = torch.autograd.grad(y.sin().sum(), (x, w), create_graph=True)
    ggx, ggw = torch.autograd.grad(gx.square().sum() + gw.square().sum(), (x, w))
    return y, gx, gw, ggx, ggw


@pytest.mark.parametrize("side,k,stride,padding,groups", CASES)
def test_values_and_two_orders_of_derivatives_are_torchs(side, k, stride, padding, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 4, side, side, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6 if groups < 4 else 4, 4 // groups, k, k, dtype=torch.float64, requires_grad=True)
    ours = twice(lambda x, w: conv_gradfix.conv2d(x, w, stride, padding, groups), x, w)
    torchs = twice(lambda x, w: F.conv2d(x, w, None, stride, padding, 1, groups), x, w)
    for a, b in zip(ours, torchs):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_the_rule_passes_torchs_numerical_checks():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for stride in (1, 2):
        conv = lambda x, w: conv_gradfix.conv2d(x, w, stride, 1)  # noqa: E731
        assert torch.autograd.gradcheck(conv, (x, w)) and torch.autograd.gradgradcheck(conv, (x, w))


def test_without_gradients_it_is_the_plain_op():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    y = conv_gradfix.conv2d(x, w, 1, 1)
    assert y.grad_fn is None and torch.equal(y, F.conv2d(x, w, None, 1, 1))
    with torch.no_grad():
        assert conv_gradfix.conv2d(x, w.requires_grad_(), 1, 1).grad_fn is None


def test_stylegan2_layers_second_derivatives_match_torchs_convolution(monkeypatch):
    """A modulated and a downsampling conv under a path-length-like double backward: same numbers with torch's
    own convolution put back in their place."""
    torch.manual_seed(0)
    layers = [stylegan2_layers.ModulatedConv2d(4, 4, 3, 8, up=True),
              stylegan2_layers.EqualConv2d(4, 4, 3, activation="lrelu", down=True)]
    for layer in layers:
        layer.double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    ws = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)

    def penalty():
        y = layers[1](layers[0](x, ws))
        (g,) = torch.autograd.grad(y.sum(), ws, create_graph=True)
        grads = torch.autograd.grad(g.square().sum(), [p for layer in layers for p in layer.parameters()])
        return [y.detach(), g.detach(), *grads]

    ours = penalty()
    monkeypatch.setattr(conv_gradfix, "conv2d", lambda x, w, stride=1, padding=0, groups=1:
                        F.conv2d(x, w, None, stride, padding, 1, groups))
    torchs = penalty()
    for a, b in zip(ours, torchs):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


class ConvolutionKernels(TorchDispatchMode):
    """The spatial sizes of the kernels of every convolution dispatched inside the block: a forward's or
    transposed convolution's weight, and the weight handed to a convolution's backward."""

    def __init__(self):
        super().__init__()
        self.sides: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.sides.append(max(args[1].shape[-2:]))
        elif func is torch.ops.aten.convolution_backward.default:
            self.sides.append(max(args[2].shape[-2:]))
        return func(*args, **(kwargs or {}))


def second_backward_kernels(penalty) -> list[int]:
    """Kernel sides of the convolutions in the backward of ``penalty()`` (a graph built with create_graph)."""
    loss = penalty()
    with ConvolutionKernels() as seen:
        loss.backward()
    return seen.sides


@pytest.mark.parametrize("resample", [stylegan2_layers.upsample2d, stylegan2_layers.downsample2d])
def test_a_fixed_filter_costs_no_feature_map_sized_kernel_twice_differentiated(resample):
    """torch's double-backward rule computes a convolution's weight gradient even for a weight that needs none,
    for a depthwise one group by group, with the feature map as kernel: on an H200 that unused gradient of the
    resampling filter was 14 of the 15 s of the 1024 px path-length pass. conv_gradfix skips it."""
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    f = stylegan2_layers.fir_filter()

    def penalty():
        (g,) = torch.autograd.grad(resample(x, f).square().sum(), x, create_graph=True)
        return g.square().sum()

    sides = second_backward_kernels(penalty)
    assert sides and max(sides) == f.shape[-1]


def test_stylegan2s_regularizers_run_every_convolution_on_small_kernels():
    """The path-length pass of G and R1 through ADA of D, at 32 px: every convolution in their second backward
    has a kernel of at most the resampling filter's 4 px (a learned 3x3, a 1x1, the filter); none with a
    feature map as kernel. A layer that calls F.conv2d directly fails this."""
    torch.manual_seed(0)
    cfg = ModelConfig(family="stylegan2", latent_dim=8,
                      stylegan2=StyleGAN2Config(w_dim=8, mapping_layers=2, channel_base=128, channel_max=16))
    g, d = build_generator(cfg, (3, 32, 32)), build_discriminator(cfg, (3, 32, 32))
    ada = AdaPipeline(["blit", "geom", "color"])

    def path_length():
        ws = g.mapping(torch.randn(2, 8))
        images = g.synthesis(ws, "random")
        return path_lengths(images, ws, path_length_noise(images)).mean()

    def r1():
        return R1().penalty(lambda reals: d(ada(reals, 0.5)), torch.rand(2, 3, 32, 32) * 2 - 1)

    for penalty in (path_length, r1):
        sides = second_backward_kernels(penalty)
        assert len(sides) > 10 and max(sides) <= 4, (penalty.__name__, sorted(set(sides)))

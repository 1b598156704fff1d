"""Released super-resolution generators' parameter names, and how they map onto distgan's families.

ESRGAN, Real-ESRGAN and BasicSR publish their generators as state dicts; the
same RRDBNet comes in three spellings, all mapped here onto ``distgan.models.rrdb``:

* ``basicsr``: BasicSR's and Real-ESRGAN's RRDBNet (``conv_first``,
  ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``,
  ``conv_hr``, ``conv_last``): distgan's own names.
* ``esrgan``: the ESRGAN repository's later RRDBNet (``RRDB_trunk.N.RDB1.conv1``,
  ``trunk_conv``, ``upconv1``, ``upconv2``, ``HRconv``).
* ``esrgan-old``: the ESRGAN repository's first release, one ``nn.Sequential``
  (``model.0`` the first conv, ``model.1.sub.N.RDB1.conv1.0`` the dense blocks,
  ``model.1.sub.{blocks}`` the trunk conv, then per x2 stage (upsample, conv,
  LeakyReLU) so the up-convs are ``model.3``, ``model.6`` (``model.9`` at x8), then
  ``model.{3n+2}`` the HR conv and ``model.{3n+4}`` the last conv, n the stages).

The functions map in one direction, distgan name -> published name: the
architecture is inferred from the file (width, blocks, growth, stages), distgan's
module built, and every one of its parameters looked up under its published name,
so a missing, extra or wrongly shaped tensor is named as the file names it.

Known layouts that cannot run here are recognised and refused with the reason:
BasicSR's MSRResNet (``upconv1`` over ``body.N.conv1``: a different network from
distgan's SRResNet) and Real-ESRGAN's pixel-unshuffle models (x2plus).

The value range. Published generators map RGB in [0, 1] to [0, 1]; distgan's map
[-1, 1] to [-1, 1]. The change is folded into the first and last convs (both
affine: x01 = (x + 1) / 2 in, y = 2 y01 - 1 out), so the imported G is an
ordinary distgan G that training, ``upscale`` and ``evaluate`` use as is. One
thing does not fold: the first conv's zero padding pads with black in [0, 1],
but 0 is mid-grey in [-1, 1]. So the generator's description records
``first_conv_pad: -1`` (black), and ``load_generator`` pads that conv's input with
it (:func:`pad_first_conv`): outputs then equal the published network's
everywhere, to float rounding. (Left alone, the grey padding changed outputs by
up to 0.09 within 8 px of the border in a test with random weights.)
``train.init_from`` loads the tensors alone, so fine-tuning trains with
distgan's zero padding, which it adapts to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from distgan.config import ConfigError


BLACK = -1.0
"""Black in distgan's range: what published RRDBNets' zero padding is, recorded as ``first_conv_pad``."""


@dataclass(frozen=True)
class Architecture:
    """What the tensor shapes say about an RRDBNet: enough to build distgan's."""

    channels: int
    width: int
    blocks: int
    growth: int
    stages: int
    """x2 upsampling stages: scale = 2 ** stages."""

    @property
    def scale(self) -> int:
        return 2 ** self.stages


@dataclass(frozen=True)
class Layout:
    name: str
    family: str
    title: str
    markers: tuple[str, ...]
    """Keys that all appear in a file of this layout (and together in no other)."""
    block_pattern: str = ""
    """A regex whose group 1 is the RRDB index, on the first dense conv's weight."""
    published_name: Optional[Callable[[str, Architecture], str]] = None
    """distgan parameter name -> this layout's name; None: recognised but refused (``refusal``)."""
    refusal: str = ""


_DENSE = re.compile(r"body\.(\d+)\.rdb([123])\.conv([1-5])\.(weight|bias)$")


def _basicsr_name(key: str, arch: Architecture) -> str:
    return key


def _esrgan_name(key: str, arch: Architecture) -> str:
    dense = _DENSE.match(key)
    if dense:
        return "RRDB_trunk.{}.RDB{}.conv{}.{}".format(*dense.groups())
    head, _, kind = key.rpartition(".")
    renamed = {"conv_body": "trunk_conv", "conv_hr": "HRconv"}.get(head)
    if renamed is None and head.startswith("conv_up"):
        renamed = "upconv" + head.removeprefix("conv_up")
    return f"{renamed or head}.{kind}"


def _esrgan_old_name(key: str, arch: Architecture) -> str:
    dense = _DENSE.match(key)
    if dense:
        return "model.1.sub.{}.RDB{}.conv{}.0.{}".format(*dense.groups())
    head, _, kind = key.rpartition(".")
    n = arch.stages
    if head.startswith("conv_up"):
        return f"model.{3 * int(head.removeprefix('conv_up'))}.{kind}"
    index = {"conv_first": "0", "conv_body": f"1.sub.{arch.blocks}", "conv_hr": str(3 * n + 2),
             "conv_last": str(3 * n + 4)}[head]
    return f"model.{index}.{kind}"


LAYOUTS = (
    Layout("basicsr", "rrdb", "BasicSR/Real-ESRGAN RRDBNet", ("conv_first.weight", "body.0.rdb1.conv1.weight"),
           r"body\.(\d+)\.rdb1\.conv1\.weight$", _basicsr_name),
    Layout("esrgan", "rrdb", "ESRGAN RRDBNet", ("conv_first.weight", "RRDB_trunk.0.RDB1.conv1.weight"),
           r"RRDB_trunk\.(\d+)\.RDB1\.conv1\.weight$", _esrgan_name),
    Layout("esrgan-old", "rrdb", "ESRGAN (first release) RRDBNet",
           ("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"),
           r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight$", _esrgan_old_name),
    Layout("basicsr-msrresnet", "srresnet", "BasicSR MSRResNet",
           ("conv_first.weight", "body.0.conv1.weight", "upconv1.weight"),
           refusal="BasicSR's MSRResNet is another network than distgan's srresnet: it has no long skip around "
                   "its residual blocks (distgan adds conv_body's output to the first features), a conv_hr "
                   "before conv_last (distgan has none), LeakyReLU(0.1) and ReLU activations (distgan: PReLU), "
                   "and a bilinear skip (distgan: bicubic); its weights would compute something else here"),
)


def detect(state: Mapping[str, object], path: str) -> Layout:
    """The layout whose marker keys ``state`` holds; ConfigError naming the first keys otherwise."""
    for layout in LAYOUTS:
        if all(k in state for k in layout.markers):
            return layout
    first = ", ".join(list(state)[:4]) or "none"
    known = "; ".join(f"{layout.name} ({', '.join(layout.markers)})" for layout in LAYOUTS)
    raise ConfigError(f"{path}: unknown key layout (first keys: {first}); distgan reads these layouts, "
                      f"recognised by their keys: {known}")


def _tensor(state: Mapping[str, object], key: str, path: str, dims: int) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor) or value.dim() != dims:
        found = "missing" if value is None else (f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                                                 else f"a {type(value).__name__}")
        raise ConfigError(f"{path}: {key} is {found}; expected a {dims}-d tensor")
    return value


def infer(state: Mapping[str, object], layout: Layout, path: str) -> Architecture:
    """Width, blocks, growth and stages from the tensors' shapes and the keys' numbering."""
    first = _tensor(state, layout.markers[0], path, 4)
    dense = _tensor(state, layout.markers[1], path, 4)
    blocks = 1 + max(int(m.group(1)) for m in map(re.compile(layout.block_pattern).match, state) if m)
    if layout.name == "esrgan-old":
        # The Sequential's last index is the last conv: 3 * stages + 4.
        top = max(int(m.group(1)) for m in map(re.compile(r"model\.(\d+)\.weight$").match, state) if m)
        if top < 7 or (top - 4) % 3:
            raise ConfigError(f"{path}: its last layer is model.{top}, which no x2, x4 or x8 ESRGAN has "
                              f"(model.7, model.10 or model.13)")
        stages = (top - 4) // 3
    else:
        up = "conv_up" if layout.name == "basicsr" else "upconv"
        stages = sum(1 for k in state if re.fullmatch(rf"{up}\d+\.weight", k))
    return Architecture(channels=first.shape[1], width=first.shape[0], blocks=blocks, growth=dense.shape[0],
                        stages=stages)


def check_runnable(arch: Architecture, state: Mapping[str, object], layout: Layout, path: str,
                   scale: Optional[int]) -> None:
    """Refuse, with the reason, a network distgan's RRDBNet cannot compute."""
    last_key = layout.published_name("conv_last.weight", arch)
    out_channels = _tensor(state, last_key, path, 4).shape[0]
    first_key = layout.markers[0]
    if arch.channels in (4 * out_channels, 16 * out_channels):
        factor = 2 if arch.channels == 4 * out_channels else 4
        raise ConfigError(
            f"{path}: {first_key} takes {arch.channels} input channels for {out_channels}-channel images: a "
            f"pixel-unshuffle model (Real-ESRGAN's x{4 // factor}plus: the input is pixel-unshuffled by "
            f"{factor}, then upscaled x4 by two stages); distgan's rrdb at x{4 // factor} has "
            f"{'one nearest x2 stage' if factor == 2 else 'no such stage'} and no unshuffle, so it cannot run "
            f"this model")
    if arch.channels != out_channels or arch.channels not in (1, 3):
        raise ConfigError(f"{path}: {first_key} takes {arch.channels} channels and {last_key} gives "
                          f"{out_channels}; distgan's generators map 1- or 3-channel images to the same channels")
    if arch.stages not in (1, 2, 3):
        raise ConfigError(f"{path}: {arch.stages} upsampling stages (x{arch.scale}); distgan's rrdb upscales "
                          f"x2, x4 or x8")
    if scale is not None and scale != arch.scale:
        raise ConfigError(f"--scale {scale}: {path} upscales x{arch.scale} ({arch.stages} x2 stages); leave "
                          f"--scale out or import a x{scale} model")


def distgan_names(expected: Mapping[str, torch.Tensor], layout: Layout, arch: Architecture) -> dict[str, str]:
    """Published name -> distgan name for every parameter of distgan's module."""
    return {layout.published_name(k, arch): k for k in expected}


@torch.no_grad()
def fold_value_range(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make a [0, 1] -> [0, 1] RRDBNet's weights (distgan names) compute the same on [-1, 1] (see the module
    docstring; fp32 out, computed in float64)."""
    out = {k: v.detach().to(torch.float64) for k, v in state.items()}
    w, b = out["conv_first.weight"], out["conv_first.bias"]
    # conv(W, (x + 1) / 2) + b = conv(W / 2, x) + (b + sum(W) / 2): the constant half of every tap folds in.
    out["conv_first.weight"], out["conv_first.bias"] = w / 2, b + w.sum(dim=(1, 2, 3)) / 2
    w, b = out["conv_last.weight"], out["conv_last.bias"]
    out["conv_last.weight"], out["conv_last.bias"] = 2 * w, 2 * b - 1  # y = 2 y01 - 1
    return {k: v.to(torch.float32).contiguous() for k, v in out.items()}


class _PadInput:
    """A forward pre-hook: pad a conv's input with a constant (picklable, unlike a lambda)."""

    def __init__(self, pad: tuple[int, int], value: float):
        self.pad, self.value = pad, value

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        ph, pw = self.pad
        return (F.pad(args[0], (pw, pw, ph, ph), value=self.value), *args[1:])


def pad_first_conv(module: nn.Module, value: float) -> nn.Module:
    """Make ``module.conv_first`` pad its input with ``value`` instead of zeros; the weights, their names and
    the output size stay as they are."""
    conv = module.conv_first
    pad, conv.padding = tuple(conv.padding), (0, 0)
    conv.register_forward_pre_hook(_PadInput(pad, float(value)))
    return module

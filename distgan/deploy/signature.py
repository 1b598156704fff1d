"""What an exported generator takes and returns: a small wrapper module with named inputs, and the inputs
it is traced and checked on.

The wrapper follows the models' contract (``distgan.models``), not a list of families, so a newly
registered family exports without an edit here:

* a generator with ``latent_dim`` samples: ``forward(z)`` -> ``[N, *data_shape]`` (images clamped to [-1, 1]);
  one that also has ``num_classes`` is conditional: ``forward(z, labels)`` with int64 class indices;
* any other generator maps an image to an image (``[N, C, h, w]`` -> ``[N, C, h*s, w*s]``): ``forward(lr)``,
  with height and width dynamic as well as the batch.

This is the contract ``distgan.persist.export.generate`` samples by, so export and ``distgan sample`` agree.
A generator with per-pixel noise (a ``noise_mode`` attribute, as StyleGAN2's) is exported with its saved
constant noise (``NOISE_MODE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

TRACE_BATCH = 2
"""The batch the graph is traced at: not 1, which torch.export would specialize as a constant (its 0/1
rule), and not a check batch, so the check proves the batch axis is really dynamic."""
TRACE_SIDE = (10, 12)
"""The low-resolution (height, width) an image-to-image generator is traced at; non-square, so a swapped
axis cannot pass the check, and unlike either check size."""
NOISE_MODE = "const"
"""How a generator with a ``noise_mode`` is exported: with the noise buffer saved in its weights. Random noise
would make each run of the file differ from PyTorch's (no check could pass) and from its own last run;
StyleGAN2's own generate.py offers ``const`` for the same reproducibility."""
CHECK_BATCHES = (1, 3)
CHECK_SIDES = ((8, 6), (13, 11))
"""The check runs the export at each of these batches (and, for image inputs, each of these sizes)."""


class Wrapper(nn.Module):
    """A generator behind named inputs. Images leave clamped to [-1, 1], the range the description states
    and ``distgan sample``/``upscale`` write: a style-based G's or an upscaler's last layer is linear and
    overshoots a little, which a consumer converting straight to 8 bits would wrap around. Other samples
    (2-D points) leave as they are."""

    def __init__(self, generator: nn.Module, images: bool):
        super().__init__()
        self.generator, self.images = generator, images

    def bounded(self, out: torch.Tensor) -> torch.Tensor:
        return out.clamp(-1, 1) if self.images else out


class Sampler(Wrapper):
    """``forward(z)`` -> samples."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bounded(self.generator(z))


class ConditionalSampler(Wrapper):
    """``forward(z, labels)`` -> samples of those classes."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bounded(self.generator(z, labels))


class Upscaler(Wrapper):
    """``forward(lr)`` -> the super-resolved image."""

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.bounded(self.generator(lr))


@dataclass(frozen=True)
class Signature:
    """A wrapped generator and how to feed it."""

    module: nn.Module
    """The wrapper in eval mode: what is traced and what the export is compared with."""
    inputs: tuple[str, ...]
    """Input names, in ``forward``'s order (also the ONNX graph's input names)."""
    output: str
    """The ONNX graph's output name: ``image`` for image outputs, ``sample`` for others (e.g. 2-D points)."""
    dynamic: dict[str, dict[int, str]]
    """Per input: axis -> name of each dynamic axis."""
    latent_dim: Optional[int]
    num_classes: int
    channels: int
    """Input channels of an image-to-image generator (0 for samplers)."""
    noise_mode: Optional[str] = None
    """``NOISE_MODE`` for a generator with per-pixel noise, else None."""

    def example(self, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Inputs at the trace shape."""
        return self.random(TRACE_BATCH, TRACE_SIDE, generator)

    def checks(self, generator: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
        """Inputs at every check batch (each with its own image size for image inputs)."""
        return [self.random(n, side, generator) for n, side in zip(CHECK_BATCHES, CHECK_SIDES)]

    def random(self, n: int, side: tuple[int, int], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        if self.latent_dim is None:
            # Uniform over the whole [-1, 1] image range that G was trained on.
            return (torch.rand(n, self.channels, *side, generator=generator) * 2 - 1,)
        z = torch.randn(n, self.latent_dim, generator=generator)
        if not self.num_classes:
            return (z,)
        return z, torch.randint(0, self.num_classes, (n,), generator=generator)


def signature(generator: nn.Module, data_shape: tuple[int, ...]) -> Signature:
    """The wrapper and inputs for a generator as ``distgan.persist.export.load_generator`` returns it (whose
    ``noise_mode``, where it has one, is set to ``NOISE_MODE``)."""
    noise_mode = None
    if hasattr(generator, "noise_mode"):
        generator.noise_mode = noise_mode = NOISE_MODE
    latent_dim = getattr(generator, "latent_dim", None)
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    images = len(data_shape) == 3
    output = "image" if images else "sample"
    if latent_dim is None:
        return Signature(Upscaler(generator, images).eval(), ("lr",), output,
                         {"lr": {0: "batch", 2: "height", 3: "width"}}, None, 0, int(data_shape[0]), noise_mode)
    if num_classes:
        return Signature(ConditionalSampler(generator, images).eval(), ("z", "labels"), output,
                         {"z": {0: "batch"}, "labels": {0: "batch"}}, int(latent_dim), num_classes, 0, noise_mode)
    return Signature(Sampler(generator, images).eval(), ("z",), output, {"z": {0: "batch"}}, int(latent_dim), 0, 0,
                     noise_mode)

"""The ``augment`` section of the config tree (a part of ``distgan.config.schema``, kept apart for its size):
what is done to D's inputs. Two alternatives: DiffAugment's fixed policy (``augment.policy``) or adaptive
discriminator augmentation (``augment.ada``, Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"). A docstring per field, as everywhere in the tree.

The operations themselves are in ``distgan.gan.augment`` (DiffAugment) and ``distgan.gan.ada`` (ADA); the
names of ADA's operations and groups live here, so a misspelt one is refused before anything starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from distgan.config.errors import ConfigError

ADA_GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "cutout": ("cutout",),
}
"""ADA's groups of operations (its ``augpipe_specs``: ``bgc`` is blit, geom and color), each in the order the
pipeline applies them; the groups too are applied in this order."""

ADA_OPS: tuple[str, ...] = tuple(op for ops in ADA_GROUPS.values() for op in ops)
"""Every operation of the pipeline, in the order it is applied."""


@dataclass
class AdaConfig:
    enabled: bool = False
    """Adaptive discriminator augmentation (ADA) of every D input: each operation of ``pipeline`` is applied
    to each sample with probability ``p``, and p follows D's overfitting (``target``). The alternative to
    ``augment.policy``; set one of them."""
    pipeline: list[str] = field(default_factory=lambda: ["blit", "geom", "color"])
    """Groups (``blit``: x-flip, 90-degree rotations, integer translation; ``geom``: isotropic scaling,
    rotation, anisotropic scaling, fractional translation; ``color``: brightness, contrast, luma flip, hue,
    saturation; ``cutout``) or single operations (e.g. ``xflip``) to apply, always in that order whatever the
    list's. The default is ADA's ``bgc``, the paper's best on its data sets."""
    adaptive: bool = True
    """Adjust p from D's overfitting signal; false keeps it at ``p`` (ADA's ``--aug=fixed``)."""
    p: float = 0.0
    """The probability p at the start of a run, in [0, 1] (ADA starts at 0). A resumed run continues from the
    checkpoint's p."""
    target: float = 0.6
    """The overfitting signal r_t = E[sign D(real)] (metric ``d_real_sign``) that p is steered to: above it p
    rises, below it p falls. ADA's default 0.6. In [0, 1)."""
    interval: int = 4
    """D steps between adjustments of p, r_t being measured over them on every rank together (ADA: 4)."""
    ada_kimg: float = 500.0
    """Adjustment speed: thousands of real images (global) for p to move by 1. Each adjustment moves p by the
    images D saw since the last one over ``ada_kimg`` * 1000 (ADA's ``ada_kimg``, default 500)."""
    xint_max: float = 0.125
    """Integer translation: at most this fraction of the image size each way (ADA's ``xint_max`` 0.125)."""
    scale_std: float = 0.2
    """Isotropic scaling: log2 of the factor is normal with this std (ADA's ``scale_std`` 0.2)."""
    rotate_max: float = 1.0
    """Rotation: the angle is uniform within +-``rotate_max`` half-turns, 1 being any angle (ADA's ``rotate_max``
    1); applied before and after the anisotropic scaling, each with the probability that makes either p."""
    aniso_std: float = 0.2
    """Anisotropic scaling: log2 of the x factor (y gets its inverse) is normal with this std (ADA's 0.2)."""
    xfrac_std: float = 0.125
    """Fractional translation: normal with this std as a fraction of the image size (ADA's ``xfrac_std``)."""
    brightness_std: float = 0.2
    """Brightness: a per-sample offset, normal with this std, on images in [-1, 1] (ADA's 0.2)."""
    contrast_std: float = 0.5
    """Contrast: log2 of the factor is normal with this std (ADA's ``contrast_std`` 0.5)."""
    hue_max: float = 1.0
    """Hue rotation about the grey axis: uniform within +-``hue_max`` half-turns (ADA's ``hue_max`` 1); RGB only."""
    saturation_std: float = 1.0
    """Saturation: log2 of the factor is normal with this std (ADA's ``saturation_std`` 1); RGB only."""
    cutout_size: float = 0.5
    """Cutout: side of the zeroed square as a fraction of the image size (ADA's ``cutout_size`` 0.5)."""


STRENGTHS = ("xint_max", "scale_std", "rotate_max", "aniso_std", "xfrac_std", "brightness_std", "contrast_std",
             "hue_max", "saturation_std")
"""AdaConfig's strengths that are any finite value >= 0."""


@dataclass
class AugmentConfig:
    policy: str = ""
    """DiffAugment (Zhao et al. 2020) of D's inputs, comma-separated (``color``, ``translation``, ``cutout``);
    empty for none. Meant for small image data sets; reals and fakes get the same treatment. The fixed
    alternative to ``augment.ada``."""
    ada: AdaConfig = field(default_factory=AdaConfig)
    """Adaptive discriminator augmentation (ADA)."""


def check_augment(aug: AugmentConfig) -> None:
    """What the config alone decides about ``augment``; each error names its key."""
    ada = aug.ada
    if ada.enabled and aug.policy.strip():
        raise ConfigError(f"augment.ada.enabled, augment.policy: set one augmentation, not both (ADA is on and "
                          f"the DiffAugment policy is {aug.policy!r}); set augment.policy='' or "
                          f"augment.ada.enabled=false")
    unknown = [name for name in ada.pipeline if name not in ADA_GROUPS and name not in ADA_OPS]
    if unknown:
        raise ConfigError(f"augment.ada.pipeline: unknown {', '.join(map(repr, unknown))}; groups are "
                          f"{', '.join(ADA_GROUPS)}, operations {', '.join(ADA_OPS)}")
    if ada.enabled and not ada.pipeline:
        raise ConfigError("augment.ada.pipeline: empty, so ADA would change nothing; name groups or operations, "
                          "e.g. [blit, geom, color]")
    if not 0 <= ada.p <= 1:  # written so that nan fails too
        raise ConfigError(f"augment.ada.p: a probability, must be in [0, 1], got {ada.p!r}")
    if not 0 <= ada.target < 1:
        raise ConfigError(f"augment.ada.target: must be in [0, 1) (E[sign D(real)] is at most 1), got "
                          f"{ada.target!r}")
    if ada.interval < 1:
        raise ConfigError(f"augment.ada.interval: must be >= 1 D step, got {ada.interval!r}")
    if not 0 < ada.ada_kimg < math.inf:
        raise ConfigError(f"augment.ada.ada_kimg: must be > 0 and finite, got {ada.ada_kimg!r}")
    for name in STRENGTHS:
        value = getattr(ada, name)
        if not 0 <= value < math.inf:
            raise ConfigError(f"augment.ada.{name}: must be >= 0 and finite, got {value!r}")
    if not 0 <= ada.cutout_size <= 1:
        raise ConfigError(f"augment.ada.cutout_size: a fraction of the image size, must be in [0, 1], got "
                          f"{ada.cutout_size!r}")

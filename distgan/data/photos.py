"""``data.name: photos``: real photographs that ship inside scikit-image and scikit-learn, so super-resolution
runs offline (the super-resolution task's data module, ``distgan.tasks.super_resolution.data``, cuts them into
training crops and validation pairs).

The set holds high-resolution images to be paired with their low-resolution versions, not samples of a
distribution: its registry entry exists so that ``data.name`` knows the name, and its ``load`` refuses a
generation model by name.
"""

from __future__ import annotations

import numpy as np

from distgan.config import ConfigError, DataConfig
from distgan.data.packaged import sklearn_photo
from distgan.data.source import DATASETS, Dataset, Source

TRAINING = ("astronaut", "chelsea", "retina", "hubble_deep_field", "immunohistochemistry", "china", "camera", "moon",
            "brick", "grass", "gravel", "coins", "clock")
"""Colour photos (skimage; china from sklearn) and grey ones as R = G = B for texture."""
VALIDATION = ("coffee", "rocket", "flower")
"""Never trained on."""
MIN_SIDE = 300
"""Shortest side among the training photos (chelsea, clock), so ``check`` needs to load none of them."""
SR_DATASETS = frozenset({"photos"})
"""Built-in data sets that only super-resolution families can use."""


def check(cfg: DataConfig) -> None:
    """The high-resolution crop fits every training photo; loads none of them."""
    if not 1 <= cfg.resolution <= MIN_SIDE:
        raise ConfigError(f"data.resolution: photos' smallest training photo is {MIN_SIDE} px on its short "
                          f"side, so the high-resolution crop must be at most {MIN_SIDE}, got "
                          f"{cfg.resolution}")


def read(name: str) -> np.ndarray:
    """One photo as HxWxC (or HxW for grey) uint8."""
    if name in ("china", "flower"):
        return sklearn_photo(name)
    import skimage.data  # imported late: slow, and only photos needs it

    return getattr(skimage.data, name)()


def _as_samples(cfg: DataConfig) -> Dataset:
    raise ConfigError("data.name: photos is a super-resolution data set (pairs of low- and high-resolution "
                      "crops); use it with model.family srresnet or rrdb, or train a generation model on digits, "
                      "ring8 or a data.path folder")


DATASETS.register("photos")(Source(shape=lambda cfg: (cfg.channels, cfg.resolution, cfg.resolution),
                                   check=check, load=_as_samples))

"""Data files that ship inside installed packages (scikit-learn's handwritten digits and sample photos), found
and read without importing the package that holds them.

``import sklearn`` alone takes 2.5-3.5 s here (it pulls in SciPy), and every training worker would pay it at
every start, restarts included, to read a 25 KB CSV. The files' layout is scikit-learn's own
(``sklearn/datasets/data/digits.csv.gz``: 64 pixel columns then the label; ``sklearn/datasets/images/*.jpg``),
the same since its 0.x releases; a test compares what is read here with scikit-learn's loaders.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from distgan.config import ConfigError

PIP_NAMES = {"sklearn": "scikit-learn"}


def package_file(package: str, *parts: str) -> Path:
    """The path of a file inside an installed package, found without executing the package's ``__init__``."""
    spec = importlib.util.find_spec(package)  # a top-level name: finds, imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data.name: the built-in data ships inside {package}, which is not installed "
                          f"(pip install {PIP_NAMES.get(package, package)})")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise ConfigError(f"data.name: {path} is missing from the installed {package}; reinstall it "
                          f"(pip install --force-reinstall {PIP_NAMES.get(package, package)})")
    return path


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits: images [N, 8, 8] float64 in 0..16 and labels [N] int64."""
    with gzip.open(package_file("sklearn", "datasets", "data", "digits.csv.gz"), "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def sklearn_photo(name: str) -> np.ndarray:
    """One of scikit-learn's sample photos (``china``, ``flower``) as HxWx3 uint8."""
    from PIL import Image  # only super-resolution's photos need it, not the digits every worker reads

    with Image.open(package_file("sklearn", "datasets", "images", f"{name}.jpg")) as image:
        return np.asarray(image)

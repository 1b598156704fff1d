"""Distances between two sets of features: FID, KID and improved precision/recall.

Pure functions on ``[N, D]`` feature arrays; which network produced the
features is the caller's business (``distgan.metrics.features``). Everything is
computed in float64: FID subtracts traces of similar size, and float32 loses
the digits that separate two good generators.

- FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to the
  two sets. The matrix square root is taken as the eigenvalues of
  ``sqrt(S1) S2 sqrt(S1)``, which is symmetric positive semi-definite, so a
  rank-deficient covariance (fewer samples than dimensions) gives a finite,
  real value instead of the complex noise of ``sqrtm(S1 @ S2)``.
- KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel,
  averaged over random subsets; about 0 for two samples of one distribution.
- Precision/recall (Kynkäänniemi et al. 2019): the share of one set inside the
  other's k-nearest-neighbour balls.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_float64(features: ArrayLike, name: str) -> np.ndarray:
    array = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) \
        else np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected features of shape [N, D], got {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: features hold NaN or inf; the generator or the feature network diverged")
    return array


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance (N - 1 normalised) of a feature set, as FID uses them."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def of(cls, features: ArrayLike, name: str = "features") -> "GaussianStats":
        f = _as_float64(features, name)
        if len(f) < 2:
            raise ValueError(f"{name}: FID needs at least 2 samples, got {len(f)}")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]), len(f))


def warn_if_few_samples(count: int, dim: int, metric: str = "FID") -> None:
    """FID from fewer samples than feature dimensions is biased upwards and noisy."""
    if count < dim:
        warnings.warn(f"{metric} from {count} samples of {dim}-dimensional features: the covariance is "
                      f"rank-deficient and the value is biased upwards; use at least {dim} samples "
                      f"(published FIDs use 50,000) and compare only values computed with the same count",
                      RuntimeWarning, stacklevel=2)


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """``|mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½)``."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    diff = a.mu - b.mu
    # Tr((S_a S_b)^½) = Σ sqrt(λ) over the eigenvalues of S_a^½ S_b S_a^½ (same spectrum, but symmetric).
    vals, vecs = np.linalg.eigh(a.sigma)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = root_a @ b.sigma @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def fid(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """FID between two feature sets ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(GaussianStats.of(features_a, "features_a"), GaussianStats.of(features_b, "features_b"))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(u, v) = (u·v / D + 1)³ (diagonal terms left out)."""
    m, dim = len(x), x.shape[1]
    k_xx = (x @ x.T / dim + 1) ** 3
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


@dataclass(frozen=True)
class KID:
    mean: float
    std: float
    subsets: int
    subset_size: int


def kid(features_a: ArrayLike, features_b: ArrayLike, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> KID:
    """Kernel Inception Distance: unbiased MMD² averaged over ``subsets`` random subsets.

    The subset size is capped at the smaller set (with a warning), as in the
    reference implementations; KID from tiny subsets is very noisy.
    """
    a, b = _as_float64(features_a, "features_a"), _as_float64(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(a)} and {len(b)}")
    if size < subset_size:
        warnings.warn(f"KID subset size {subset_size} is larger than the sample sets ({len(a)}, {len(b)}); "
                      f"using {size}", RuntimeWarning, stacklevel=2)
    rng = np.random.default_rng(seed)
    values = np.array([_polynomial_mmd2(a[rng.choice(len(a), size, replace=False)],
                                        b[rng.choice(len(b), size, replace=False)]) for _ in range(subsets)])
    return KID(float(values.mean()), float(values.std()), subsets, size)


def _kth_neighbour_radii(points: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    # The (k+1)-th smallest distance, because each point is its own nearest neighbour.
    radii = [torch.cdist(chunk, points).kthvalue(k + 1, dim=1).values for chunk in points.split(batch)]
    return torch.cat(radii)


def _share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch: int) -> float:
    inside = [(torch.cdist(chunk, centres) <= radii[None, :]).any(dim=1) for chunk in queries.split(batch)]
    return float(torch.cat(inside).double().mean())


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    """Share of generated samples inside the real manifold (fidelity)."""
    recall: float
    """Share of real samples inside the generated manifold (diversity)."""


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3, batch: int = 4096) -> PrecisionRecall:
    """Improved precision and recall with k-nearest-neighbour manifolds."""
    r = torch.from_numpy(_as_float64(real, "real"))
    f = torch.from_numpy(_as_float64(fake, "fake"))
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    if min(len(r), len(f)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set, "
                         f"got {len(r)} real and {len(f)} generated")
    precision = _share_inside(f, r, _kth_neighbour_radii(r, k, batch), batch)
    recall = _share_inside(r, f, _kth_neighbour_radii(f, k, batch), batch)
    return PrecisionRecall(precision, recall)

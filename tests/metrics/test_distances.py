"""FID, KID and precision/recall against direct computations and hand-placed points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from distgan.metrics import distances


def gaussian(n: int, dim: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """n samples of one correlated Gaussian per ``dim`` (the seed draws the samples, not the distribution)."""
    mixing = np.eye(dim) + 0.3 * np.random.default_rng(dim).standard_normal((dim, dim))
    return shift + scale * np.random.default_rng(seed).standard_normal((n, dim)) @ mixing


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.5, 1.0), (0.0, 2.0), (1.0, 0.5)])
def test_fid_matches_a_direct_scipy_computation(shift, scale):
    a, b = gaussian(800, 24, 0), gaussian(700, 24, 1, shift, scale)
    assert distances.fid(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-9, abs=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_accepts_tensors():
    a = gaussian(500, 16, 3)
    assert abs(distances.fid(a, a)) < 1e-9
    assert distances.fid(torch.from_numpy(a).float(), torch.from_numpy(a).float()) < 1e-4


def test_fid_stays_finite_and_real_when_the_covariance_is_rank_deficient():
    # 40 samples of 64-d features: S is singular, where sqrtm(S_a S_b) turns complex and unstable.
    a, b = gaussian(40, 64, 4), gaussian(40, 64, 5, shift=0.2)
    value = distances.fid(a, b)
    assert np.isfinite(value) and value > 0
    assert distances.fid(a, a) < 1e-8


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    same = [distances.kid(gaussian(300, 16, 2 * s), gaussian(300, 16, 2 * s + 1), subsets=10, subset_size=300,
                          seed=s).mean for s in range(20)]
    shifted = distances.kid(gaussian(300, 16, 100), gaussian(300, 16, 101, shift=0.6), subsets=10,
                            subset_size=300).mean
    # Unbiased: the mean over independent pairs is within 3 standard errors of 0 (a biased estimator
    # that keeps the kernel's diagonal would sit far above), and well below a real difference.
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert shifted > 10 * np.std(same)


def test_kid_equals_the_mmd_written_out_with_loops():
    a, b = gaussian(6, 3, 7), gaussian(6, 3, 8, shift=0.4)
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    m = len(a)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    result = distances.kid(a, b, subsets=3, subset_size=6)  # subsets of the whole set: all equal
    assert result.mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and result.std < 1e-12


def test_kid_caps_the_subset_size_with_a_warning():
    with pytest.warns(RuntimeWarning, match="using 50"):
        result = distances.kid(gaussian(50, 4, 0), gaussian(80, 4, 1), subsets=2, subset_size=1000)
    assert result.subset_size == 50


def test_precision_recall_on_hand_placed_points():
    reals = np.arange(100, dtype=float)[:, None]  # a line; each real's 3rd-neighbour radius is <= 3
    fakes = np.concatenate([reals[::2], 1000 + 10 * np.arange(50, dtype=float)[:, None]])
    result = distances.precision_recall(reals, fakes, k=3)
    # Half the fakes lie on real points; the other half are hundreds away from every real ball.
    assert result.precision == 0.5
    # Every real is within 1 of an on-line fake, whose 3rd-neighbour radius among the fakes is 4.
    assert result.recall == 1.0
    same = distances.precision_recall(reals, reals, k=3)
    assert (same.precision, same.recall) == (1.0, 1.0)
    far = distances.precision_recall(reals, reals + 1e4, k=3)
    assert (far.precision, far.recall) == (0.0, 0.0)


def test_bad_features_are_named():
    a = gaussian(10, 4, 0)
    with pytest.raises(ValueError, match="NaN or inf"):
        distances.fid(a, np.full((10, 4), np.nan))
    with pytest.raises(ValueError, match="at least 2 samples"):
        distances.fid(a[:1], a)
    with pytest.raises(ValueError, match="dimensions differ"):
        distances.fid(a, gaussian(10, 5, 1))
    with pytest.raises(ValueError, match=r"shape \[N, D\]"):
        distances.fid(a[0], a)
    with pytest.raises(ValueError, match="more than 3 samples"):
        distances.precision_recall(a[:3], a, k=3)


def test_too_few_samples_for_the_feature_dimension_warns_what_to_do():
    with pytest.warns(RuntimeWarning, match="at least 128 samples"):
        distances.warn_if_few_samples(100, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distances.warn_if_few_samples(128, 128)

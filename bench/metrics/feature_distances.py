"""Distances between two sets of features: the Frechet distance (FID's) and the kernel distance (KID's).

Shared by the `fid` metric (Inception features, `bench.metrics.fid`) and `fd-digits` (a digits
classifier's features, `bench.metrics.fd_digits`); nothing here knows which network made the features.

  * Frechet distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
    Local Nash Equilibrium"): ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), the formula of
    clean-fid's `frechet_distance` (S1: samples, S2: reference), statistics as clean-fid computes them
    (float64 mean, `np.cov(rowvar=False)` with N - 1). tr((S1 S2)^(1/2)) is the sum of the square
    roots of the eigenvalues of the symmetric PSD matrix S2^(1/2) S1 S2^(1/2) (the same eigenvalues as
    S1 S2), from `numpy.linalg.eigh` with negative round-off eigenvalues clipped to 0, instead of
    clean-fid's `scipy.linalg.sqrtm(..., disp=False)`: S2^(1/2) is computed once per reference; it is
    well defined when S1 is singular; and it does not use the `disp` argument that SciPy 1.18 removes.
    It agrees with clean-fid's function to round-off (tests/metrics/test_fid.py pins the tolerance). With
    fewer samples than dimensions (S1 singular) `frechet_distance_features` takes the trace from the
    singular values of the [n, d] matrix (X - mean) S2^(1/2) / sqrt(n - 1) instead: the same number,
    ~n^2 d work instead of ~d^3, and no square roots of round-off zeros (which on the d x d route, as
    with clean-fid's sqrtm, leave an absolute error of the order of the round-off's square root).
  * Kernel distance (Binkowski et al. 2018, "Demystifying MMD GANs"): clean-fid's `kernel_distance`
    itself (unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over
    `num_subsets` random subsets of size m = min(n1, n2, `max_subset_size`); defaults 100 and 1000
    are clean-fid's), called on float64 features (clean-fid passes float32; in float64 the sums of
    the m^2 kernel values carry no float32 round-off) with numpy's global RNG seeded for the call and
    restored afterwards, so it is deterministic. `kernel_distance_subsets` returns
    the per-subset values whose mean `kernel_distance` reports (to round-off), for the report's
    interval over KID's subsets.
"""
from __future__ import annotations

import contextlib

import numpy as np


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of features [N, D] in float64, as clean-fid (np.cov, rowvar=False: N - 1)."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def psd_sqrt(sigma) -> np.ndarray:
    """The symmetric square root of a PSD matrix (eigh; negative round-off eigenvalues clipped to 0)."""
    sigma = np.asarray(sigma, np.float64)
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=None) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace via eigh (module docstring).

    `sqrt_sigma2`, if given, is `psd_sqrt(sigma2)` (a reference's, computed once and reused)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    if not (np.isfinite(mu1).all() and np.isfinite(s1).all() and np.isfinite(mu2).all() and np.isfinite(s2).all()):
        return float("nan")
    root2 = psd_sqrt(s2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
    inner = root2 @ s1 @ root2  # S2^(1/2) S1 S2^(1/2): PSD, same eigenvalues as S1 S2
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance_features(feats, mu2, sigma2, sqrt_sigma2=None) -> float:
    """`frechet_distance(*feature_stats(feats), mu2, sigma2)`, computed from the features [n, d] themselves.

    With fewer samples than dimensions (n - 1 < d: a few hundred samples in 2048-d) the covariance S1 =
    X^T X / (n - 1) of the centred features X has rank < d, and the nonzero eigenvalues of
    S2^(1/2) S1 S2^(1/2) are the squared singular values of Y = X S2^(1/2) / sqrt(n - 1) [n, d]; so
    tr((S1 S2)^(1/2)) is the sum of Y's singular values (an n x d SVD instead of a d x d eigenproblem:
    ~n^2 d instead of ~d^3 work, and no square roots of round-off zeros). Otherwise the statistics
    route. Both give the same number (tests)."""
    feats = np.asarray(feats, dtype=np.float64)
    n, d = feats.shape
    if n < 2:
        raise ValueError("frechet_distance_features needs at least 2 feature vectors")
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    if n - 1 >= d or not np.isfinite(feats).all():
        return frechet_distance(*feature_stats(feats), mu2, sigma2, sqrt_sigma2)
    s2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu2.shape != (d,) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance_features: features have {d} dimensions, the reference {mu2.shape}")
    root2 = psd_sqrt(s2) if sqrt_sigma2 is None else np.asarray(sqrt_sigma2, np.float64)
    mu1 = feats.mean(axis=0)
    centred = feats - mu1
    y = centred @ root2 / np.sqrt(n - 1)
    tr_covmean = float(np.linalg.svd(y, compute_uv=False).sum())
    tr_s1 = float(np.einsum("ij,ij->", centred, centred) / (n - 1))
    diff = mu1 - mu2
    return float(diff @ diff + tr_s1 + np.trace(s2) - 2.0 * tr_covmean)


def kernel_distance(feats1: np.ndarray, feats2: np.ndarray, seed: int, num_subsets: int = 100,
                    max_subset_size: int = 1000) -> float:
    """clean-fid's `kernel_distance` (KID) on float64 features, with numpy's global RNG seeded by `seed`
    for the call and restored afterwards (clean-fid draws its subsets from `np.random.choice`)."""
    from cleanfid.fid import kernel_distance as cleanfid_kernel_distance

    feats1, feats2 = _kid_features(feats1, feats2, max_subset_size)
    with _seeded_global_numpy(seed):
        return float(cleanfid_kernel_distance(feats1, feats2, num_subsets=num_subsets, max_subset_size=max_subset_size))


def _kid_features(feats1, feats2, max_subset_size: int) -> tuple[np.ndarray, np.ndarray]:
    feats1 = np.asarray(feats1, dtype=np.float64)
    feats2 = np.asarray(feats2, dtype=np.float64)
    if min(feats1.shape[0], feats2.shape[0], max_subset_size) < 2:
        raise ValueError("kernel_distance needs at least 2 features in each set")
    return feats1, feats2


@contextlib.contextmanager
def _seeded_global_numpy(seed: int):
    """numpy's global RNG seeded for the block, its previous state restored afterwards."""
    state = np.random.get_state()
    try:
        np.random.seed(int(seed) % 2**32)
        yield
    finally:
        np.random.set_state(state)


def kernel_distance_subsets(feats1: np.ndarray, feats2: np.ndarray, seed: int, num_subsets: int = 100,
                            max_subset_size: int = 1000) -> np.ndarray:
    """The `num_subsets` per-subset KID values whose mean `kernel_distance` reports (to round-off):
    clean-fid's `kernel_distance` called once per subset, with one subset each, after seeding numpy's
    global RNG once as `kernel_distance` does, so subset i draws the same reference and sample indices
    as subset i of the averaged call. Every method of a sweep shares the metric seed and the sample
    count, so subset i is the same choice of priors for all of them: the vectors are paired."""
    from cleanfid.fid import kernel_distance as cleanfid_kernel_distance

    feats1, feats2 = _kid_features(feats1, feats2, max_subset_size)
    with _seeded_global_numpy(seed):
        return np.array([cleanfid_kernel_distance(feats1, feats2, num_subsets=1, max_subset_size=max_subset_size)
                         for _ in range(num_subsets)], dtype=np.float64)


__all__ = ["feature_stats", "frechet_distance", "frechet_distance_features", "kernel_distance",
           "kernel_distance_subsets", "psd_sqrt"]

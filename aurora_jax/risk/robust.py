"""Robust location and scatter for contaminated return data.

* Median of means: split the (randomly permuted) rows into ``k`` blocks; the estimate is
  the coordinate-wise median of the block means. For scatter, the element-wise median of
  the block covariances, made PSD by eigenvalue clipping. Deviation ``O(sigma sqrt(k/n))``
  with probability ``1 - exp(-k/8)`` even under heavy tails; up to ``k/2 - 1`` corrupted
  blocks are tolerated.
* Catoni's M-estimator: ``theta`` solves ``sum_i psi(a (x_i - theta)) = 0`` with the
  influence function ``psi(z) = sign(z) log(1 + |z| + z^2/2)`` and
  ``a = sqrt(2 log(1/delta) / (n v (1 + 2 log(1/delta) / (n - 2 log(1/delta)))))``,
  ``v`` a robust variance proxy (``(1.4826 MAD)^2``); ``psi`` is increasing, so the root is
  unique and found by Brent's method.
* Minimum covariance determinant (FastMCD, Rousseeuw & Van Driessen 1999): among subsets
  of ``h = ceil(support_fraction n)`` rows, the one whose covariance has the smallest
  determinant, searched by C-steps from random ``(p+1)``-subsets. The raw covariance is
  scaled for consistency at the normal, ``c = (h/n) / F_{chi2(p+2)}(chi2_{p, h/n})``, then
  reweighted: rows with Mahalanobis ``d^2 <= chi2_{p, q}`` (q = reweight quantile) give the
  final mean and covariance, scaled by ``q / F_{chi2(p+2)}(chi2_{p, q})``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.covariance import _returns, nearest_psd

_MAD_TO_SIGMA = 1.482602218505602  # 1 / Phi^{-1}(3/4): MAD consistency at the normal


def _blocks(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    if not 2 <= k <= n // 2:
        raise InvalidParameterError("mom_blocks", k, f"2 <= k <= n/2 = {n // 2}")
    return np.array_split(rng.permutation(n), k)


def median_of_means(x: np.ndarray, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Coordinate-wise median-of-means of ``(n, d)`` data (``(n,)`` is treated as ``d = 1``)."""
    a = np.asarray(x, float)
    vec = a.ndim == 1
    a = _returns(a[:, None] if vec else a)
    means = np.stack([a[b].mean(axis=0) for b in _blocks(a.shape[0], n_blocks, rng)])
    out = np.median(means, axis=0)
    return out[0] if vec else out


def mom_covariance(
    x: np.ndarray, n_blocks: int, rng: np.random.Generator, psd_floor: float
) -> np.ndarray:
    """Element-wise median of block covariances (around the MoM mean), repaired to PSD."""
    a = _returns(x)
    blocks = _blocks(a.shape[0], n_blocks, rng)
    mu = np.median(np.stack([a[b].mean(axis=0) for b in blocks]), axis=0)
    covs = np.stack([(a[b] - mu).T @ (a[b] - mu) / len(b) for b in blocks])
    return nearest_psd(np.median(covs, axis=0), psd_floor)


def _psi(z: np.ndarray) -> np.ndarray:
    return np.sign(z) * np.log1p(np.abs(z) + z * z / 2)


def catoni_mean(x: np.ndarray, delta: float) -> np.ndarray:
    """Catoni's mean (module docstring), column by column for ``(n, d)`` input."""
    a = np.asarray(x, float)
    vec = a.ndim == 1
    a = _returns(a[:, None] if vec else a, min_rows=3)
    n = a.shape[0]
    if not 0 < delta < 1:
        raise InvalidParameterError("catoni_delta", delta, "in (0, 1)")
    L = np.log(1 / delta)
    if n <= 2 * L:
        raise InvalidParameterError("x", n, f"n > 2 log(1/delta) = {2 * L:.1f} rows")
    out = np.empty(a.shape[1])
    for j in range(a.shape[1]):
        col = a[:, j]
        med = np.median(col)
        v = (_MAD_TO_SIGMA * np.median(np.abs(col - med))) ** 2
        if v <= 0:
            v = np.var(col)
        if v <= 0:
            out[j] = med
            continue
        alpha = np.sqrt(2 * L / (n * v * (1 + 2 * L / (n - 2 * L))))

        def f(t: float, a: float = alpha, c: np.ndarray = col) -> float:  # decreasing in t
            return float(np.sum(_psi(a * (c - t))))

        lo, hi = col.min(), col.max()
        out[j] = lo if f(lo) <= 0 else hi if f(hi) >= 0 else brentq(f, lo, hi, xtol=1e-14)
    return out[0] if vec else out


@dataclass(frozen=True)
class MCDResult:
    """Reweighted MCD location and covariance; ``support`` marks the rows used."""

    location: np.ndarray
    covariance: np.ndarray
    support: np.ndarray
    raw_location: np.ndarray
    raw_covariance: np.ndarray


def _cstep(a: np.ndarray, idx: np.ndarray, h: int, max_steps: int) -> tuple[np.ndarray, float]:
    det_prev = np.inf
    for _ in range(max_steps):
        mu = a[idx].mean(axis=0)
        S = np.cov(a[idx], rowvar=False, bias=True).reshape(a.shape[1], a.shape[1])
        sign, logdet = np.linalg.slogdet(S)
        if sign <= 0:
            return idx, -np.inf  # exact fit: h points on a hyperplane
        d2 = np.einsum("ij,jk,ik->i", a - mu, np.linalg.inv(S), a - mu)
        new = np.sort(np.argpartition(d2, h - 1)[:h])
        if np.array_equal(new, idx) or logdet >= det_prev - 1e-12:
            return new, logdet
        idx, det_prev = new, logdet
    return idx, det_prev


def mcd(
    x: np.ndarray,
    support_fraction: float,
    n_starts: int,
    n_csteps: int,
    reweight_quantile: float,
    rng: np.random.Generator,
) -> MCDResult:
    """FastMCD with consistency correction and one reweighting step (module docstring)."""
    a = _returns(x)
    n, p = a.shape
    if not 0.5 <= support_fraction < 1:
        raise InvalidParameterError("mcd_support_fraction", support_fraction, "in [0.5, 1)")
    if not 0 < reweight_quantile < 1:
        raise InvalidParameterError("mcd_reweight_quantile", reweight_quantile, "in (0, 1)")
    if n_starts < 1 or n_csteps < 1:
        raise InvalidParameterError("mcd_starts/mcd_csteps", (n_starts, n_csteps), ">= 1")
    h = int(np.ceil(support_fraction * n))
    if h <= p + 1:
        raise InvalidParameterError("x", (n, p), f"h = ceil({support_fraction} n) > p + 1 rows")
    best_idx, best_det = None, np.inf
    for _ in range(n_starts):
        start = rng.choice(n, size=p + 1, replace=False)
        mu = a[start].mean(axis=0)
        S = np.cov(a[start], rowvar=False, bias=True).reshape(p, p) + 1e-12 * np.eye(p)
        d2 = np.einsum("ij,jk,ik->i", a - mu, np.linalg.pinv(S), a - mu)
        idx = np.sort(np.argpartition(d2, h - 1)[:h])
        idx, det = _cstep(a, idx, h, n_csteps)
        if det < best_det:
            best_idx, best_det = idx, det
    raw_mu = a[best_idx].mean(axis=0)
    raw_S = np.cov(a[best_idx], rowvar=False, bias=True).reshape(p, p)
    q_h = chi2.ppf(h / n, p)
    raw_S = raw_S * (h / n) / chi2.cdf(q_h, p + 2)
    d2 = np.einsum("ij,jk,ik->i", a - raw_mu, np.linalg.pinv(raw_S), a - raw_mu)
    cut = chi2.ppf(reweight_quantile, p)
    keep = d2 <= cut
    mu = a[keep].mean(axis=0)
    S = np.cov(a[keep], rowvar=False, bias=True).reshape(p, p)
    S = S * reweight_quantile / chi2.cdf(cut, p + 2)
    return MCDResult(mu, S, keep, raw_mu, raw_S)

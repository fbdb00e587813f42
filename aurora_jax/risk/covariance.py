"""Covariance estimators for portfolio risk: EWMA, Ledoit–Wolf shrinkage, PSD repair.

* EWMA (RiskMetrics): ``Sigma = sum_t w_t r_t r_t^T`` with ``w_t ∝ lambda^(T-1-t)``
  normalised to sum to one (returns not demeaned unless asked), i.e. the recursion
  ``Sigma_t = lambda Sigma_{t-1} + (1 - lambda) r_t r_t^T`` with finite-sample weights.
* Ledoit–Wolf (2004) toward the scaled identity ``m I``, ``m = tr(S)/p``, with ``S`` the
  (1/n, demeaned) sample covariance and the norm ``||A||^2 = tr(A A^T)/p``:
  ``d^2 = ||S - m I||^2``, ``b^2 = min(d^2, (1/n^2) sum_k ||x_k x_k^T - S||^2)``,
  ``Sigma = (b^2/d^2) m I + (1 - b^2/d^2) S``; the shrinkage weight ``b^2/d^2`` is returned.
* PSD repair: the Frobenius-nearest symmetric matrix with eigenvalues
  ``>= floor * max(lambda_max, 0)`` (eigenvalue clipping of the symmetric part; exact
  nearest-PSD for floor = 0).
"""

from __future__ import annotations

import numpy as np

from aurora_jax.errors import InvalidParameterError


def _returns(x: np.ndarray, min_rows: int = 2) -> np.ndarray:
    r = np.asarray(x, float)
    if r.ndim != 2 or r.shape[0] < min_rows or r.shape[1] < 1:
        raise InvalidParameterError("returns", r.shape, f"2-D (T >= {min_rows}, N >= 1) array")
    if not np.all(np.isfinite(r)):
        raise InvalidParameterError("returns", "non-finite", "finite values")
    return r


def ewma_covariance(returns: np.ndarray, lam: float, demean: bool = False) -> np.ndarray:
    """EWMA covariance of ``(T, N)`` returns with decay ``lam`` in (0, 1)."""
    r = _returns(returns)
    if not 0 < lam < 1:
        raise InvalidParameterError("ewma_lambda", lam, "in (0, 1)")
    T = r.shape[0]
    w = lam ** np.arange(T - 1, -1, -1, dtype=float)
    w /= w.sum()
    if demean:
        r = r - w @ r
    return (r * w[:, None]).T @ r


def ledoit_wolf(returns: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrinkage covariance and its shrinkage weight in [0, 1]."""
    r = _returns(returns)
    n, p = r.shape
    x = r - r.mean(axis=0)
    S = x.T @ x / n
    m = np.trace(S) / p
    F = m * np.eye(p)
    d2 = np.sum((S - F) ** 2) / p
    if d2 <= 0:
        return S, 0.0
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2
    row2 = np.sum(x ** 2, axis=1)
    bbar2 = (np.sum(row2 ** 2) - n * np.sum(S ** 2)) / p / n ** 2
    b2 = min(max(bbar2, 0.0), d2)
    shrink = b2 / d2
    return shrink * F + (1 - shrink) * S, float(shrink)


def nearest_psd(A: np.ndarray, floor: float) -> np.ndarray:
    """Symmetric part of ``A`` with eigenvalues clipped at ``floor * max(lambda_max, 0)``."""
    A = np.asarray(A, float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.all(np.isfinite(A)):
        raise InvalidParameterError("A", A.shape, "finite square matrix")
    if not 0 <= floor < 1:
        raise InvalidParameterError("psd_floor", floor, "in [0, 1)")
    S = (A + A.T) / 2
    vals, vecs = np.linalg.eigh(S)
    lo = floor * max(vals[-1], 0.0)
    if vals[0] >= lo:
        return S
    out = (vecs * np.maximum(vals, lo)) @ vecs.T
    return (out + out.T) / 2


def is_psd(A: np.ndarray, tol: float = 0.0) -> bool:
    """All eigenvalues of the symmetric part ``>= -tol``."""
    A = np.asarray(A, float)
    return bool(np.linalg.eigvalsh((A + A.T) / 2)[0] >= -tol)

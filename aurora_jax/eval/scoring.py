"""Proper scores and calibration diagnostics for one forecast and one outcome.

* CRPS from ``m`` samples (the "energy form" with the V-statistic spread):
  ``CRPS = (1/m) sum_i |x_i - y| - (1/(2 m^2)) sum_{i,j} |x_i - x_j|``, computed from the
  sorted sample with ``sum_{i,j} |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i)`` (1-based ``i``).
* Pinball loss of a quantile ``q`` at level ``tau``: ``(1{y < q} - tau)(q - y)``.
* PIT: ``F(y)``, the share of samples ``<= y`` (ties split evenly).
* Band coverage, width, and a tail miss: outside ``[q_lo - w, q_hi + w]`` with ``w = q_hi - q_lo``.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError


def crps_rows(samples: Float[np.ndarray, "n m"], y: Float[np.ndarray, " n"]) -> np.ndarray:
    """Sample CRPS of every row of ``samples`` (any order) at its own outcome."""
    x = np.sort(np.asarray(samples, dtype=float), axis=1)
    m = x.shape[1]
    if m == 0:
        raise InvalidParameterError("samples", 0, "at least one sample")
    i = np.arange(1, m + 1)
    spread = 2.0 * (x @ (2 * i - m - 1)) / (m * m)
    return np.mean(np.abs(x - np.asarray(y, dtype=float).reshape(-1, 1)), axis=1) - 0.5 * spread


def crps_sample(samples: Float[np.ndarray, " m"], y: float) -> float:
    return float(crps_rows(np.asarray(samples, dtype=float).reshape(1, -1), np.asarray([y]))[0])


def crps_gaussian(mu: float, sigma: float, y: float) -> float:
    """Closed form for ``N(mu, sigma^2)`` (reference for tests)."""
    from scipy.stats import norm

    z = (y - mu) / sigma
    return float(sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi)))


def pinball(q: Float[np.ndarray, " l"], levels: Float[np.ndarray, " l"], y: float) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    tau = np.asarray(levels, dtype=float)
    return ((y < q).astype(float) - tau) * (q - y)


def pit(samples: Float[np.ndarray, " m"], y: float) -> float:
    x = np.asarray(samples, dtype=float).ravel()
    return float((np.sum(x < y) + 0.5 * np.sum(x == y)) / x.shape[0])


def band_stats(q_lo: float, q_hi: float, y: float) -> tuple[bool, float, bool]:
    """``(covered, width, tail_miss)`` of the band ``[q_lo, q_hi]``."""
    w = q_hi - q_lo
    return bool(q_lo <= y <= q_hi), float(w), bool(y < q_lo - w or y > q_hi + w)


def quantile_map_samples(
    samples: Float[np.ndarray, " m"],
    raw_q: Float[np.ndarray, " l"],
    cal_q: Float[np.ndarray, " l"],
) -> np.ndarray:
    """Push samples through the monotone map ``raw_q[j] -> cal_q[j]`` (linear between the
    levels, a constant shift beyond the outermost ones). ``raw_q`` is made strictly increasing
    first (ties nudged apart), so the map is well defined and order-preserving."""
    raw = np.asarray(raw_q, dtype=float).copy()
    cal = np.sort(np.asarray(cal_q, dtype=float))
    eps = 1e-12 * max(1.0, float(np.max(np.abs(raw))))
    for j in range(1, raw.shape[0]):
        if raw[j] <= raw[j - 1]:
            raw[j] = raw[j - 1] + eps
    x = np.asarray(samples, dtype=float)
    out = np.interp(x, raw, cal)
    lo = x < raw[0]
    hi = x > raw[-1]
    out[lo] = x[lo] + (cal[0] - raw[0])
    out[hi] = x[hi] + (cal[-1] - raw[-1])
    return out

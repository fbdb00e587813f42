"""p-variation of a path and its scaling slope (numpy).

Exact p-variation (sup over partitions) of a discrete path, ``p >= 1``:

    V_p(X) = sup_{0 = t_0 < ... < t_k = n} sum_j |X_{t_{j+1}} - X_{t_j}|^p,

by dynamic programming ``V(j) = max_{i<j} V(i) + |X_j - X_i|^p`` over the path's turning
points (for ``p >= 1`` an optimal partition can be taken among them).

Scaling slope: on the ``l``-grid, ``S_p(l) = sum_k |X_{(k+1)l} - X_{kl}|^p``; for a path of
Hölder regularity ``H`` (fBM) ``S_p(l) ~ l^{pH - 1}``, so the OLS slope of ``log S_p`` on
``log l`` is ``pH - 1``: zero at the critical ``p = 1/H``, negative for rough paths at
``p = 2`` (``H < 1/2``), zero for Brownian motion at ``p = 2``.
"""

from __future__ import annotations

import numpy as np

from aurora_jax.errors import InvalidParameterError


def _turning_points(x: np.ndarray) -> np.ndarray:
    dx = np.diff(x)
    keep = np.ones(x.size, bool)
    # drop interior points where the path keeps moving the same way (or is flat)
    keep[1:-1] = (dx[:-1] * dx[1:]) < 0
    return x[keep]


def p_variation(path, p: float) -> float:
    """Exact ``p``-variation of the piecewise-linear path through ``path`` (``p >= 1``)."""
    x = np.asarray(path, dtype=np.float64).reshape(-1)
    if p < 1:
        raise InvalidParameterError("p", p, "p >= 1")
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise InvalidParameterError("path", f"{x.size} points", "at least 2 finite points")
    x = _turning_points(x)
    v = np.zeros(x.size)
    for j in range(1, x.size):
        v[j] = np.max(v[:j] + np.abs(x[j] - x[:j]) ** p)
    return float(v[-1])


def pvariation_slope(path, p: float = 2.0, lags=(1, 2, 4, 8, 16)) -> float:
    """OLS slope of ``log S_p(l)`` on ``log l`` (module docstring); ``pH - 1`` for fBM."""
    x = np.asarray(path, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise InvalidParameterError("path", "non-finite values", "finite floats")
    lags = np.asarray(lags, dtype=int)
    if lags.min() < 1 or x.size < 4 * lags.max():
        raise InvalidParameterError(
            "lags", lags.tolist(), f"1 <= lag <= len(path)/4 = {x.size // 4}"
        )
    s = [np.sum(np.abs(np.diff(x[::lag])) ** p) for lag in lags]
    return float(np.polyfit(np.log(lags), np.log(s), 1)[0])

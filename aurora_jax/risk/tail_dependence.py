"""Upper tail dependence ``lambda_U = lim_{u->1} P(V > u | U > u)`` of two return series.

Pseudo-observations are the scaled ranks ``U_i = rank(x_i) / (n + 1)``, ``V_i = rank(y_i) / (n + 1)``.

* ``empirical``: ``lambda_U(u) = C_bar(u, u) / (1 - u)`` with the empirical survival
  copula ``C_bar(u, u) = (1/n) #{U_i > u, V_i > u}`` (a secant estimate at quantile ``u``).
* ``cfg``: the Capéraà–Fougères–Genest estimator of the Pickands function at ``t = 1/2``
  (Frahm, Junker & Schmidt 2005), consistent for extreme-value copulas:

      lambda_U = 2 - 2 exp( (1/n) sum_i log( sqrt(log(1/U_i) log(1/V_i)) / log(1/max(U_i, V_i)^2) ) )

  For the Gumbel copula with parameter ``theta`` the truth is ``2 - 2^(1/theta)``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from aurora_jax.errors import InvalidParameterError

METHODS = ("cfg", "empirical")


def pseudo_observations(x: np.ndarray) -> np.ndarray:
    """Scaled ranks ``rank / (n + 1)`` in (0, 1), ties averaged."""
    x = np.asarray(x, float)
    return rankdata(x) / (x.size + 1.0)


def upper_tail_dependence(x: np.ndarray, y: np.ndarray, method: str, u: float) -> float:
    """Estimate ``lambda_U`` of the pair ``(x, y)`` (aligned samples) by ``method``."""
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise InvalidParameterError("y", y.shape, f"same length as x ({x.shape[0]})")
    if x.size < 50 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InvalidParameterError("x", x.size, "at least 50 finite aligned observations")
    if method not in METHODS:
        raise InvalidParameterError("method", method, f"one of {METHODS}")
    U, V = pseudo_observations(x), pseudo_observations(y)
    if method == "empirical":
        if not 0.5 <= u < 1:
            raise InvalidParameterError("u", u, "in [0.5, 1)")
        if x.size * (1 - u) < 10:
            raise InvalidParameterError("u", u, f"u with n (1 - u) >= 10 for n = {x.size}")
        return float(np.mean((U > u) & (V > u)) / (1.0 - u))
    lu, lv = np.log(1.0 / U), np.log(1.0 / V)
    lm = np.log(1.0 / np.maximum(U, V) ** 2)
    lam = 2.0 - 2.0 * np.exp(np.mean(np.log(np.sqrt(lu * lv) / lm)))
    return float(np.clip(lam, 0.0, 1.0))


def lower_tail_dependence(x: np.ndarray, y: np.ndarray, method: str, u: float) -> float:
    """``lambda_L`` of ``(x, y)`` = ``lambda_U`` of ``(-x, -y)``."""
    return upper_tail_dependence(-np.asarray(x, float), -np.asarray(y, float), method, u)

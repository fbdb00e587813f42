"""Acerbi–Szekely (2014) test 2 of Expected Shortfall, with simulated critical values.

Returns ``X_t`` (profit positive), forecasts ``VaR_t > 0`` and ``ES_t > 0`` at level
``alpha`` (e.g. 0.975: tail probability ``1 - alpha``), hits ``I_t = 1{X_t + VaR_t < 0}``:

    Z2 = sum_t X_t I_t / (T (1 - alpha) ES_t) + 1

Under H0 (the forecast distribution is the true one in the tail) ``E[Z2] = 0``; if ES is
underestimated ``Z2 < 0``. The test is one-sided: the p-value is ``P_H0(Z2 <= z_obs)``,
estimated by simulating ``M`` return series from the forecast distributions themselves
(``simulate(rng, M) -> (M, T)`` draws) and computing Z2 on each, with the model's own
VaR/ES held fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.coverage_tests import HypothesisTestResult


def _inputs(returns, var, es, alpha) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, v, e = (np.asarray(a, float) for a in (returns, var, es))
    if not (x.shape == v.shape == e.shape) or x.ndim != 1 or x.size < 2:
        raise InvalidParameterError("var/es", (x.shape, v.shape, e.shape), "equal 1-D shapes, T >= 2")
    if not 0 < alpha < 1:
        raise InvalidParameterError("alpha", alpha, "in (0, 1)")
    if np.any(e <= 0) or not np.all(np.isfinite(e)):
        raise InvalidParameterError("es", float(np.min(e)), "finite ES forecasts > 0 (loss units)")
    return x, v, e


def z2_statistic(
    returns: np.ndarray, var: np.ndarray, es: np.ndarray, alpha: float
) -> np.ndarray | float:
    """Acerbi–Szekely Z2 (module docstring). ``returns`` may be ``(M, T)`` to score many series."""
    x = np.asarray(returns, float)
    v = np.asarray(var, float)
    e = np.asarray(es, float)
    T = x.shape[-1]
    hits = (x + v < 0).astype(float)
    z = np.sum(x * hits / (T * (1 - alpha) * e), axis=-1) + 1.0
    return float(z) if np.ndim(z) == 0 else z


def acerbi_szekely_z2(
    returns: np.ndarray,
    var: np.ndarray,
    es: np.ndarray,
    alpha: float,
    simulate: Callable[[np.random.Generator, int], np.ndarray],
    n_simulations: int,
    size: float,
    rng: np.random.Generator,
) -> HypothesisTestResult:
    """One-sided Z2 test with a Monte-Carlo p-value ``(1 + #{Z2_sim <= z}) / (M + 1)``."""
    x, v, e = _inputs(returns, var, es, alpha)
    if n_simulations < 100:
        raise InvalidParameterError("n_simulations", n_simulations, ">= 100")
    z = z2_statistic(x, v, e, alpha)
    sims = np.asarray(simulate(rng, n_simulations), float)
    if sims.shape != (n_simulations, x.size):
        raise InvalidParameterError("simulate", sims.shape, f"array of shape ({n_simulations}, {x.size})")
    zs = z2_statistic(sims, v, e, alpha)
    p = (1.0 + np.sum(zs <= z)) / (n_simulations + 1.0)
    return HypothesisTestResult("acerbi_szekely_z2", float(z), float(p), size)

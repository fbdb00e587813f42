"""Performance statistics of a return series (per-period simple returns ``r_t``).

* Sharpe ``SR = mean(r) / std(r) * sqrt(P)`` (``P`` periods per year, std with ddof 1).
* Sortino ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)``.
* Max drawdown ``max_t (1 - E_t / max_{s<=t} E_s)`` of the equity curve.
* CVaR95: ES at 95% of the per-period loss ``-r`` (Acerbi–Tasche estimator).
* Turnover: traded notional / mean equity, per year.
* Probabilistic Sharpe ratio (Bailey & López de Prado 2012), per-period ``SR``, skewness
  ``g3``, kurtosis ``g4`` (not excess), ``n`` observations:

      PSR(SR*) = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1)/4 SR^2) )

* Deflated Sharpe ratio (Bailey & López de Prado 2014): ``PSR(SR*_0)`` with the expected
  maximum Sharpe of ``N`` unskilled trials,
  ``SR*_0 = sqrt(V) ((1 - gamma) Phi^{-1}(1 - 1/N) + gamma Phi^{-1}(1 - 1/(N e)))``,
  ``V`` the variance of the trials' per-period Sharpe ratios, ``gamma`` Euler–Mascheroni.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import kurtosis, norm, skew

from aurora_jax.errors import InvalidParameterError

EULER_GAMMA = 0.5772156649015329


def _r(returns) -> np.ndarray:
    r = np.asarray(returns, float).ravel()
    if r.size < 3 or not np.all(np.isfinite(r)):
        raise InvalidParameterError("returns", r.size, "at least 3 finite returns")
    return r


def sharpe(returns, periods_per_year: float) -> float:
    r = _r(returns)
    sd = r.std(ddof=1)
    return float(r.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else 0.0


def sortino(returns, periods_per_year: float) -> float:
    r = _r(returns)
    dd = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return float(r.mean() / dd * np.sqrt(periods_per_year)) if dd > 0 else float("inf") if r.mean() > 0 else 0.0


def max_drawdown(equity) -> float:
    e = np.asarray(equity, float)
    if e.size == 0 or np.any(e <= 0):
        raise InvalidParameterError("equity", "non-positive or empty", "positive equity values")
    return float(np.max(1.0 - e / np.maximum.accumulate(e)))


def drawdown_series(equity) -> np.ndarray:
    e = np.asarray(equity, float)
    return 1.0 - e / np.maximum.accumulate(e)


def cvar(returns, level: float) -> float:
    """ES of ``-r`` at ``level`` (positive = loss)."""
    losses = np.sort(-_r(returns))
    n = losses.size
    tail = n * (1 - level)
    m = int(np.floor(tail + 1e-9))
    if tail < 1:
        raise InvalidParameterError("level", level, f"n (1 - level) >= 1 for n = {n}")
    var = losses[n - m - 1]
    return float((losses[n - m:].sum() + (tail - m) * var) / tail)


def probabilistic_sharpe(returns, sr_benchmark: float) -> float:
    """PSR of the per-period Sharpe against the per-period benchmark ``sr_benchmark``."""
    r = _r(returns)
    sd = r.std(ddof=1)
    if sd == 0:
        return 0.5
    sr = r.mean() / sd
    g3 = float(skew(r))
    g4 = float(kurtosis(r, fisher=False))
    den = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if den <= 0:
        den = 1e-12
    return float(norm.cdf((sr - sr_benchmark) * np.sqrt(r.size - 1) / np.sqrt(den)))


def expected_max_sharpe(trial_sharpes: Sequence[float]) -> float:
    """``SR*_0`` of the deflated Sharpe ratio from the trials' per-period Sharpe ratios."""
    s = np.asarray(trial_sharpes, float)
    N = s.size
    if N < 2:
        raise InvalidParameterError("trial_sharpes", N, "at least 2 trials")
    v = s.var(ddof=1)
    return float(np.sqrt(v) * ((1 - EULER_GAMMA) * norm.ppf(1 - 1.0 / N)
                               + EULER_GAMMA * norm.ppf(1 - 1.0 / (N * np.e))))


def deflated_sharpe(returns, trial_sharpes: Sequence[float]) -> float:
    """DSR = PSR against the expected maximum Sharpe of the trials."""
    return probabilistic_sharpe(returns, expected_max_sharpe(trial_sharpes))


def per_period_sharpe(returns) -> float:
    r = _r(returns)
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else 0.0


def summarize(
    returns, equity, traded_notional: float, periods_per_year: float,
    trial_sharpes: Sequence[float] | None = None,
) -> dict[str, float]:
    """The report's statistics (module docstring); ``deflated_sharpe`` only with >= 2 trials."""
    r = _r(returns)
    e = np.asarray(equity, float)
    years = r.size / periods_per_year
    out = {
        "total_return": float(e[-1] / e[0] - 1.0),
        "cagr": float((e[-1] / e[0]) ** (1.0 / years) - 1.0) if years > 0 else float("nan"),
        "ann_vol": float(r.std(ddof=1) * np.sqrt(periods_per_year)),
        "sharpe": sharpe(r, periods_per_year),
        "sortino": sortino(r, periods_per_year),
        "max_drawdown": max_drawdown(e),
        "cvar95": cvar(r, 0.95),
        "turnover": float(traded_notional / np.mean(e) / years) if years > 0 else float("nan"),
        "psr": probabilistic_sharpe(r, 0.0),
    }
    if trial_sharpes is not None and len(trial_sharpes) >= 2:
        out["dsr"] = deflated_sharpe(r, trial_sharpes)
    return out

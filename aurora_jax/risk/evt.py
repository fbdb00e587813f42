"""Peaks over threshold: a generalized Pareto fit to loss exceedances, tail VaR/ES, CIs.

Above a high threshold ``u`` the exceedances ``y = L - u`` of losses ``L`` are modelled as
GPD(xi, beta):  ``F(y) = 1 - (1 + xi y / beta)^(-1/xi)``  (``1 - exp(-y/beta)`` at xi = 0).

*Fit.* Maximum likelihood by Grimshaw's profile: with ``theta = xi / beta`` the MLE of xi
given theta is ``xi(theta) = mean(log(1 + theta y))`` and the profile log-likelihood is
``l(theta) = -n log(xi(theta) / theta) - n (1 + xi(theta))``; it is maximised on a grid
over ``theta * mean(y)`` and refined with bounded Brent. Fits with xi < -1/2 (where the MLE
is not regular) are excluded.

*Tail measures* (``n`` losses, ``N_u`` exceedances, level ``p > 1 - N_u / n``):

    VaR_p = u + beta / xi * (((n / N_u) (1 - p))^(-xi) - 1)
    ES_p  = (VaR_p + beta - xi u) / (1 - xi)           (xi < 1; infinite otherwise)

*Threshold rule.* Each candidate threshold (a loss quantile from the configured grid with
at least ``min_exceedances`` exceedances) is fitted and scored with the Anderson–Darling
statistic ``A^2 = -N - (1/N) sum (2i-1) [log z_i + log(1 - z_{N+1-i})]``,
``z_i = F(y_(i))``; the candidate with the smallest ``A^2`` is used (best fit; A^2 is
distribution-free under a correct model, so it does not favour small samples).

*Confidence intervals.* Nonparametric bootstrap: resample the losses with replacement,
re-fit at the chosen threshold *quantile*, and take percentile intervals of xi, beta and
of the tail VaR/ES.

Hill's tail index and the extremal index come from ``aurora_jax.sim.estimators.tails``
(one implementation in the project); :func:`tail_summary` reports them next to the GPD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.estimators.tails import extremal_index, hill_tail_index

_XI_MIN = -0.5  # regularity bound of the GPD MLE (Smith 1985); not a tunable


@dataclass(frozen=True)
class GPDFit:
    """GPD shape ``xi`` and scale ``beta`` of exceedances, with the max log-likelihood."""

    xi: float
    beta: float
    loglik: float
    n: int


def _as_1d(x: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise InvalidParameterError(name, f"array of size {a.size}", "non-empty finite values")
    return a


def gpd_loglik(y: np.ndarray, xi: float, beta: float) -> float:
    """GPD log-likelihood of exceedances ``y >= 0``; ``-inf`` outside the support."""
    if beta <= 0:
        return -np.inf
    if abs(xi) < 1e-9:
        return float(-y.size * np.log(beta) - np.sum(y) / beta)
    z = 1.0 + xi * y / beta
    if np.any(z <= 0):
        return -np.inf
    return float(-y.size * np.log(beta) - (1.0 + 1.0 / xi) * np.sum(np.log(z)))


def fit_gpd(exceedances: np.ndarray | Sequence[float]) -> GPDFit:
    """Maximum-likelihood GPD fit of exceedances (Grimshaw profile; see module docstring)."""
    y = _as_1d(exceedances, "exceedances")
    if np.any(y < 0):
        raise InvalidParameterError("exceedances", float(y.min()), "values >= 0 (losses - threshold)")
    n = y.size
    if n < 10:
        raise InvalidParameterError("exceedances", n, "at least 10 exceedances for a GPD fit")
    ybar = float(np.mean(y))
    ymax = float(np.max(y))
    if ybar <= 0:
        raise InvalidParameterError("exceedances", "all zero", "some exceedances > 0")

    def prof(theta: float) -> tuple[float, float]:
        if abs(theta) * ymax < 1e-10:  # exponential limit
            return -n * np.log(ybar) - n, 0.0
        z = 1.0 + theta * y
        if np.any(z <= 0):
            return -np.inf, np.nan
        xi = float(np.mean(np.log(z)))
        if xi < _XI_MIN or xi / theta <= 0:
            return -np.inf, xi
        return -n * np.log(xi / theta) - n * (1.0 + xi), xi

    lo = -1.0 / ymax * (1.0 - 1e-9)
    grid = np.concatenate([
        np.linspace(lo, 0.0, 60, endpoint=False),
        np.geomspace(1e-6, 200.0, 120) / ybar,
    ])
    # vectorised profile on the grid
    z = 1.0 + np.outer(grid, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xis = np.where(np.all(z > 0, axis=1), np.mean(np.log(np.where(z > 0, z, 1.0)), axis=1), np.nan)
        ll = -n * np.log(xis / grid) - n * (1.0 + xis)
    ll = np.where(np.isfinite(ll) & (xis >= _XI_MIN), ll, -np.inf)
    ll_exp = -n * np.log(ybar) - n
    i = int(np.argmax(ll))
    if not np.isfinite(ll[i]) or ll[i] <= ll_exp:
        best_theta, best_ll = 0.0, ll_exp
    else:
        a = grid[max(i - 1, 0)]
        b = grid[min(i + 1, grid.size - 1)]
        res = minimize_scalar(lambda t: -prof(t)[0], bounds=(a, b), method="bounded",
                              options={"xatol": 1e-12 / ybar})
        best_theta, best_ll = (res.x, -res.fun) if -res.fun >= ll[i] else (grid[i], ll[i])
    if abs(best_theta) * ymax < 1e-10:
        return GPDFit(xi=0.0, beta=ybar, loglik=float(ll_exp), n=n)
    xi = float(np.mean(np.log1p(best_theta * y)))
    return GPDFit(xi=xi, beta=float(xi / best_theta), loglik=float(best_ll), n=n)


def gpd_cdf(y: np.ndarray, xi: float, beta: float) -> np.ndarray:
    """GPD distribution function (clipped to [0, 1] outside the support)."""
    y = np.maximum(np.asarray(y, float), 0.0)
    if abs(xi) < 1e-9:
        return 1.0 - np.exp(-y / beta)
    z = np.maximum(1.0 + xi * y / beta, 0.0)
    with np.errstate(divide="ignore"):
        return np.clip(1.0 - z ** (-1.0 / xi), 0.0, 1.0)


def anderson_darling(y: np.ndarray, fit: GPDFit) -> float:
    """Anderson–Darling ``A^2`` of exceedances against a fitted GPD."""
    z = np.sort(np.clip(gpd_cdf(y, fit.xi, fit.beta), 1e-12, 1 - 1e-12))
    n = z.size
    i = np.arange(1, n + 1)
    return float(-n - np.mean((2 * i - 1) * (np.log(z) + np.log1p(-z[::-1]))))


def gpd_tail_var_es(
    u: float, fit: GPDFit, n_total: int, n_exceed: int, level: float
) -> tuple[float, float]:
    """Tail VaR_p and ES_p of the POT model (formulas in the module docstring)."""
    ratio = n_total / n_exceed * (1.0 - level)
    if not 0 < ratio <= 1:
        raise InvalidParameterError(
            "level", level, f"levels above 1 - N_u/n = {1 - n_exceed / n_total:.4f} (in the fitted tail)"
        )
    if abs(fit.xi) < 1e-9:
        var = u - fit.beta * np.log(ratio)
    else:
        var = u + fit.beta / fit.xi * (ratio ** (-fit.xi) - 1.0)
    es = (var + fit.beta - fit.xi * u) / (1.0 - fit.xi) if fit.xi < 1 else np.inf
    return float(var), float(es)


@dataclass(frozen=True)
class POTResult:
    """A peaks-over-threshold fit: threshold, GPD, tail VaR/ES and the threshold diagnostics."""

    threshold: float
    threshold_quantile: float
    n_total: int
    n_exceed: int
    fit: GPDFit
    var: dict[float, float]
    es: dict[float, float]
    diagnostics: pd.DataFrame = field(repr=False)


def _check_grid(quantiles: Sequence[float]) -> list[float]:
    qs = sorted(float(q) for q in quantiles)
    if not qs or any(not 0 < q < 1 for q in qs):
        raise InvalidParameterError("threshold_quantiles", list(quantiles), "non-empty list in (0, 1)")
    return qs


def _fit_at(losses: np.ndarray, q: float) -> tuple[float, np.ndarray, GPDFit]:
    u = float(np.quantile(losses, q))
    y = losses[losses > u] - u
    return u, y, fit_gpd(y)


def pot_fit(
    losses: np.ndarray | Sequence[float],
    threshold_quantiles: Sequence[float],
    min_exceedances: int,
    levels: Sequence[float],
) -> POTResult:
    """Choose the threshold by the A^2 rule, fit the GPD, and compute tail VaR/ES at ``levels``."""
    x = _as_1d(losses, "losses")
    qs = _check_grid(threshold_quantiles)
    if min_exceedances < 10:
        raise InvalidParameterError("min_exceedances", min_exceedances, ">= 10")
    rows = []
    best: tuple[float, float, np.ndarray, GPDFit, float] | None = None
    for q in qs:
        u = float(np.quantile(x, q))
        y = x[x > u] - u
        if y.size < min_exceedances:
            rows.append({"quantile": q, "threshold": u, "n_exceed": y.size, "xi": np.nan,
                         "beta": np.nan, "ad": np.nan})
            continue
        fit = fit_gpd(y)
        ad = anderson_darling(y, fit)
        rows.append({"quantile": q, "threshold": u, "n_exceed": y.size, "xi": fit.xi,
                     "beta": fit.beta, "ad": ad})
        if best is None or ad < best[4]:
            best = (q, u, y, fit, ad)
    if best is None:
        raise InvalidParameterError(
            "losses", x.size,
            f"enough data for >= {min_exceedances} exceedances above the {qs[0]} quantile",
        )
    q, u, y, fit, _ = best
    var, es = {}, {}
    for lvl in levels:
        var[float(lvl)], es[float(lvl)] = gpd_tail_var_es(u, fit, x.size, y.size, float(lvl))
    return POTResult(u, q, x.size, y.size, fit, var, es, pd.DataFrame(rows))


@dataclass(frozen=True)
class POTBootstrap:
    """Percentile bootstrap intervals ``(lo, hi)`` of the POT estimates."""

    ci_level: float
    xi: tuple[float, float]
    beta: tuple[float, float]
    var: dict[float, tuple[float, float]]
    es: dict[float, tuple[float, float]]
    n_bootstrap: int


def pot_bootstrap(
    losses: np.ndarray | Sequence[float],
    result: POTResult,
    n_bootstrap: int,
    ci_level: float,
    rng: np.random.Generator,
) -> POTBootstrap:
    """Nonparametric bootstrap CIs of xi, beta, VaR and ES, threshold quantile held fixed."""
    x = _as_1d(losses, "losses")
    if n_bootstrap < 20:
        raise InvalidParameterError("n_bootstrap", n_bootstrap, ">= 20")
    if not 0 < ci_level < 1:
        raise InvalidParameterError("ci_level", ci_level, "in (0, 1)")
    levels = sorted(result.var)
    draws = np.empty((n_bootstrap, 2 + 2 * len(levels)))
    for b in range(n_bootstrap):
        xb = x[rng.integers(0, x.size, x.size)]
        u, y, fit = _fit_at(xb, result.threshold_quantile)
        vals = [fit.xi, fit.beta]
        ves = [gpd_tail_var_es(u, fit, xb.size, y.size, lv) for lv in levels]
        draws[b] = vals + [v for v, _ in ves] + [e for _, e in ves]
    lo_q, hi_q = (1 - ci_level) / 2, 1 - (1 - ci_level) / 2

    def ci(col: np.ndarray) -> tuple[float, float]:
        return float(np.quantile(col, lo_q)), float(np.quantile(col, hi_q))

    k = len(levels)
    return POTBootstrap(
        ci_level=ci_level,
        xi=ci(draws[:, 0]),
        beta=ci(draws[:, 1]),
        var={lv: ci(draws[:, 2 + i]) for i, lv in enumerate(levels)},
        es={lv: ci(draws[:, 2 + k + i]) for i, lv in enumerate(levels)},
        n_bootstrap=n_bootstrap,
    )


@dataclass(frozen=True)
class TailSummary:
    """GPD fit with bootstrap CIs, Hill's tail index and the extremal index of one loss series."""

    pot: POTResult
    bootstrap: POTBootstrap
    hill_xi: float
    hill_k: int
    extremal_index: float


def tail_summary(losses: np.ndarray, cfg, rng: np.random.Generator) -> TailSummary:
    """All tail statistics of a loss series (time-ordered) with settings from ``cfg.risk.evt``."""
    x = _as_1d(losses, "losses")
    pot = pot_fit(x, cfg.threshold_quantiles, int(cfg.min_exceedances), cfg.levels)
    boot = pot_bootstrap(x, pot, int(cfg.n_bootstrap), float(cfg.ci_level), rng)
    hk = None if cfg.hill_k is None else int(cfg.hill_k)
    hill_xi, k_used = hill_tail_index(x, k=hk)
    theta = extremal_index(x, float(np.quantile(x, float(cfg.extremal_index_quantile))))
    return TailSummary(pot, boot, float(hill_xi), int(k_used), float(theta))

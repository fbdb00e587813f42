"""Small time-series fits for the router and the ARMA Crossbar Index: AR(p), ARMA(p,1), GARCH(1,1).

All three are fitted to the same observations ``x_p .. x_{n-1}`` (conditioning on the first
``p``), with Gaussian innovations, so their Bayesian information criteria
``BIC = -2 log L + k log n`` are comparable:

* AR(p) by OLS: ``x_t = c + sum_i phi_i x_{t-i} + e_t`` (``k = p + 2``), with OLS standard
  errors of ``phi``;
* ARMA(p,1) by conditional sum of squares (``e_{p-1} = 0``):
  ``e_t = x_t - c - sum_i phi_i x_{t-i} - theta e_{t-1}`` (``k = p + 3``);
* GARCH(1,1) with constant mean (arch, Gaussian; ``k = 4``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from arch import arch_model
from jaxtyping import Float
from scipy.optimize import least_squares
from scipy.signal import lfilter

from aurora_jax.errors import InvalidParameterError

MODELS: tuple[str, str, str] = ("AR", "ARMA", "GARCH")


@dataclass(frozen=True)
class ARFit:
    const: float
    phi: np.ndarray
    phi_se: np.ndarray
    sigma2: float
    loglik: float
    nobs: int
    bic: float


@dataclass(frozen=True)
class ARMAFit:
    const: float
    phi: np.ndarray
    phi_se: np.ndarray
    theta: float
    sigma2: float
    loglik: float
    nobs: int
    bic: float


@dataclass(frozen=True)
class GarchFit:
    mu: float
    omega: float
    alpha: float
    beta: float
    loglik: float
    nobs: int
    bic: float


def _check(x: np.ndarray, p: int) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.shape[0] < 10 * (p + 3):
        raise InvalidParameterError("window", x.shape, f"1-d with length >= {10 * (p + 3)}")
    if not np.all(np.isfinite(x)):
        raise InvalidParameterError("window", "non-finite values", "finite returns only")
    if p < 1:
        raise InvalidParameterError("p", p, "an integer >= 1")
    return x


def _lags(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    y = x[p:]
    X = np.column_stack([np.ones(n - p)] + [x[p - i : n - i] for i in range(1, p + 1)])
    return y, X


def _gauss_loglik(sse: float, n: int) -> tuple[float, float]:
    sigma2 = max(sse / n, 1e-300)
    return sigma2, -0.5 * n * (np.log(2 * np.pi * sigma2) + 1.0)


def fit_ar(x: Float[np.ndarray, " n"], p: int = 1) -> ARFit:
    """OLS AR(p) with Gaussian conditional log-likelihood and BIC."""
    x = _check(x, p)
    y, X = _lags(x, p)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    n = y.shape[0]
    sigma2, ll = _gauss_loglik(float(resid @ resid), n)
    cov = sigma2 * n / max(n - p - 1, 1) * np.linalg.pinv(X.T @ X)
    se = np.sqrt(np.clip(np.diag(cov)[1:], 0.0, None))
    return ARFit(float(beta[0]), beta[1:], se, sigma2, ll, n, -2 * ll + (p + 2) * np.log(n))


def _arma_resid(params: np.ndarray, y: np.ndarray, X: np.ndarray) -> np.ndarray:
    p = X.shape[1] - 1
    c = params[0]
    phi = np.tanh(params[1 : p + 1]) if p == 1 else params[1 : p + 1]
    theta = np.tanh(params[p + 1])
    u = y - c - X[:, 1:] @ phi
    return lfilter([1.0], [1.0, theta], u)


def fit_arma(x: Float[np.ndarray, " n"], p: int = 1) -> ARMAFit:
    """ARMA(p,1) by conditional sum of squares (Levenberg–Marquardt from several theta starts,
    on the standardised window; the fit is mapped back to the scale of ``x``)."""
    x = _check(x, p)
    mu, sd = float(np.mean(x)), float(np.std(x)) or 1.0
    xs = (x - mu) / sd
    y, X = _lags(xs, p)
    ar_s = fit_ar(xs, p)
    n = y.shape[0]
    phi0 = np.clip(ar_s.phi, -0.95, 0.95)
    phi_start = np.arctanh(phi0) if p == 1 else phi0
    best = None
    for th in (0.0, 0.5, -0.5):
        start = np.concatenate([[ar_s.const], phi_start, [np.arctanh(th)]])
        res = least_squares(lambda prm: _arma_resid(prm, y, X), start, method="lm")
        if best is None or res.cost < best.cost:
            best = res
    prm = best.x
    phi = np.tanh(prm[1 : p + 1]) if p == 1 else prm[1 : p + 1]
    sse = 2.0 * float(best.cost) * sd**2
    sigma2, ll = _gauss_loglik(sse, n)
    const = float(prm[0]) * sd + mu * (1.0 - float(np.sum(phi)))
    # standard errors from the Gauss-Newton information s^2 (J'J)^-1 (delta method through tanh)
    s2 = 2.0 * float(best.cost) / max(n - p - 2, 1)
    cov = s2 * np.linalg.pinv(best.jac.T @ best.jac)
    se_par = np.sqrt(np.clip(np.diag(cov)[1 : p + 1], 0.0, None))
    phi_se = se_par * (1.0 - phi**2) if p == 1 else se_par
    return ARMAFit(const, np.asarray(phi), np.asarray(phi_se), float(np.tanh(prm[p + 1])), sigma2,
                   ll, n, -2 * ll + (p + 3) * np.log(n))


def fit_garch(x: Float[np.ndarray, " n"], p: int = 1) -> GarchFit:
    """GARCH(1,1), constant mean, Gaussian, on ``x_p ..`` (arch); input standardised first."""
    x = _check(x, p)
    y = x[p:]
    mu, sd = float(np.mean(y)), float(np.std(y))
    z = (y - mu) / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = arch_model(z, mean="Constant", vol="GARCH", p=1, q=1, dist="normal",
                         rescale=False).fit(disp="off", show_warning=False)
    n = y.shape[0]
    ll = float(res.loglikelihood) - n * np.log(sd)  # back to the scale of x
    prm = res.params
    return GarchFit(float(prm["mu"]) * sd + mu, float(prm["omega"]) * sd**2,
                    float(prm["alpha[1]"]), float(prm["beta[1]"]), ll, n, -2 * ll + 4 * np.log(n))


def bic_table(x: Float[np.ndarray, " n"], p: int = 1) -> dict[str, float]:
    """``{"AR": bic, "ARMA": bic, "GARCH": bic}`` on the same observations."""
    ar = fit_ar(x, p)
    return {"AR": ar.bic, "ARMA": fit_arma(x, p).bic, "GARCH": fit_garch(x, p).bic}


def bic_label(x: Float[np.ndarray, " n"], p: int = 1) -> int:
    """Index into :data:`MODELS` of the lowest-BIC model."""
    t = bic_table(x, p)
    return int(np.argmin([t[m] for m in MODELS]))

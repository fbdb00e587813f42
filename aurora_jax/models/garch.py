"""GARCH(p,o,q) with Student-t innovations: fit with ``arch``, simulate return paths in numpy.

Per-step log-return (in %): ``r_t = mu + e_t``, ``e_t = sigma_t z_t``, with
``sigma_t^2 = omega + sum_i (alpha_i + gamma_i 1[e_{t-i} < 0]) e_{t-i}^2 + sum_j beta_j sigma_{t-j}^2``
(``o = 1`` gives GJR-GARCH) and ``z_t`` standardized Student-t with ``nu`` degrees of freedom
(variance 1: ``t_nu * sqrt((nu - 2) / nu)``). The simulation continues from the last fitted
residuals and variances, so paths start from today's conditional volatility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from arch import arch_model
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class GarchSpec:
    p: int = 1
    o: int = 0
    q: int = 1
    dist: str = "t"           # t | normal
    window_days: int = 1000   # trailing returns used to fit
    min_days: int = 250       # fewer returns than this is an error

    def __post_init__(self):
        for name in ("p", "q"):
            if getattr(self, name) < 1:
                raise InvalidParameterError(name, getattr(self, name), "an integer >= 1")
        if self.o not in (0, 1):
            raise InvalidParameterError("o", self.o, "0 (GARCH) or 1 (GJR-GARCH)")
        if self.dist not in ("t", "normal"):
            raise InvalidParameterError("dist", self.dist, "'t' or 'normal'")
        if self.min_days < 30 or self.window_days < self.min_days:
            raise InvalidParameterError("window_days", self.window_days, f">= min_days >= 30")

    @property
    def name(self) -> str:
        return ("gjr_garch" if self.o else "garch") + ("_t" if self.dist == "t" else "_normal")


@dataclass(frozen=True)
class GarchFit:
    """Fitted parameters (returns in %) and the recursion state at the end of the sample."""

    spec: GarchSpec
    mu: float
    omega: float
    alpha: np.ndarray          # (p,)
    gamma: np.ndarray          # (o,)
    beta: np.ndarray           # (q,)
    nu: float                  # inf for normal innovations
    last_resid: np.ndarray     # (max(p, o),) most recent last
    last_var: np.ndarray       # (q,) most recent last
    n_obs: int

    @property
    def persistence(self) -> float:
        return float(self.alpha.sum() + 0.5 * self.gamma.sum() + self.beta.sum())


def fit_garch(log_returns: Float[np.ndarray, " n"], spec: GarchSpec = GarchSpec()) -> GarchFit:
    """Fit on the trailing ``spec.window_days`` daily log-returns (fractions, not %)."""
    r = np.asarray(log_returns, dtype=float)
    r = r[np.isfinite(r)][-spec.window_days:]
    if len(r) < spec.min_days:
        raise InvalidParameterError(
            "log_returns", f"{len(r)} returns", f">= {spec.min_days} finite returns (garch.min_days)"
        )
    model = arch_model(100.0 * r, mean="Constant", vol="GARCH", p=spec.p, o=spec.o, q=spec.q,
                       dist="t" if spec.dist == "t" else "normal", rescale=False)
    res = model.fit(disp="off", show_warning=False)
    prm = res.params
    lags = max(spec.p, spec.o)
    return GarchFit(
        spec=spec,
        mu=float(prm["mu"]),
        omega=float(prm["omega"]),
        alpha=np.array([prm[f"alpha[{i + 1}]"] for i in range(spec.p)]),
        gamma=np.array([prm[f"gamma[{i + 1}]"] for i in range(spec.o)]),
        beta=np.array([prm[f"beta[{i + 1}]"] for i in range(spec.q)]),
        nu=float(prm["nu"]) if spec.dist == "t" else float("inf"),
        last_resid=np.asarray(res.resid[-lags:], dtype=float),
        last_var=np.asarray(res.conditional_volatility[-spec.q:], dtype=float) ** 2,
        n_obs=len(r),
    )


def standardized_t(rng: np.random.Generator, nu: float, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance Student-t draws (Gaussian when ``nu`` is infinite)."""
    if not np.isfinite(nu):
        return rng.standard_normal(shape)
    return rng.standard_t(nu, size=shape) * np.sqrt((nu - 2.0) / nu)


def simulate_garch(
    fit: GarchFit, horizon: int, num_paths: int, rng: np.random.Generator
) -> Float[np.ndarray, "paths horizon"]:
    """Per-step log-returns (fractions) of ``num_paths`` paths, ``horizon`` steps ahead."""
    if horizon < 1:
        raise InvalidParameterError("horizon", horizon, "an integer >= 1")
    if num_paths < 1:
        raise InvalidParameterError("num_paths", num_paths, "an integer >= 1")
    p, o, q = fit.spec.p, fit.spec.o, fit.spec.q
    lags = max(p, o)
    resid = np.tile(fit.last_resid, (num_paths, 1))   # (paths, lags), most recent last
    var = np.tile(fit.last_var, (num_paths, 1))        # (paths, q)
    z = standardized_t(rng, fit.nu, (num_paths, horizon))
    out = np.empty((num_paths, horizon))
    for t in range(horizon):
        s2 = np.full(num_paths, fit.omega)
        for i in range(p):
            s2 += fit.alpha[i] * resid[:, lags - 1 - i] ** 2
        for i in range(o):
            e = resid[:, lags - 1 - i]
            s2 += fit.gamma[i] * e**2 * (e < 0)
        for j in range(q):
            s2 += fit.beta[j] * var[:, q - 1 - j]
        e = np.sqrt(s2) * z[:, t]
        out[:, t] = fit.mu + e
        resid = np.concatenate([resid[:, 1:], e[:, None]], axis=1)
        var = np.concatenate([var[:, 1:], s2[:, None]], axis=1)
    return out / 100.0

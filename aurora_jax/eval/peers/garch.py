"""GARCH(1,1)-t and GJR-GARCH(1,1)-t peers (arch fit + simulation, :mod:`aurora_jax.models.garch`).

Refit on the trailing ``window_days`` returns when the schedule asks for it; in between the
fitted parameters are kept and the variance recursion is run forward through the new returns
(in %): ``s2_t = omega + (alpha + gamma 1[e_{t-1} < 0]) e_{t-1}^2 + beta s2_{t-1}``,
``e_t = 100 r_t - mu``. The state remembers the stamp of the last return it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from aurora_jax.eval.forecaster import ForecastContext
from aurora_jax.models.garch import GarchFit, GarchSpec, fit_garch, simulate_garch


@dataclass(frozen=True)
class GarchState:
    fit: GarchFit
    last_stamp: pd.Timestamp
    refitted: bool
    asset: str


def condition(fit: GarchFit, new_returns: np.ndarray) -> GarchFit:
    """Run the fitted recursion through ``new_returns`` (fractions) with fixed parameters."""
    p, o, q = fit.spec.p, fit.spec.o, fit.spec.q
    lags = max(p, o)
    resid = list(fit.last_resid)
    var = list(fit.last_var)
    for r in np.asarray(new_returns, dtype=float):
        s2 = fit.omega
        for i in range(p):
            s2 += fit.alpha[i] * resid[lags - 1 - i] ** 2
        for i in range(o):
            e = resid[lags - 1 - i]
            s2 += fit.gamma[i] * e * e * (e < 0)
        for j in range(q):
            s2 += fit.beta[j] * var[q - 1 - j]
        resid = resid[1:] + [100.0 * r - fit.mu]
        var = var[1:] + [s2]
    return replace(fit, last_resid=np.asarray(resid), last_var=np.asarray(var))


@dataclass(frozen=True)
class GarchPeer:
    name: str
    spec: GarchSpec

    def fit(self, returns: pd.Series, context: ForecastContext) -> GarchState:
        prev = context.previous_state
        if context.refit or not isinstance(prev, GarchState):
            fit = fit_garch(returns.to_numpy(), self.spec)
            return GarchState(fit, returns.index[-1], True, context.asset)
        if prev.asset == context.asset and prev.last_stamp in returns.index:
            new = returns[returns.index > prev.last_stamp]
            fit = prev.fit
        else:
            # parameters fitted on another series (the transfer check): restart the recursion
            # on this series' trailing window from its sample variance
            new = returns.iloc[-self.spec.window_days:]
            v0 = float(np.var(100.0 * new.to_numpy()))
            fit = replace(prev.fit, last_resid=np.zeros_like(prev.fit.last_resid),
                          last_var=np.full_like(prev.fit.last_var, v0))
        return GarchState(condition(fit, new.to_numpy()), returns.index[-1], False, context.asset)

    def sample(self, state: GarchState, horizon: int, num_paths: int, rng: np.random.Generator) -> np.ndarray:
        return simulate_garch(state.fit, horizon, num_paths, rng)

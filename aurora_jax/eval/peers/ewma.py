"""RiskMetrics EWMA Gaussian peer: ``s2_{t+1} = lam s2_t + (1 - lam) r_t^2`` (lam = 0.94),
started from the mean square of the first ``init_days`` returns of the trailing
``window_days``; per-step returns ``N(0, s2_{T+1})`` for every day ahead (square-root-of-time
scaling of the h-day return)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.forecaster import ForecastContext


@dataclass(frozen=True)
class EwmaPeer:
    name: str = "ewma"
    lam: float = 0.94
    window_days: int = 500
    init_days: int = 30

    def __post_init__(self) -> None:
        if not 0 < self.lam < 1:
            raise InvalidParameterError("eval.peers.ewma.lam", self.lam, "(0, 1)")
        if not 2 <= self.init_days < self.window_days:
            raise InvalidParameterError("eval.peers.ewma.init_days", self.init_days, "2 .. window_days-1")

    def fit(self, returns: pd.Series, context: ForecastContext) -> float:
        r = returns.to_numpy(dtype=float)[-self.window_days:]
        if r.shape[0] <= self.init_days:
            raise InvalidParameterError("returns", r.shape[0], f"> {self.init_days} returns")
        s2 = float(np.mean(r[: self.init_days] ** 2))
        for x in r:
            s2 = self.lam * s2 + (1.0 - self.lam) * x * x
        return s2

    def sample(self, state: float, horizon: int, num_paths: int, rng: np.random.Generator) -> np.ndarray:
        return np.sqrt(state) * rng.standard_normal((num_paths, horizon))

"""DVOL-scaled Gaussian peer: per-step returns ``N(0, s^2)`` with ``s = IV / 100 / sqrt(365)``
from the last implied-vol value (annualised %, e.g. Deribit DVOL) observable at ``as_of``.
Unavailable (``ModelUnavailableError``) when there is no value younger than ``max_stale_days``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.errors import ModelUnavailableError
from aurora_jax.eval.forecaster import ForecastContext


@dataclass(frozen=True)
class DvolPeer:
    name: str = "dvol_gaussian"
    feature: str = "iv_30d_atm"
    days_per_year: float = 365.0
    max_stale_days: float = 3.0

    def fit(self, returns: pd.Series, context: ForecastContext) -> float:
        iv = context.view.series(context.asset, self.feature)
        if iv is None or len(iv.dropna()) == 0:
            raise ModelUnavailableError(f"{self.name}: no {self.feature} for {context.asset} at {context.as_of}")
        iv = iv.dropna()
        age = context.as_of - iv.index[-1]
        if age > pd.Timedelta(days=self.max_stale_days):
            raise ModelUnavailableError(f"{self.name}: last {self.feature} is {age} old at {context.as_of}")
        return float(iv.iloc[-1]) / 100.0 / np.sqrt(self.days_per_year)

    def sample(self, state: float, horizon: int, num_paths: int, rng: np.random.Generator) -> np.ndarray:
        return state * rng.standard_normal((num_paths, horizon))

"""Bootstrap peer: per-step returns drawn iid with replacement from the trailing
``window_days`` (365) daily log-returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.forecaster import ForecastContext


@dataclass(frozen=True)
class BootstrapPeer:
    name: str = "bootstrap"
    window_days: int = 365

    def __post_init__(self) -> None:
        if self.window_days < 30:
            raise InvalidParameterError("eval.peers.bootstrap.window_days", self.window_days, ">= 30")

    def fit(self, returns: pd.Series, context: ForecastContext) -> np.ndarray:
        r = returns.to_numpy(dtype=float)[-self.window_days:]
        if r.shape[0] < self.window_days:
            raise InvalidParameterError("returns", r.shape[0], f">= {self.window_days} returns")
        return r

    def sample(self, state: np.ndarray, horizon: int, num_paths: int, rng: np.random.Generator) -> np.ndarray:
        return state[rng.integers(0, state.shape[0], size=(num_paths, horizon))]

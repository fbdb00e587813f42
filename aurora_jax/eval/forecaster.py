"""The forecaster protocol the walk-forward harness evaluates, and the as-of view it gets.

A forecaster has a ``name`` and two methods:

* ``fit(returns, context) -> state``: ``returns`` are the daily log-returns (natural log,
  fractions — not %) observable at ``context.as_of``, indexed by the time each became
  observable (the close stamp). ``context.refit`` says whether the schedule asks for a new
  fit; when it is False and ``context.previous_state`` is given, a forecaster may keep its
  parameters and only condition on the new returns (what GARCH does between refits). The same
  call with ``refit=False`` and a state fitted on another asset is the transfer check.
* ``sample(state, horizon, num_paths, rng) -> paths`` of shape ``(num_paths, horizon)``:
  **per-step** daily log-returns (fractions) for days ``1 .. horizon`` after ``as_of``; the
  harness takes cumulative sums for the h-day log-return. ``rng`` is a numpy Generator (a JAX
  forecaster derives its key from it, e.g. ``jax.random.key(rng.integers(2**31))``).

A forecaster that cannot answer at some date (e.g. no implied vol yet) raises
:class:`aurora_jax.errors.ModelUnavailableError`; the harness skips that method at that date.
Anything else a forecaster needs (implied vol, other assets) comes from ``context.view``, which
only returns values stamped ``<= as_of``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError


class AsOfView:
    """Read access to series, truncated at ``as_of`` (inclusive)."""

    def __init__(self, loader: Callable[[str, str], pd.Series | None], as_of: pd.Timestamp):
        self._loader = loader
        self.as_of = pd.Timestamp(as_of)

    def series(self, asset: str, feature: str) -> pd.Series | None:
        s = self._loader(asset, feature)
        if s is None:
            return None
        return s[s.index <= self.as_of]


@dataclass(frozen=True)
class ForecastContext:
    as_of: pd.Timestamp
    asset: str
    view: AsOfView
    refit: bool = True
    previous_state: Any = None


@runtime_checkable
class Forecaster(Protocol):
    name: str

    def fit(self, returns: pd.Series, context: ForecastContext) -> Any: ...

    def sample(
        self, state: Any, horizon: int, num_paths: int, rng: np.random.Generator
    ) -> Float[np.ndarray, "paths horizon"]: ...


def check_paths(paths: np.ndarray, num_paths: int, horizon: int, name: str) -> np.ndarray:
    """The boundary check on what ``sample`` returned."""
    arr = np.asarray(paths, dtype=float)
    if arr.shape != (num_paths, horizon):
        raise InvalidParameterError(
            f"{name}.sample output", arr.shape, f"shape (num_paths={num_paths}, horizon={horizon})"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(f"{name}.sample output", "non-finite values", "finite log-returns")
    return arr

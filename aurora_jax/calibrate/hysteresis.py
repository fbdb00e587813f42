"""Ordinal state filter with hysteresis and a minimum dwell time.

States are ``0 .. K`` separated by increasing thresholds ``c_0 < ... < c_{K-1}``. From state
``s`` the filter moves up to the highest ``j > s`` with ``x_t > c_{j-1} + band`` and down to
the lowest ``j < s`` with ``x_t < c_j - band``; a move is allowed only when the current state
has lasted at least ``min_dwell`` steps. A NaN score keeps the state. The filter is causal:
the state at ``t`` depends on ``x_0 .. x_t`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from jaxtyping import Float, Int

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class HysteresisFilter:
    """``thresholds`` (increasing), hysteresis half-``band`` and ``min_dwell`` steps."""

    thresholds: tuple[float, ...]
    band: float = 0.0
    min_dwell: int = 1

    def __post_init__(self) -> None:
        th = tuple(float(t) for t in self.thresholds)
        if len(th) < 1 or any(b <= a for a, b in pairwise(th)):
            raise InvalidParameterError(
                "thresholds", self.thresholds, "a non-empty strictly increasing sequence"
            )
        if self.band < 0:
            raise InvalidParameterError("band", self.band, ">= 0")
        if self.min_dwell < 1:
            raise InvalidParameterError("min_dwell", self.min_dwell, "an integer >= 1")
        object.__setattr__(self, "thresholds", th)

    def plain_state(self, x: float) -> int:
        """The state without hysteresis: the number of thresholds below ``x``."""
        return int(np.searchsorted(np.asarray(self.thresholds), x, side="right"))

    def step(self, state: int | None, dwell: int, x: float) -> tuple[int | None, int]:
        """One causal step: ``(state, steps in state) -> (state', steps in state')``."""
        if not np.isfinite(x):
            return state, dwell + 1 if state is not None else 0
        if state is None:
            return self.plain_state(x), 1
        th = self.thresholds
        new = state
        for j in range(len(th), state, -1):  # highest state above
            if x > th[j - 1] + self.band:
                new = j
                break
        if new == state:
            for j in range(state):  # lowest state below
                if x < th[j] - self.band:
                    new = j
                    break
        if new != state and dwell >= self.min_dwell:
            return new, 1
        return state, dwell + 1

    def __call__(self, x: Float[np.ndarray, " t"] | Sequence[float]) -> Int[np.ndarray, " t"]:
        """States for the whole sequence (``-1`` before the first finite score)."""
        x = np.asarray(x, dtype=float)
        out = np.full(x.shape[0], -1, dtype=int)
        state: int | None = None
        dwell = 0
        for t, v in enumerate(x):
            state, dwell = self.step(state, dwell, float(v))
            out[t] = -1 if state is None else state
        return out

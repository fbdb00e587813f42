"""Change-point detectors: Page–Hinkley and two-sided CUSUM (streaming, reset after an alarm).

Page–Hinkley (two-sided), with ``xbar_t`` the running mean since the last reset:

    m_t = sum_{i<=t} (x_i - xbar_i - delta),  PH+_t = m_t - min_{s<=t} m_s
    m'_t = sum_{i<=t} (x_i - xbar_i + delta), PH-_t = max_{s<=t} m'_s - m'_t

alarm when ``max(PH+, PH-) > threshold``.

CUSUM on ``z = (x - mu0) / sd0`` where ``mu0, sd0`` are estimated on the first ``burn_in``
observations after each reset:

    S+_t = max(0, S+_{t-1} + z_t - k),  S-_t = max(0, S-_{t-1} - z_t - k),

alarm when ``max(S+, S-) > h``. Both are pure ``init/update`` pairs plus a ``detect`` helper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class PHState:
    n: int = 0
    mean: float = 0.0
    m_up: float = 0.0
    min_up: float = 0.0
    m_dn: float = 0.0
    max_dn: float = 0.0


@dataclass(frozen=True)
class PageHinkley:
    delta: float = 0.05
    threshold: float = 10.0

    def __post_init__(self) -> None:
        if self.delta < 0:
            raise InvalidParameterError("delta", self.delta, ">= 0")
        if self.threshold <= 0:
            raise InvalidParameterError("threshold", self.threshold, "> 0")

    def init(self) -> PHState:
        return PHState()

    def update(self, s: PHState, x: float) -> tuple[PHState, bool, float]:
        """``(state, x) -> (state', alarm, statistic)``; the state resets after an alarm."""
        n = s.n + 1
        mean = s.mean + (x - s.mean) / n
        m_up = s.m_up + x - mean - self.delta
        m_dn = s.m_dn + x - mean + self.delta
        min_up = min(s.min_up, m_up)
        max_dn = max(s.max_dn, m_dn)
        stat = max(m_up - min_up, max_dn - m_dn)
        if stat > self.threshold:
            return PHState(), True, stat
        return PHState(n, mean, m_up, min_up, m_dn, max_dn), False, stat


@dataclass(frozen=True)
class CusumState:
    burn: tuple[float, ...] = ()
    mu0: float = float("nan")
    sd0: float = float("nan")
    s_up: float = 0.0
    s_dn: float = 0.0


@dataclass(frozen=True)
class Cusum:
    k: float = 0.5
    h: float = 5.0
    burn_in: int = 30
    min_sd: float = 1e-12

    def __post_init__(self) -> None:
        if self.k < 0:
            raise InvalidParameterError("k", self.k, ">= 0")
        if self.h <= 0:
            raise InvalidParameterError("h", self.h, "> 0")
        if self.burn_in < 2:
            raise InvalidParameterError("burn_in", self.burn_in, "an integer >= 2")

    def init(self) -> CusumState:
        return CusumState()

    def update(self, s: CusumState, x: float) -> tuple[CusumState, bool, float]:
        if not np.isfinite(s.mu0):
            burn = s.burn + (float(x),)
            if len(burn) < self.burn_in:
                return replace(s, burn=burn), False, 0.0
            arr = np.asarray(burn)
            return CusumState((), float(arr.mean()), max(float(arr.std(ddof=1)), self.min_sd)), False, 0.0
        z = (x - s.mu0) / s.sd0
        up = max(0.0, s.s_up + z - self.k)
        dn = max(0.0, s.s_dn - z - self.k)
        stat = max(up, dn)
        if stat > self.h:
            return CusumState(), True, stat
        return replace(s, s_up=up, s_dn=dn), False, stat


def detect(detector: PageHinkley | Cusum, x: Float[np.ndarray, " t"]) -> tuple[np.ndarray, np.ndarray]:
    """Run ``detector`` over ``x``: ``(alarm flags (bool, t), statistic (t))``. NaNs are skipped."""
    x = np.asarray(x, dtype=float)
    alarms = np.zeros(x.shape[0], dtype=bool)
    stats = np.zeros(x.shape[0])
    s = detector.init()
    for t, v in enumerate(x):
        if not np.isfinite(v):
            continue
        s, alarms[t], stats[t] = detector.update(s, float(v))
    return alarms, stats

"""Barndorff-Nielsen–Shephard jump test on intraday returns (numpy).

For a day with ``m`` intraday log-returns ``r_1..r_m``:

    RV = sum r_i^2,
    BV = mu_1^{-2} m/(m-1) sum_{i>=2} |r_i| |r_{i-1}|,                        mu_1 = sqrt(2/pi)
    TQ = m mu_{4/3}^{-3} m/(m-2) sum_{i>=3} |r_i r_{i-1} r_{i-2}|^{4/3},   mu_{4/3} = 2^{2/3} G(7/6)/G(1/2)

RV estimates integrated variance plus squared jumps, BV only the integrated variance. The
ratio statistic (Huang & Tauchen 2005)

    z = ((RV - BV)/RV) / sqrt((pi^2/4 + pi - 5) / m * max(1, TQ/BV^2))

is asymptotically N(0,1) on days without jumps; a day is a jump day when ``z`` exceeds the
``1 - alpha`` normal quantile (one-sided).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from aurora_jax.errors import InvalidParameterError

MU1 = np.sqrt(2.0 / np.pi)
MU43 = 2 ** (2.0 / 3.0) * special.gamma(7.0 / 6.0) / special.gamma(0.5)
THETA = np.pi**2 / 4 + np.pi - 5


@dataclass(frozen=True)
class BNSResult:
    z: np.ndarray
    p_value: np.ndarray
    jump_day: np.ndarray
    rv: np.ndarray
    bv: np.ndarray
    tq: np.ndarray

    @property
    def jump_frequency(self) -> float:
        return float(np.mean(self.jump_day))


def bns_test(intraday: np.ndarray, alpha: float = 0.01) -> BNSResult:
    """Test every row (a day of ``m >= 3`` intraday returns) for jumps at level ``alpha``."""
    r = np.asarray(intraday, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 3:
        raise InvalidParameterError("intraday", f"shape {r.shape}", "a (days, m>=3) array")
    if not np.all(np.isfinite(r)):
        raise InvalidParameterError("intraday", "non-finite values", "finite floats")
    if not (0.0 < alpha < 1.0):
        raise InvalidParameterError("alpha", alpha, "0 < alpha < 1")
    m = r.shape[1]
    a = np.abs(r)
    rv = np.sum(r**2, axis=1)
    bv = MU1**-2 * (m / (m - 1)) * np.sum(a[:, 1:] * a[:, :-1], axis=1)
    tq = (
        m
        * MU43**-3
        * (m / (m - 2))
        * np.sum((a[:, 2:] * a[:, 1:-1] * a[:, :-2]) ** (4 / 3), axis=1)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rv > 0, (rv - bv) / rv, 0.0)
        scale = np.sqrt(THETA / m * np.maximum(1.0, np.where(bv > 0, tq / bv**2, 1.0)))
    z = ratio / scale
    p = stats.norm.sf(z)
    return BNSResult(z=z, p_value=p, jump_day=p < alpha, rv=rv, bv=bv, tq=tq)


def intraday_matrix(price: pd.Series, per_day: int = 24) -> pd.DataFrame:
    """Hourly prices (index = bar open time, UTC) -> one row per UTC day of ``per_day``
    log-returns (complete days only)."""
    if not (price > 0).all():
        raise InvalidParameterError("price", "non-positive values", "prices > 0")
    r = np.log(price).diff().dropna()
    day = r.index.floor("D")
    counts = r.groupby(day).size()
    full = counts[counts == per_day].index
    r = r[day.isin(full)]
    vals = r.to_numpy().reshape(-1, per_day)
    return pd.DataFrame(vals, index=full)

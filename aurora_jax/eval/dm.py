"""Diebold–Mariano test of equal predictive accuracy, with the Harvey–Leybourne–Newbold
small-sample correction.

For loss differentials ``d_t = L^A_t - L^B_t`` (t = 1..T), ``dbar`` their mean and
``V = gamma_0 + 2 sum_{k=1..K} (1 - k/(K+1)) gamma_k`` (Newey–West, Bartlett weights; ``K``
= number of overlapping forecast steps minus one), the statistic is

    DM = dbar / sqrt(V / T),   DM* = DM * sqrt((T + 1 - 2(K+1) + (K+1) K / T) / T),

compared with Student-t(T - 1). Negative values favour ``A``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from scipy.stats import t as student_t

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class DMResult:
    stat: float
    p_value: float
    mean_diff: float
    n: int
    lag: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def diebold_mariano(loss_a: Float[np.ndarray, " t"], loss_b: Float[np.ndarray, " t"], lag: int = 0) -> DMResult:
    a = np.asarray(loss_a, dtype=float)
    b = np.asarray(loss_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidParameterError("loss_b", b.shape, f"the shape of loss_a {a.shape}")
    if lag < 0:
        raise InvalidParameterError("lag", lag, ">= 0")
    d = a - b
    d = d[np.isfinite(d)]
    T = d.shape[0]
    if T < 3:
        return DMResult(float("nan"), float("nan"), float(np.mean(d)) if T else float("nan"), T, lag)
    dbar = float(np.mean(d))
    dc = d - dbar
    v = float(np.mean(dc * dc))
    for k in range(1, min(lag, T - 1) + 1):
        v += 2.0 * (1.0 - k / (lag + 1.0)) * float(np.mean(dc[k:] * dc[:-k]))
    if v <= 0:
        v = float(np.mean(dc * dc))
    if v <= 0:
        return DMResult(float("nan"), float("nan"), dbar, T, lag)
    dm = dbar / np.sqrt(v / T)
    h = lag + 1
    corr = np.sqrt(max((T + 1 - 2 * h + h * (h - 1) / T) / T, 1e-12))
    stat = float(dm * corr)
    p = float(2 * student_t.sf(abs(stat), df=T - 1))
    return DMResult(stat, p, dbar, T, lag)

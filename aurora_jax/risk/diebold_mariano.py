"""Diebold–Mariano test of equal predictive accuracy of two loss series, as a risk backtest.

The statistic is the project's one implementation, :func:`aurora_jax.eval.dm.diebold_mariano`
(loss differentials ``d_t = L1_t - L2_t``, Newey–West long-run variance with ``h - 1`` lags
for ``h``-step forecasts, Harvey–Leybourne–Newbold correction, Student-t(T-1), two-sided).
This wrapper validates the input at the boundary (typed errors instead of NaN results) and
returns the :class:`HypothesisTestResult` shared by the risk backtests. A negative statistic
means model 1 has the smaller loss.
"""

from __future__ import annotations

import numpy as np

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.dm import diebold_mariano as _dm
from aurora_jax.risk.coverage_tests import HypothesisTestResult


def diebold_mariano(
    loss1: np.ndarray, loss2: np.ndarray, horizon: int, size: float
) -> HypothesisTestResult:
    """Two-sided DM test (HLN-corrected) of ``E[L1 - L2] = 0`` for ``horizon``-step forecasts."""
    a, b = np.asarray(loss1, float), np.asarray(loss2, float)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidParameterError("loss2", b.shape, f"1-D, same shape as loss1 {a.shape}")
    T = a.size
    if T < 10 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InvalidParameterError("loss1", T, "at least 10 finite values")
    if horizon < 1 or horizon >= T // 2:
        raise InvalidParameterError("horizon", horizon, f"1 <= h < T/2 = {T // 2}")
    if not 0 < size < 1:
        raise InvalidParameterError("size", size, "in (0, 1)")
    if np.all(a - b == (a - b)[0]):
        raise InvalidParameterError("loss1 - loss2", "constant", "loss differentials that vary")
    r = _dm(a, b, lag=horizon - 1)
    return HypothesisTestResult("diebold_mariano", r.stat, r.p_value, size)

"""Tail estimators (numpy): Hill tail index with a threshold rule, and the extremal index.

Hill (1975). For the ``k`` largest order statistics ``X_(1) >= ... >= X_(k) > X_(k+1) > 0``
of a sample with a regularly varying right tail ``P(X > x) = x^{-1/xi} L(x)``,

    xi_hat(k) = (1/k) sum_{i=1..k} log X_(i) - log X_(k+1),

so the tail index is ``alpha = 1/xi``. For an exact Pareto tail above ``X_(k+1)``,
``k xi_hat / xi ~ Gamma(k, 1)``: ``xi_hat`` is unbiased with standard error ``xi/sqrt(k)``.

The estimator looks at the **right** tail of ``x``: pass ``-returns`` for the loss tail of
a long position, ``|returns|`` for both tails together. Non-positive values never enter.

Threshold rules (how ``k`` is chosen when not given):

- ``"sqrt"``: ``k = floor(sqrt(n))`` (n = sample size), the classical rate-consistent choice;
- ``"fraction"``: ``k = ceil(fraction * n)`` (a fixed upper-quantile threshold).

In both, ``k`` is clipped to ``k_min .. (#positive values - 1)``.

Extremal index (Ferro & Segers 2003, intervals estimator). With exceedance times
``S_1 < ... < S_N`` of ``threshold`` and gaps ``T_i = S_{i+1} - S_i``,

    theta = min(1, 2 (sum T_i)^2 / ((N-1) sum T_i^2))                    if max T_i <= 2
    theta = min(1, 2 (sum (T_i - 1))^2 / ((N-1) sum (T_i - 1)(T_i - 2)))  otherwise.

``1/theta`` is the mean cluster size of exceedances (``theta = 1`` for independent data).

Defaults mirror ``configs/sim/default.yaml`` (``estimators.tails``); callers with a config
pass its values explicitly.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from aurora_jax.errors import InvalidParameterError

ThresholdRule = Literal["sqrt", "fraction"]
THRESHOLD_RULES: tuple[str, ...] = ("sqrt", "fraction")


def _as_finite_1d(x, field: str = "x") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InvalidParameterError(field, "empty array", "a non-empty 1-D array of finite floats")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InvalidParameterError(
            field, f"{int(bad.sum())} non-finite values", "finite floats (no NaN/inf)"
        )
    return arr


def hill_curve(x, k_max: int | None = None) -> np.ndarray:
    """Hill estimates ``xi_hat(k)`` for ``k = 1 .. k_max`` (index ``k-1``), right tail of ``x``."""
    arr = _as_finite_1d(x)
    pos = np.sort(arr[arr > 0])[::-1]
    if pos.size < 2:
        raise InvalidParameterError(
            "x", f"{pos.size} positive values", "at least 2 positive values (right tail)"
        )
    k_max = pos.size - 1 if k_max is None else min(int(k_max), pos.size - 1)
    logs = np.log(pos[: k_max + 1])
    cums = np.cumsum(logs[:k_max])
    ks = np.arange(1, k_max + 1)
    return cums / ks - logs[1 : k_max + 1]


def choose_k(
    x,
    threshold_rule: ThresholdRule = "sqrt",
    fraction: float = 0.05,
    k_min: int = 10,
) -> int:
    """The number of upper order statistics ``k`` picked by ``threshold_rule`` (module doc)."""
    arr = _as_finite_1d(x)
    n = arr.size
    n_pos = int((arr > 0).sum())
    if threshold_rule not in THRESHOLD_RULES:
        raise InvalidParameterError("threshold_rule", threshold_rule, f"one of {THRESHOLD_RULES}")
    if not (0.0 < fraction < 1.0):
        raise InvalidParameterError("fraction", fraction, "0 < fraction < 1")
    if isinstance(k_min, bool) or int(k_min) != k_min or k_min < 1:
        raise InvalidParameterError("k_min", k_min, "an integer >= 1")
    if n_pos < 2:
        raise InvalidParameterError("x", f"{n_pos} positive values", "at least 2 positive values")
    if threshold_rule == "sqrt":
        k = math.floor(math.sqrt(n))
    else:
        k = math.ceil(fraction * n)
    return int(min(max(k, int(k_min)), n_pos - 1))


def hill_tail_index(
    x,
    k: int | None = None,
    threshold_rule: ThresholdRule = "sqrt",
    fraction: float = 0.05,
    k_min: int = 10,
) -> tuple[float, int]:
    """Hill estimate of the extreme-value index ``xi = 1/alpha`` of the right tail of ``x``.

    Returns ``(xi, k_used)``. ``k`` (number of upper order statistics) overrides the rule.
    Raises :class:`InvalidParameterError` for non-finite input, fewer than 2 positive values,
    or ``k`` outside ``1 .. (#positive values - 1)``.
    """
    arr = _as_finite_1d(x)
    n_pos = int((arr > 0).sum())
    if n_pos < 2:
        raise InvalidParameterError(
            "x", f"{n_pos} positive values", "at least 2 positive values (right tail)"
        )
    if k is None:
        k = choose_k(arr, threshold_rule, fraction, k_min)
    else:
        if isinstance(k, bool) or int(k) != k or not (1 <= int(k) <= n_pos - 1):
            raise InvalidParameterError("k", k, f"an integer in 1 .. {n_pos - 1} (#positive - 1)")
        k = int(k)
    top = np.sort(arr[arr > 0])[::-1][: k + 1]
    xi = float(np.mean(np.log(top[:k])) - np.log(top[k]))
    return xi, k


def extremal_index(x, threshold: float) -> float:
    """Ferro–Segers intervals estimate of the extremal index of ``x`` above ``threshold``.

    Returns ``theta`` in ``(0, 1]``. Needs at least 2 exceedances (``x > threshold``).
    """
    arr = _as_finite_1d(x)
    thr = float(threshold)
    if not math.isfinite(thr):
        raise InvalidParameterError("threshold", threshold, "a finite float")
    times = np.flatnonzero(arr > thr)
    if times.size < 2:
        raise InvalidParameterError(
            "threshold",
            threshold,
            f"a level exceeded at least twice (exceeded {times.size} times)",
        )
    gaps = np.diff(times).astype(np.float64)
    m = gaps.size  # N - 1
    if gaps.max() <= 2:
        theta = 2.0 * gaps.sum() ** 2 / (m * np.sum(gaps**2))
    else:
        denom = np.sum((gaps - 1.0) * (gaps - 2.0))
        theta = 2.0 * np.sum(gaps - 1.0) ** 2 / (m * denom) if denom > 0 else 1.0
    return float(min(1.0, theta))

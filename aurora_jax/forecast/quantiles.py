"""Quantile cones and threshold probabilities from simulated price paths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError


def quantile_column(level: float) -> str:
    """``0.05 -> "q05"``, ``0.5 -> "q50"``, ``0.025 -> "q02.5"``."""
    pct = 100.0 * level
    return f"q{int(round(pct)):02d}" if abs(pct - round(pct)) < 1e-9 else f"q{pct:04.1f}"


def check_quantile_levels(levels: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(float(q) for q in levels)
    if not levels:
        raise InvalidParameterError("quantiles", list(levels), "a non-empty list of levels in (0, 1)")
    bad = [q for q in levels if not (0.0 < q < 1.0) or not np.isfinite(q)]
    if bad:
        raise InvalidParameterError("quantiles", bad, "levels strictly between 0 and 1")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise InvalidParameterError("quantiles", list(levels), "strictly increasing levels")
    return levels


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ks = tuple(float(k) for k in thresholds)
    bad = [k for k in ks if not np.isfinite(k) or k <= 0]
    if bad:
        raise InvalidParameterError("thresholds", bad, "positive finite price levels")
    if any(b <= a for a, b in zip(ks, ks[1:])):
        raise InvalidParameterError("thresholds", list(ks), "strictly increasing price levels")
    return ks


def path_quantiles(
    prices: Float[np.ndarray, "paths steps"], levels: Sequence[float]
) -> Float[np.ndarray, "steps levels"]:
    """Empirical quantiles per step; monotone across levels by construction (sorted sample),
    and made exactly non-decreasing against floating-point interpolation noise."""
    q = np.quantile(prices, np.asarray(levels), axis=0).T
    return np.maximum.accumulate(q, axis=1)


def threshold_probabilities(
    prices: Float[np.ndarray, "paths steps"], spot: float, thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """For each K: P(price_T < K), P(price_T > K) and P(touch K before T), where "touch" means
    some step's price is on the other side of K from today's ``spot`` (or equal to K)."""
    out = []
    final = prices[:, -1]
    lo, hi = prices.min(axis=1), prices.max(axis=1)
    for k in thresholds:
        touch = hi >= k if k >= spot else lo <= k
        out.append({
            "threshold": float(k),
            "p_below": float(np.mean(final < k)),
            "p_above": float(np.mean(final > k)),
            "p_touch": float(np.mean(touch)),
        })
    return out

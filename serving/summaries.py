"""Quantiles from paths sorted once per step.

``numpy.quantile`` (method ``linear``) partitions the sample again for every call; a forecast that
is summarised for several requests sorts each step once and reads every level from the sorted
rows with the same arithmetic as numpy:

    v = (n - 1) tau,   i = floor(v),   g = v - i,   d = x_(i+1) - x_(i)
    Q(tau) = x_(i) + d g            (g <  0.5)
    Q(tau) = x_(i+1) - d (1 - g)    (g >= 0.5)

(0-based order statistics), so the result equals ``numpy.quantile(x, tau)`` bit for bit; a
cumulative maximum across levels then removes floating-point crossing exactly like
:func:`aurora_jax.forecast.quantiles.path_quantiles`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jaxtyping import Float


def sorted_quantiles(
    sorted_steps: Float[np.ndarray, "steps paths"], levels: Sequence[float]
) -> Float[np.ndarray, "steps levels"]:
    """Per-step quantiles at ``levels`` (each row of ``sorted_steps`` sorted ascending)."""
    n = sorted_steps.shape[1]
    v = (n - 1) * np.asarray(levels, dtype=float)
    lo = np.floor(v).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    g = v - lo
    a, b = sorted_steps[:, lo], sorted_steps[:, hi]
    d = b - a
    q = np.where(g >= 0.5, b - d * (1.0 - g), a + d * g)
    return np.maximum.accumulate(q, axis=1)

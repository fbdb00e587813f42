"""How much CRPS a recalibration chosen with hindsight could still remove from a forecaster.

For forecasts ``F_t`` with probability integral transforms ``u_t = F_t(y_t)``, let ``G`` be the
empirical CDF of the ``u_t`` within a group (one horizon, or one horizon x regime). The
PIT-recalibrated forecast ``F~_t = G o F_t`` has the quantile function

    Q~_t(tau) = Q_t(G^{-1}(tau))

and is probabilistically calibrated on that group by construction (Gneiting, Balabdaoui &
Raftery 2007). ``CRPS(F) - CRPS(F~)`` estimates the miscalibration part of a method's score on
the evaluated period: roughly what a post-processing of its quantiles (the conformal layer is
one) could recover if it knew the period's PITs in advance; the rest of the gap to another
method is sharpness, which needs more information. It is an estimate, not a bound (``G o F``
makes the PITs uniform but is not the CRPS-optimal map), and an in-sample one (``G`` is fitted
on the outcomes it scores): optimistic for calibration, not a forecast anyone could issue.

Quantile functions are represented on the midpoint grid ``tau_j = (j + 1/2) / m``; the CRPS of a
grid is the sample CRPS of its ``m`` values. ``F~`` stays inside the range of ``F``'s grid, so the
gain of an under-dispersed forecaster whose outcomes fall beyond ``tau_0`` / ``tau_{m-1}`` is
understated. Groups with fewer than ``min_n`` forecasts are left as they are (``G`` = identity).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.scoring import crps_rows


def grid_levels(size: int) -> np.ndarray:
    """Midpoint levels ``(j + 1/2) / size``, ``j = 0 .. size - 1``."""
    if int(size) < 2:
        raise InvalidParameterError("eval.recalibration.grid", size, "at least 2 levels (0 disables)")
    return (np.arange(int(size)) + 0.5) / int(size)


def recalibrate(grids: Float[np.ndarray, "n m"], pits: Float[np.ndarray, " n"]) -> np.ndarray:
    """``Q_t(G^{-1}(tau_j))`` for every row: the grids pushed through the PITs' empirical CDF
    (linear between grid levels, held at the outermost grid values beyond them)."""
    g = np.asarray(grids, dtype=float)
    taus = grid_levels(g.shape[1])
    inv = np.quantile(np.asarray(pits, dtype=float), taus)
    return np.stack([np.interp(inv, taus, row) for row in np.sort(g, axis=1)])


def recalibrated_crps(
    grids: Float[np.ndarray, "n m"],
    pits: Float[np.ndarray, " n"],
    y: Float[np.ndarray, " n"],
    groups: np.ndarray | None = None,
    min_n: int = 30,
) -> np.ndarray:
    """Per-row CRPS after PIT recalibration within each group (as issued in groups under ``min_n``;
    the CRPS as issued is :func:`~aurora_jax.eval.scoring.crps_rows` of the grids)."""
    g = np.asarray(grids, dtype=float)
    pits = np.asarray(pits, dtype=float)
    y = np.asarray(y, dtype=float)
    if g.ndim != 2 or pits.shape != (g.shape[0],) or y.shape != (g.shape[0],):
        raise InvalidParameterError("grids", g.shape, "(n, m) with n pits and n outcomes")
    if not (np.all(np.isfinite(pits)) and np.all((pits >= 0) & (pits <= 1))):
        raise InvalidParameterError("pits", "outside [0, 1]", "probabilities in [0, 1]")
    after = np.empty(g.shape[0])
    labels = np.zeros(g.shape[0], dtype=int) if groups is None else np.asarray(groups)
    for lab in np.unique(labels):
        k = labels == lab
        after[k] = crps_rows(recalibrate(g[k], pits[k]) if int(k.sum()) >= int(min_n) else g[k], y[k])
    return after

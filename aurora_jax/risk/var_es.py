"""Value-at-Risk and Expected Shortfall of forecast paths, per horizon step.

For simulated prices ``P[i, h]`` (path ``i``, step ``h``) and spot ``P_0`` the loss is
``L = -log(P_h / P_0)`` (``returns="log"``) or ``L = 1 - P_h / P_0`` (``returns="simple"``).
With the order statistics ``L_(1) <= ... <= L_(n)`` and ``m = floor(n (1 - alpha))``:

    VaR_alpha = L_(n - m)                                   (the empirical alpha-quantile)
    ES_alpha  = [ sum_{j > n-m} L_(j) + (n (1-alpha) - m) L_(n-m) ] / (n (1 - alpha))

which is the Acerbi–Tasche estimator of ``E[L | L >= VaR]`` (exact for a discrete law;
it is coherent and equals the mean of the worst ``n(1-alpha)`` losses when that is an
integer). Both are positive numbers for losses, in return units.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float

from aurora_jax.errors import InvalidParameterError

RETURN_KINDS = ("log", "simple")


def path_losses(
    paths: Float[Array, "paths horizon"], spot: float | Float[Array, ""], returns: str
) -> Float[Array, "paths horizon"]:
    """Loss per path and step: ``-log(P_h/P_0)`` or ``1 - P_h/P_0``."""
    rel = paths / spot
    if returns == "log":
        return -jnp.log(rel)
    return 1.0 - rel


@eqx.filter_jit
def _var_es_losses(
    losses: Float[Array, "paths horizon"], levels: tuple[float, ...]
) -> tuple[Float[Array, "levels horizon"], Float[Array, "levels horizon"]]:
    # Only the upper tail is needed: top_k of the largest m+1 losses (XLA's CPU top_k is
    # ~20x faster than a full sort of 10k x 14 paths).
    n = losses.shape[0]
    ms = [int(np.floor(n * (1.0 - a) + 1e-9)) for a in levels]
    top, _ = jax.lax.top_k(losses.T, max(ms) + 1)  # (horizon, k), descending
    # without the barrier XLA folds top_k + the slices below back into a full sort (20x slower)
    top = jax.lax.optimization_barrier(top)
    vs, es = [], []
    for a, m in zip(levels, ms):
        tail_mass = n * (1.0 - a)
        var = top[:, m]  # L_(n-m)
        tail_sum = jnp.sum(top[:, :m], axis=1)
        vs.append(var)
        es.append((tail_sum + (tail_mass - m) * var) / tail_mass)
    return jnp.stack(vs), jnp.stack(es)


def _check_levels(levels: Sequence[float], field: str = "levels") -> tuple[float, ...]:
    lv = tuple(float(a) for a in levels)
    if not lv or any(not (0.0 < a < 1.0) for a in lv):
        raise InvalidParameterError(field, list(levels), "non-empty list of levels in (0, 1)")
    return lv


def var_es_from_losses(
    losses: Float[Array, "paths horizon"] | np.ndarray, levels: Sequence[float]
) -> tuple[Float[Array, "levels horizon"], Float[Array, "levels horizon"]]:
    """VaR and ES (see module docstring) of a loss sample, column by column."""
    lv = _check_levels(levels)
    x = jnp.asarray(losses)
    if x.ndim == 1:
        x = x[:, None]
    chex.assert_rank(x, 2)
    if x.shape[0] < 2:
        raise InvalidParameterError("losses", x.shape, "at least 2 samples (paths) per column")
    if min(x.shape[0] * (1 - a) for a in lv) < 1.0:
        raise InvalidParameterError(
            "levels", list(lv), f"levels with n (1 - alpha) >= 1 for n = {x.shape[0]} paths"
        )
    return _var_es_losses(x, lv)


def var_es_from_paths(
    paths: Float[Array, "paths horizon"] | np.ndarray,
    spot: float,
    levels: Sequence[float],
    returns: str,
) -> tuple[Float[Array, "levels horizon"], Float[Array, "levels horizon"]]:
    """VaR/ES per level and horizon step of simulated price paths (losses as in the docstring)."""
    if returns not in RETURN_KINDS:
        raise InvalidParameterError("returns", returns, f"one of {RETURN_KINDS}")
    p = np.asarray(paths)  # validated on the host, before anything is traced
    chex.assert_rank(p, 2)
    if not (np.isfinite(spot) and spot > 0):
        raise InvalidParameterError("spot", spot, "finite price > 0")
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise InvalidParameterError("paths", "non-positive or non-finite", "finite prices > 0")
    lv = _check_levels(levels)
    if min(p.shape[0] * (1 - a) for a in lv) < 1.0:
        raise InvalidParameterError("levels", list(lv), f"levels with n (1 - alpha) >= 1 for n = {p.shape[0]} paths")
    return _var_es_paths(jnp.asarray(p), jnp.asarray(spot), lv, returns)


@eqx.filter_jit
def _var_es_paths(
    paths: Float[Array, "paths horizon"], spot: Float[Array, ""], levels: tuple[float, ...], returns: str
) -> tuple[Float[Array, "levels horizon"], Float[Array, "levels horizon"]]:
    return _var_es_losses(path_losses(paths, spot, returns), levels)


def var_es_table(
    paths: np.ndarray, spot: float, levels: Sequence[float], returns: str
) -> pd.DataFrame:
    """Tidy table ``step, level, var, es`` (steps are 1-based horizon days)."""
    var, es = var_es_from_paths(paths, spot, levels, returns)
    var, es = np.asarray(var), np.asarray(es)
    rows = [
        {"step": h + 1, "level": float(a), "var": float(var[i, h]), "es": float(es[i, h])}
        for i, a in enumerate(levels)
        for h in range(var.shape[1])
    ]
    return pd.DataFrame(rows)

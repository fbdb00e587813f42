"""Stationarity (RevIN-like): past-only location/scale of a price-derived series.

For a series ``x`` on a time grid and a time ``t`` (an as-of), over the trailing calendar window
``W_t = (t - window_days, t]``::

    loc_t   = mean { x_s : s in W_t, x_s finite }
    scale_t = max(std_0 { x_s : s in W_t, x_s finite }, eps)     (population std, ddof = 0)
    z_s     = (x_s - loc_t) / scale_t,     x_s = z_s * scale_t + loc_t   (denormalisation)

Only rows with time ``<= t`` enter, so changing any later row leaves ``(loc_t, scale_t)``
unchanged. The engine normalises daily log-returns with the statistics of its as-of and keeps
them (``ModelInputs.revin_loc / revin_scale``) to map generated returns back. Defaults: 90 days
of daily bars (``model.inputs.revin`` in ``configs/model/engine.yaml``); the same functions work on
hourly bars (``window_days`` is calendar time, not a row count).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float

from aurora_jax.errors import InvalidParameterError


class RevIN(eqx.Module):
    """Kept normalisation parameters (``loc``, ``scale > 0``), any common shape."""

    loc: Float[Array, "..."]
    scale: Float[Array, "..."]

    def normalize(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        return (x - self.loc) / self.scale

    def denormalize(self, z: Float[Array, "..."]) -> Float[Array, "..."]:
        return z * self.scale + self.loc


def _check(window_days: float, min_count: int, eps: float) -> None:
    if not window_days > 0:
        raise InvalidParameterError("revin.window_days", window_days, "> 0 days")
    if int(min_count) < 2:
        raise InvalidParameterError("revin.min_count", min_count, "an integer >= 2")
    if not eps > 0:
        raise InvalidParameterError("revin.eps", eps, "> 0")


def revin_stats(
    series: pd.Series,
    as_of: pd.Timestamp | None = None,
    *,
    window_days: float = 90.0,
    min_count: int = 20,
    eps: float = 1e-6,
) -> tuple[float, float]:
    """``(loc, scale)`` at ``as_of`` (default: the last index) from rows in ``(as_of - W, as_of]``.

    Raises :class:`InvalidParameterError` (field ``series``) when fewer than ``min_count``
    finite values fall in the window.
    """
    _check(window_days, min_count, eps)
    t = series.index.max() if as_of is None else pd.Timestamp(as_of)
    inside = (series.index > t - pd.Timedelta(days=window_days)) & (series.index <= t)
    x = series[inside].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < int(min_count):
        raise InvalidParameterError(
            "series",
            f"{len(x)} finite values in {window_days} days before {t}",
            f">= {int(min_count)} (revin.min_count)",
        )
    return float(x.mean()), float(max(x.std(), eps))


def rolling_revin(
    series: pd.Series, *, window_days: float = 90.0, min_count: int = 20, eps: float = 1e-6
) -> pd.DataFrame:
    """``loc``/``scale`` at every row (past-only, as :func:`revin_stats`); NaN where the window
    holds fewer than ``min_count`` finite values."""
    _check(window_days, min_count, eps)
    s = series.astype(float).sort_index()
    roll = s.rolling(pd.Timedelta(days=window_days), min_periods=int(min_count))
    loc = roll.mean()
    scale = roll.std(ddof=0).clip(lower=eps)
    return pd.DataFrame({"loc": loc, "scale": scale.where(loc.notna())}, index=s.index)


def revin_from_config(series: pd.Series, revin_cfg, as_of=None) -> RevIN:
    """:func:`revin_stats` with settings from ``model.inputs.revin``, as a :class:`RevIN`."""
    loc, scale = revin_stats(
        series,
        as_of,
        window_days=float(revin_cfg.window_days),
        min_count=int(revin_cfg.min_count),
        eps=float(revin_cfg.eps),
    )
    return RevIN(jnp.asarray(loc, jnp.float32), jnp.asarray(scale, jnp.float32))

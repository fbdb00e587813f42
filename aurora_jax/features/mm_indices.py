"""Market-maker indices: Gamma_Squeeze_Index, Inventory_Unwind_Index, Basis_Pressure_Index.

Each index combines the components (raw signals ``c``) that are available at a row. Every
component is standardised past-only over the trailing ``z_window_days`` (``model.mm``)::

    z_t = (c_t - mean_W c) / std_W c,      x = sum_i z_i / sqrt(k),      I = B tanh(x / B)

with ``k`` the number of available components and ``B = bound`` (3), so ``I`` is in ``(-B, B)``,
is ``~x`` near 0 and is exactly 0 when no component is available (then ``used`` is empty).

Components (group in brackets; a component of a missing or stale group is not used):

* Gamma_Squeeze (dealer short-gamma stress; + = moves amplified):
  ``rv_over_iv = log rv_S - log iv`` [iv], ``iv_change = log iv_t - log iv_{t-S}`` [iv],
  ``option_oi = log`` option open interest (``oi_option*``) [derivs];
  without IV, ``vol_acceleration = log rv_S - log rv_L`` [price] stands in.
* Inventory_Unwind (+ = crowded longs / forced selling pressure):
  ``funding`` = S-day mean funding [derivs], ``futures_oi = log`` futures OI
  (``oi_fut*`` / ``oi_perp*``) [derivs], ``volume = log`` volume [price],
  ``selloff = -(log P_t - log P_{t-S})`` [price].
* Basis_Pressure (+ = rich futures / premium demand):
  ``basis`` (``basis*``) [derivs], ``funding`` [derivs],
  ``etf_premium = log(etf_* price / close)`` [derivs].
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import _density, _prefixed, _roll, fresh, lag_asof

MM_NAMES: tuple[str, ...] = (
    "Gamma_Squeeze_Index",
    "Inventory_Unwind_Index",
    "Basis_Pressure_Index",
)

INDEX_COMPONENTS: dict[str, tuple[str, ...]] = {
    "Gamma_Squeeze_Index": ("rv_over_iv", "iv_change", "option_oi", "vol_acceleration"),
    "Inventory_Unwind_Index": ("funding", "futures_oi", "volume", "selloff"),
    "Basis_Pressure_Index": ("basis", "funding", "etf_premium"),
}
"""Components of each index (``vol_acceleration`` only enters when no IV component is available)."""

COMPONENT_GROUP: dict[str, str] = {
    "rv_over_iv": "iv",
    "iv_change": "iv",
    "option_oi": "derivs",
    "vol_acceleration": "price",
    "funding": "derivs",
    "futures_oi": "derivs",
    "volume": "price",
    "selloff": "price",
    "basis": "derivs",
    "etf_premium": "derivs",
}


def _components(
    frame: pd.DataFrame, close: pd.Series, desc: pd.DataFrame, regime_cfg, iv_percent: bool
) -> dict[str, pd.Series]:
    """Raw component signals (NaN where unavailable)."""
    stale = regime_cfg.stale_days
    S = float(regime_cfg.short_days)
    dens = _density(frame.index, regime_cfg)
    nan = pd.Series(np.nan, index=frame.index)
    c: dict[str, pd.Series] = {}
    c["rv_over_iv"] = desc["log_rv_short"] - desc["log_iv"]
    c["iv_change"] = desc["log_iv_change_short"]
    c["vol_acceleration"] = desc["log_rv_short"] - desc["log_rv_long"]
    opt = _prefixed(frame, "oi_option")
    c["option_oi"] = np.log(fresh(opt.where(opt > 0), stale["basis"])) if opt is not None else nan
    fut = _prefixed(frame, "oi_fut")
    fut = fut if fut is not None else _prefixed(frame, "oi_perp")
    c["futures_oi"] = np.log(fresh(fut.where(fut > 0), stale["basis"])) if fut is not None else nan
    if "funding_rate" in frame and frame["funding_rate"].notna().any():
        f = fresh(frame["funding_rate"].astype(float), stale["funding"])
        c["funding"] = _roll(
            f, S, max(2, int(math.ceil(float(regime_cfg.min_fraction) * S * dens)))
        ).mean()
    else:
        c["funding"] = nan
    vol = frame["volume"].astype(float) if "volume" in frame else None
    c["volume"] = (
        np.log(fresh(vol.where(vol > 0), stale["volume"]))
        if vol is not None and vol.notna().any()
        else nan
    )
    logp = np.log(close.where(close > 0))
    c["selloff"] = -(logp - lag_asof(logp, S))
    basis = _prefixed(frame, "basis")
    c["basis"] = fresh(basis, stale["basis"]) if basis is not None else nan
    etf = _prefixed(frame, "etf_")
    c["etf_premium"] = (
        np.log(fresh(etf.where(etf > 0), stale["basis"]) / close.where(close > 0))
        if etf is not None
        else nan
    )
    return {k: v.replace([np.inf, -np.inf], np.nan) for k, v in c.items()}


def mm_indices(
    frame: pd.DataFrame,
    close: pd.Series,
    desc: pd.DataFrame,
    mm_cfg,
    regime_cfg,
    iv_percent: bool = True,
    missing_groups: Iterable[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(indices [rows, 3], used [rows, components] bool)`` on the grid (module docstring).

    ``used`` says, per row, which components entered (a component may feed two indices);
    ``missing_groups`` excludes components of those snapshot groups on every row.
    """
    bound = float(mm_cfg.bound)
    if not bound > 0:
        raise InvalidParameterError("mm.bound", bound, "> 0")
    window, min_count = float(mm_cfg.z_window_days), int(mm_cfg.min_count)
    if not window > 0 or min_count < 2:
        raise InvalidParameterError("mm.z_window_days", window, "> 0 with mm.min_count >= 2")
    excluded = set(missing_groups)
    raw = _components(frame, close, desc, regime_cfg, iv_percent)
    z = {}
    for name, c in raw.items():
        roll = _roll(c, window, min_count)
        sd = roll.std(ddof=0)
        zz = (c - roll.mean()) / sd.where(sd > 1e-12)
        if COMPONENT_GROUP[name] in excluded:
            zz = zz * np.nan
        z[name] = zz.replace([np.inf, -np.inf], np.nan)
    zdf = pd.DataFrame(z, index=frame.index)
    # realized-vol acceleration stands in for the IV components only when both are missing
    zdf["vol_acceleration"] = zdf["vol_acceleration"].where(
        zdf["rv_over_iv"].isna() & zdf["iv_change"].isna()
    )
    used = zdf.notna()
    out = pd.DataFrame(index=frame.index, columns=list(MM_NAMES), dtype=float)
    for idx_name, comps in INDEX_COMPONENTS.items():
        vals = zdf[list(comps)]
        k = vals.notna().sum(axis=1)
        x = vals.sum(axis=1, skipna=True) / np.sqrt(k.where(k > 0, 1))
        out[idx_name] = (bound * np.tanh(x / bound)).where(k > 0, 0.0)
    return out.astype(float), used


def used_inputs(used_row: pd.Series) -> dict[str, list[str]]:
    """Which components each index used, from one row of ``mm_indices(...)[1]``."""
    return {k: [c for c in v if bool(used_row.get(c, False))] for k, v in INDEX_COMPONENTS.items()}

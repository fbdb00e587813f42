"""Past-only regime descriptors on the daily grid, one row per grid time.

Every descriptor at row ``t`` uses rows with time ``<= t`` only (pandas time-based rolling
windows, right-closed), so the last row of a snapshot's frame equals the row of the same time in
a longer history frame (given the snapshot covers the longest window). Windows are calendar
days (``S`` short, ``L`` long, ``M`` slow; ``model.regime`` in ``configs/model/engine.yaml``); a
window of ``W`` days needs ``min_fraction * W * rows_per_day`` rows (x24 on an hourly grid).
With log-returns ``r_i`` over elapsed years ``dt_i``:

* realized vol ``rv_W = sqrt(sum_W r_i^2 / sum_W dt_i)`` (annualised, calendar time, so daily
  crypto and trading-day equity grids agree); ``log_rv_*`` is its log;
* ``ret_*_z = (log P_t - log P_{t-W}) / (rv_L sqrt(W / 365.25))``;
* ``drawdown = log(P_t / max_M P)``, ``drawdown_age`` = days since that max / M;
* ``skew_slow``, ``kurt_slow`` (``sign(k) log(1 + |k|)`` of excess kurtosis) over M;
* intraday: the same ``rv`` from hourly log-returns (``log_rv_hourly_*``) and
  ``log(rv_hourly_S / rv_S)``;
* IV (fraction): ``log_iv``, its 1-row and S-day change, ``log(iv / rv_L)``, z-score over M,
  mean of ``log_iv`` over M;
* funding ``f`` (per period): ``f_S`` = S-day mean, percentile of ``f_S`` in its M-window mapped to
  ``[-1, 1]``, ``(f_S - mean_M f) / std_M f``, annualised ``f_S * periods_per_day * 365.25``;
  basis likewise (percentile and z); ``funding_percent`` says the rate is in %;
* on-chain: ``(mean_S log x - mean_M log x) / std_M log x`` per series; volume likewise;
* cross-asset: ``corr_btc`` = correlation of the asset's daily log-returns with the reference
  asset's (``regime.cross.reference``, BTC-USD) over the long window L, from the reference close
  that :func:`aurora_jax.features.cross_asset.with_reference_close` puts in the frame as
  ``xref_close`` (as-of sampled on the asset's grid); absent for the reference asset itself;
* macro (DXY and equity in logs, yields in levels): ``z_W = (x_t - x_{t-W}) / (s sqrt(W))`` with
  ``s^2 = sum_M (dx)^2 / sum_M dt_days``, for W = S and L.

The frame also carries :data:`EXTRA` columns (``skew_level``: the raw skew column, e.g. a 25-delta
risk reversal) that are not regime entries.

A source column whose value has not changed for longer than ``stale_days[block]`` is treated as
missing there (a snapshot forward-fills a series past its end). The output has NaN where a
descriptor cannot be computed; :mod:`aurora_jax.features.regime_vector` turns blocks with any NaN
into masked blocks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DAYS_PER_YEAR = 365.25

BLOCKS: dict[str, tuple[str, ...]] = {
    "realized": (
        "log_rv_short",
        "log_rv_long",
        "log_rv_slow",
        "log_rv_ratio",
        "ret_short_z",
        "ret_long_z",
        "drawdown",
        "drawdown_age",
        "skew_slow",
        "kurt_slow",
    ),
    "intraday": ("log_rv_hourly_short", "log_rv_hourly_long", "log_rv_hourly_ratio"),
    "volume": ("log_volume_z",),
    "iv": (
        "log_iv",
        "log_iv_change_1",
        "log_iv_change_short",
        "log_iv_over_rv",
        "iv_z",
        "log_iv_slow",
    ),
    "skew": ("skew_z", "skew_change_short_z"),
    "funding": ("funding_pct", "funding_z", "funding_annual"),
    "basis": ("basis_pct", "basis_z"),
    "onchain": ("onchain_0_z", "onchain_1_z", "onchain_2_z", "onchain_3_z"),
    "dxy": ("dxy_change_short_z", "dxy_change_long_z"),
    "rates": ("rates_change_short_z", "rates_change_long_z"),
    "equity": ("equity_change_short_z", "equity_change_long_z"),
    "cross": ("corr_btc",),
}
"""Regime blocks and their descriptors, in vector order. Each block has one mask entry."""

REFERENCE_CLOSE = "xref_close"
"""Frame column holding the reference asset's close (see :mod:`aurora_jax.features.cross_asset`)."""

EXTRA: tuple[str, ...] = ("skew_level",)
"""Descriptor-frame columns outside the regime vector (raw levels other stages forecast)."""

BLOCK_GROUP: dict[str, str] = {
    "realized": "price",
    "intraday": "price",
    "volume": "price",
    "iv": "iv",
    "skew": "iv",
    "funding": "derivs",
    "basis": "derivs",
    "onchain": "onchain",
    "dxy": "macro",
    "rates": "macro",
    "equity": "macro",
    "cross": "price",
}
"""The snapshot feature group each block is drawn from."""


# --------------------------------------------------------------------------- helpers


def _density(index: pd.DatetimeIndex, regime_cfg) -> float:
    """Rows per calendar day that a full window is assumed to hold (from the config, never from
    the data, so a row's value does not depend on how far the grid extends): a daily grid
    ``regime.rows_per_day`` (0.68 covers trading-day calendars), an hourly grid 24x that."""
    d = float(regime_cfg.rows_per_day)
    if len(index) > 1 and (index[1:] - index[:-1]).min() < pd.Timedelta(hours=12):
        d *= 24.0
    return d


def _min_rows(days: float, density: float, min_fraction: float) -> int:
    return max(2, int(math.ceil(min_fraction * days * density)))


def _roll(s: pd.Series, days: float, min_rows: int):
    return s.rolling(pd.Timedelta(days=days), min_periods=min_rows)


def log_returns(close: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``(r, dt)``: log-returns between consecutive finite closes and their elapsed years."""
    p = close.where(close > 0).dropna()
    r = np.log(p).diff()
    dt = p.index.to_series().diff() / pd.Timedelta(days=DAYS_PER_YEAR)
    return r.reindex(close.index), dt.reindex(close.index)


def realized_vol(r: pd.Series, dt: pd.Series, days: float, min_rows: int) -> pd.Series:
    """``sqrt(sum r^2 / sum dt)`` over the trailing ``days`` (rows with finite ``r``)."""
    ok = r.notna() & dt.notna()
    r2 = (r**2).where(ok)
    num = _roll(r2, days, min_rows).sum()
    den = _roll(dt.where(ok), days, min_rows).sum()
    return np.sqrt(num / den.where(den > 0))


def lag_asof(s: pd.Series, days: float) -> pd.Series:
    """Value of ``s`` at time ``t - days`` (last finite value at or before), per row of ``s``."""
    valid = s.dropna()
    if valid.empty:
        return pd.Series(np.nan, index=s.index)
    target = (s.index - pd.Timedelta(days=days)).as_unit("ns").asi8
    pos = np.searchsorted(valid.index.as_unit("ns").asi8, target, side="right") - 1
    out = np.where(pos >= 0, valid.to_numpy()[np.maximum(pos, 0)], np.nan)
    return pd.Series(out, index=s.index)


def unchanged_days(s: pd.Series) -> pd.Series:
    """Days since the value last changed (0 on a change; NaN where ``s`` is NaN)."""
    x = s.to_numpy(dtype=float)
    t = s.index.as_unit("ns").asi8.astype(np.float64) / 86400e9
    changed = np.ones(len(x), bool)
    changed[1:] = ~(x[1:] == x[:-1])
    last_change = np.where(changed, t, np.nan)
    last_change = pd.Series(last_change).ffill().to_numpy()
    out = t - last_change
    out[~np.isfinite(x)] = np.nan
    return pd.Series(out, index=s.index)


def fresh(s: pd.Series, stale_days: float) -> pd.Series:
    """``s`` with values unchanged for longer than ``stale_days`` set to NaN."""
    return s.where(unchanged_days(s) <= stale_days)


def _days_since_max(x: pd.Series, days: float) -> pd.Series:
    """Days from the (latest) maximum of ``x`` within ``(t - days, t]`` to ``t``, per row."""
    t = x.index.as_unit("ns").asi8.astype(np.float64) / 86400e9
    v = x.to_numpy(dtype=float)
    lo = np.searchsorted(t, t - days, side="right")
    out = np.full(len(v), np.nan)
    for i in range(len(v)):
        w = v[lo[i] : i + 1]
        if np.isfinite(w).any():
            j = len(w) - 1 - int(np.nanargmax(w[::-1]))
            out[i] = t[i] - t[lo[i] + j]
    return pd.Series(out, index=x.index)


def _first_column(frame: pd.DataFrame, names: Sequence[str]) -> pd.Series | None:
    for n in names:
        if n in frame and frame[n].notna().any():
            return frame[n].astype(float)
    return None


def _prefixed(frame: pd.DataFrame, prefix: str) -> pd.Series | None:
    cols = sorted(c for c in frame.columns if c.startswith(prefix) and frame[c].notna().any())
    return frame[cols[0]].astype(float) if cols else None


def _zscore_short_vs_slow(x: pd.Series, cfg, dens: float) -> pd.Series:
    mf = float(cfg.min_fraction)
    short = _roll(x, cfg.short_days, _min_rows(cfg.short_days, dens, mf)).mean()
    slow = _roll(x, cfg.slow_days, _min_rows(cfg.slow_days, dens, mf))
    sd = slow.std(ddof=0)
    return (short - slow.mean()) / sd.where(sd > 0)


def _change_z(level: pd.Series, cfg, dens: float) -> tuple[pd.Series, pd.Series]:
    """z-scored changes of ``level`` over S and L days (see module docstring)."""
    mf = float(cfg.min_fraction)
    valid = level.dropna()
    dx = valid.diff()
    dtd = valid.index.to_series().diff() / pd.Timedelta(days=1)
    dx, dtd = dx.reindex(level.index), dtd.reindex(level.index)
    ok = dx.notna() & dtd.notna()
    m = _min_rows(cfg.slow_days, dens, mf)
    s2 = (
        _roll((dx**2).where(ok), cfg.slow_days, m).sum()
        / _roll(dtd.where(ok), cfg.slow_days, m).sum()
    )
    s = np.sqrt(s2).where(s2 > 0)
    out = []
    for days in (cfg.short_days, cfg.long_days):
        out.append((level - lag_asof(level, days)) / (s * math.sqrt(days)))
    return out[0], out[1]


# --------------------------------------------------------------------------- descriptors


def descriptors(
    frame: pd.DataFrame,
    close: pd.Series,
    regime_cfg,
    iv_percent: bool = True,
    hourly_close: pd.Series | None = None,
) -> pd.DataFrame:
    """All descriptors of :data:`BLOCKS` on ``frame``'s grid (NaN where unavailable).

    ``frame``: a daily snapshot frame; ``close``: the asset's close on that grid
    (``Snapshot.close()``); ``hourly_close``: hourly closes (any grid), or None.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) etc. become NaN below
        return _descriptors(frame, close, regime_cfg, iv_percent, hourly_close)


def _descriptors(frame, close, regime_cfg, iv_percent, hourly_close) -> pd.DataFrame:
    cfg = regime_cfg
    idx = frame.index
    dens = _density(idx, cfg)
    mf = float(cfg.min_fraction)
    S, L, M = float(cfg.short_days), float(cfg.long_days), float(cfg.slow_days)
    mS, mL, mM = (_min_rows(d, dens, mf) for d in (S, L, M))
    stale: Mapping[str, float] = cfg.stale_days
    out = pd.DataFrame(index=idx, dtype=float)

    # realized (price)
    r, dt = log_returns(close)
    rv_s, rv_l, rv_m = (realized_vol(r, dt, d, m) for d, m in ((S, mS), (L, mL), (M, mM)))
    logp = np.log(close.where(close > 0))
    out["log_rv_short"], out["log_rv_long"], out["log_rv_slow"] = (
        np.log(rv_s),
        np.log(rv_l),
        np.log(rv_m),
    )
    out["log_rv_ratio"] = out["log_rv_short"] - out["log_rv_long"]
    out["ret_short_z"] = (logp - lag_asof(logp, S)) / (rv_l * math.sqrt(S / DAYS_PER_YEAR))
    out["ret_long_z"] = (logp - lag_asof(logp, L)) / (rv_l * math.sqrt(L / DAYS_PER_YEAR))
    peak = _roll(logp, M, mM).max()
    out["drawdown"] = logp - peak
    out["drawdown_age"] = (_days_since_max(logp, M) / M).where(peak.notna())
    out["skew_slow"] = _roll(r, M, mM).skew()
    k = _roll(r, M, mM).kurt()
    out["kurt_slow"] = np.sign(k) * np.log1p(np.abs(k))

    # intraday (hourly bars)
    if hourly_close is not None and hourly_close.notna().sum() > 2:
        hc = hourly_close.dropna()
        hd = _density(hc.index, cfg)
        hr, hdt = log_returns(hc)
        hs = realized_vol(hr, hdt, S, _min_rows(S, hd, mf))
        hl = realized_vol(hr, hdt, L, _min_rows(L, hd, mf))
        # as-of sample on the daily grid; an hourly estimate older than a day is not used
        for name, v in (("log_rv_hourly_short", hs), ("log_rv_hourly_long", hl)):
            lv = np.log(v).dropna()
            s = lv.reindex(lv.index.union(idx)).ffill().reindex(idx)
            last_t = (
                pd.Series(lv.index, index=lv.index)
                .reindex(lv.index.union(idx))
                .ffill()
                .reindex(idx)
            )
            out[name] = s.where((idx - pd.DatetimeIndex(last_t)) <= pd.Timedelta(days=1))
        out["log_rv_hourly_ratio"] = out["log_rv_hourly_short"] - out["log_rv_short"]
    else:
        for n in BLOCKS["intraday"]:
            out[n] = np.nan

    # volume
    vol = _first_column(frame, ["volume"])
    if vol is not None:
        v = fresh(vol.where(vol > 0), stale["volume"])
        out["log_volume_z"] = _zscore_short_vs_slow(np.log(v), cfg, dens)
    else:
        out["log_volume_z"] = np.nan

    # implied vol
    iv = _first_column(frame, ["iv_30d_atm"]) if "iv_30d_atm" in frame else _prefixed(frame, "iv_")
    if iv is not None:
        iv = fresh(iv.where(iv > 0), stale["iv"]) / (100.0 if iv_percent else 1.0)
        liv = np.log(iv)
        out["log_iv"] = liv
        out["log_iv_change_1"] = liv.diff()
        out["log_iv_change_short"] = liv - lag_asof(liv, S)
        out["log_iv_over_rv"] = liv - out["log_rv_long"]
        slow = _roll(liv, M, mM)
        sd = slow.std(ddof=0)
        out["iv_z"] = (liv - slow.mean()) / sd.where(sd > 0)
        out["log_iv_slow"] = slow.mean()
    else:
        for n in BLOCKS["iv"]:
            out[n] = np.nan

    # skew (when a skew_* column exists)
    sk = _prefixed(frame, "skew_")
    if sk is not None:
        sk = fresh(sk, stale["skew"])
        slow = _roll(sk, M, mM)
        sd = slow.std(ddof=0)
        sd = sd.where(sd > 0)
        out["skew_z"] = (sk - slow.mean()) / sd
        out["skew_change_short_z"] = (sk - lag_asof(sk, S)) / sd
        out["skew_level"] = sk
    else:
        for n in (*BLOCKS["skew"], "skew_level"):
            out[n] = np.nan

    # funding and basis
    for block, col in (
        ("funding", _first_column(frame, ["funding_rate"])),
        ("basis", _prefixed(frame, "basis")),
    ):
        if col is None:
            for n in BLOCKS[block]:
                out[n] = np.nan
            continue
        f = fresh(col, stale[block])
        f_s = _roll(f, S, mS).mean()
        pct = _roll(f_s, M, mM).rank(pct=True)
        slow = _roll(f, M, mM)
        sd = slow.std(ddof=0)
        out[f"{block}_pct"] = 2.0 * pct - 1.0
        out[f"{block}_z"] = (f_s - slow.mean()) / sd.where(sd > 0)
        if block == "funding":
            unit = 0.01 if bool(cfg.funding_percent) else 1.0
            out["funding_annual"] = f_s * unit * float(cfg.funding_periods_per_day) * DAYS_PER_YEAR

    # on-chain
    names = list(cfg.onchain_features)
    for i, n in enumerate(BLOCKS["onchain"]):
        col = _first_column(frame, [names[i]]) if i < len(names) else None
        if col is None:
            out[n] = np.nan
            continue
        x = fresh(col.where(col > 0), stale["onchain"])
        out[n] = _zscore_short_vs_slow(np.log(x), cfg, dens)

    # macro
    for block, cols, use_log in (
        ("dxy", cfg.dxy_columns, True),
        ("rates", cfg.rates_columns, False),
        ("equity", cfg.equity_columns, True),
    ):
        col = _first_column(frame, list(cols))
        if col is None:
            for n in BLOCKS[block]:
                out[n] = np.nan
            continue
        lvl = fresh(col, stale[block])
        lvl = np.log(lvl.where(lvl > 0)) if use_log else lvl
        a, b = _change_z(lvl, cfg, dens)
        out[f"{block}_change_short_z"], out[f"{block}_change_long_z"] = a, b

    # cross-asset: rolling correlation with the reference asset's daily log-returns
    ref = _first_column(frame, [REFERENCE_CLOSE])
    if ref is not None:
        rr, _ = log_returns(fresh(ref, stale["cross"]))
        both = r.notna() & rr.notna()
        out["corr_btc"] = _roll(r.where(both), L, mL).corr(rr.where(both)).clip(-1.0, 1.0)
    else:
        out["corr_btc"] = np.nan

    order = [n for names_ in BLOCKS.values() for n in names_] + list(EXTRA)
    return out[order].replace([np.inf, -np.inf], np.nan)

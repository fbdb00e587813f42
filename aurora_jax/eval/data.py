"""The series the evaluation reads from the store, on a daily grid stamped at observability.

Daily closes come from the asset's daily bar feature (``close``: stamped at the bar close,
date + 1 day 00:00 UTC); where it is missing, from the hourly feature (``mark_close_1h``)
resampled on right-closed day windows ``(d - 1 day, d]`` (last close, stamped ``d`` 00:00 UTC,
i.e. the value observable at that instant). Log-returns are taken between consecutive days
only. The implied vol (``iv_30d_atm``) is read as stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.errors import DataRangeError, InvalidParameterError, UnknownAssetError


@dataclass(frozen=True)
class AssetSeries:
    asset: str
    close: pd.Series              # daily closes (observable time)
    returns: pd.Series            # daily log-returns (fractions), stamped at the later close
    iv: pd.Series | None          # annualised implied vol in %, as stored
    hourly_close: pd.Series | None

    @property
    def first(self) -> pd.Timestamp:
        return self.close.index[0]

    @property
    def last(self) -> pd.Timestamp:
        return self.close.index[-1]


def hourly_to_daily(hourly: pd.Series) -> pd.Series:
    """Last hourly value in each right-closed day window, labelled with the window's end."""
    s = hourly.dropna().sort_index()
    d = s.resample("1D", label="right", closed="right").last().dropna()
    # a window whose last hourly stamp is not its end is an incomplete day
    last_stamp = s.index.to_series().resample("1D", label="right", closed="right").last()
    complete = last_stamp.reindex(d.index) == d.index
    return d[complete.to_numpy()]


def _safe_series(store, asset: str, feature: str) -> pd.Series | None:
    try:
        s = store.series(asset, feature)
    except (InvalidParameterError, UnknownAssetError):
        return None
    if s is None or len(s) == 0:
        return None
    s = s.astype(float).sort_index()
    return s[~s.index.duplicated(keep="last")]


def load_asset(store, asset: str, daily_feature: str = "close",
               hourly_feature: str = "mark_close_1h", iv_feature: str = "iv_30d_atm") -> AssetSeries:
    """Daily closes, returns, implied vol and hourly closes of ``asset`` from ``store``."""
    store.require_asset(asset)
    daily = _safe_series(store, asset, daily_feature)
    hourly = _safe_series(store, asset, hourly_feature)
    parts = []
    if daily is not None:
        parts.append(daily)
    if hourly is not None:
        hd = hourly_to_daily(hourly)
        parts.append(hd if daily is None else hd[~hd.index.isin(daily.index)])
    if not parts:
        raise InvalidParameterError(
            "asset", asset, f"an asset with a {daily_feature!r} or {hourly_feature!r} feature"
        )
    close = pd.concat(parts).sort_index()
    close = close[close > 0]
    lr = np.log(close)
    gap = close.index.to_series().diff()
    ret = lr.diff()[gap == pd.Timedelta(days=1)].dropna()
    iv = _safe_series(store, asset, iv_feature)
    return AssetSeries(asset, close, ret, iv, hourly)


class SeriesCache:
    """Full series loaded once per (asset, feature); the harness hands out truncated views."""

    def __init__(self, store):
        self.store = store
        self._series: dict[tuple[str, str], pd.Series | None] = {}
        self._assets: dict[str, AssetSeries] = {}

    def asset(self, asset: str) -> AssetSeries:
        if asset not in self._assets:
            self._assets[asset] = load_asset(self.store, asset)
        return self._assets[asset]

    def __call__(self, asset: str, feature: str) -> pd.Series | None:
        key = (asset, feature)
        if key not in self._series:
            self._series[key] = _safe_series(self.store, asset, feature)
        return self._series[key]


def require_range(series: AssetSeries, field: str, first_needed: pd.Timestamp, last_needed: pd.Timestamp) -> None:
    """Raise :class:`DataRangeError` unless ``series`` covers ``[first_needed, last_needed]``."""
    if first_needed < series.first:
        raise DataRangeError(field, first_needed, series.first, series.last)
    if last_needed > series.last:
        raise DataRangeError(field, last_needed, series.first, series.last)

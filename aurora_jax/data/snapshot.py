"""As-of snapshots: the only way models see data.

``snapshot(store, asset_id, as_of, lookback_days, groups, freq)`` aligns every feature of the
asset (and of the shared pseudo-assets such as ``MACRO``) on the model's grid, built only from
rows with ``timestamp <= as_of``:

* daily grid (``freq="1d"``): 00:00 UTC days; for an asset whose daily bars (``close``) cover the
  whole window, only the days on which a bar closed (trading days), otherwise calendar days;
* hourly bars (``close_1h``, ``mark_close_1h``, ...) are resampled to daily bars on right-closed
  windows ``(t - 1d, t]`` (first open, max high, min low, last close, summed volume) and named
  without the interval suffix (``mark_close``);
* every other feature is sampled as of each grid time (last value with ``timestamp <= t``).

Each group also gets a freshness (``as_of`` minus its last observation) and a missing fraction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aurora_jax.data.schema import FEATURE_GROUPS
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import DataRangeError, InvalidParameterError

_BAR = re.compile(r"^(?P<base>(?:mark_)?(?P<field>open|high|low|close|volume))_(?P<iv>\d+[mhd])$")
_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
FREQS = {"1d": pd.Timedelta(days=1), "1h": pd.Timedelta(hours=1)}
_SEED_PAD = pd.Timedelta(days=30)  # rows this far before the window seed the as-of fill


@dataclass
class Snapshot:
    """Aligned features of one asset as of ``as_of`` (see module docstring)."""

    asset_id: str
    as_of: pd.Timestamp
    freq: str
    frame: pd.DataFrame                      # index: grid times (UTC); columns: features
    column_groups: dict[str, str]            # column -> feature group
    freshness: dict[str, pd.Timedelta | None]  # group -> as_of minus last observation (None: never)
    missing_fraction: dict[str, float]       # group -> share of NaN cells on the grid
    stale_groups: list[str] = field(default_factory=list)

    @property
    def missing_groups(self) -> list[str]:
        """Requested groups with no observation at all in the window."""
        return [g for g, age in self.freshness.items() if age is None]

    @property
    def used_groups(self) -> list[str]:
        return [g for g, age in self.freshness.items() if age is not None]

    def close(self) -> pd.Series:
        """The asset's close on the grid: the bar close, else the resampled (mark) close."""
        out = pd.Series(np.nan, index=self.frame.index)
        for name in ("close", "close_1h", "mark_close", "mark_close_1h"):
            if name in self.frame:
                out = out.fillna(self.frame[name])
        return out.rename("close")

    def report(self) -> dict:
        return {
            "asset_id": self.asset_id, "as_of": self.as_of.isoformat(), "freq": self.freq,
            "rows": len(self.frame),
            "freshness_hours": {g: (None if a is None else a / pd.Timedelta(hours=1))
                                for g, a in self.freshness.items()},
            "missing_fraction": self.missing_fraction,
            "missing_groups": self.missing_groups, "stale_groups": self.stale_groups,
        }


def price_range(store: MarketStore, asset_id: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last observation time of the asset's price group."""
    return store.time_range(asset_id, "price")


def _bar_interval(name: str) -> pd.Timedelta | None:
    m = _BAR.match(name)
    return None if m is None else pd.Timedelta(m["iv"].replace("m", "min"))


def as_of_sample(t_ns: np.ndarray, v: np.ndarray, grid_ns: np.ndarray) -> np.ndarray:
    """Last value with ``timestamp <= t`` at each grid time ``t`` (NaN before the first)."""
    idx = np.searchsorted(t_ns, grid_ns, side="right") - 1
    out = v[np.maximum(idx, 0)].astype(float)
    out[idx < 0] = np.nan
    return out


def _window_agg(t_ns: np.ndarray, v: np.ndarray, grid_ns: np.ndarray, step_ns: int, how: str) -> np.ndarray:
    """Aggregate the values in each window ``(t - step, t]`` (NaN for an empty window)."""
    lo = np.searchsorted(t_ns, grid_ns - step_ns, side="right")
    hi = np.searchsorted(t_ns, grid_ns, side="right")
    out = np.full(len(grid_ns), np.nan)
    reduce = {"first": lambda x: x[0], "last": lambda x: x[-1], "max": np.max, "min": np.min, "sum": np.sum}[how]
    for i in np.flatnonzero(hi > lo):
        out[i] = reduce(v[lo[i]:hi[i]])
    return out


def snapshot(
    store: MarketStore,
    asset_id: str,
    as_of: pd.Timestamp | str | None = None,
    lookback_days: int = 90,
    groups: Sequence[str] = FEATURE_GROUPS,
    freq: str = "1d",
    shared_assets: Sequence[str] = ("MACRO", "CRYPTO"),
    stale_after_days: Mapping[str, float] | None = None,
) -> Snapshot:
    """Build the as-of snapshot (see module docstring). ``as_of=None`` means the last price."""
    if freq not in FREQS:
        raise InvalidParameterError("freq", freq, f"one of {list(FREQS)}")
    if not isinstance(lookback_days, (int, np.integer)) or lookback_days < 1:
        raise InvalidParameterError("lookback_days", lookback_days, "an integer >= 1")
    unknown = [g for g in groups if g not in FEATURE_GROUPS]
    if unknown:
        raise InvalidParameterError("groups", unknown, f"a subset of {list(FEATURE_GROUPS)}")
    first, last = price_range(store, asset_id)
    as_of = last if as_of is None else pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    if as_of < first or as_of > last + FREQS[freq]:
        raise DataRangeError("as_of", as_of.isoformat(), first.isoformat(), last.isoformat())
    step = FREQS[freq]
    end_grid = as_of.floor(freq)
    start = end_grid - lookback_days * pd.Timedelta(days=1)
    assets = [asset_id, *[a for a in shared_assets if a != asset_id]]
    rows = store.read_long(assets, list(groups), start=start - _SEED_PAD, end=as_of)
    # rows come sorted by asset, feature, time: split them into one (times, values) per feature
    assets_arr = rows["asset_id"].to_numpy(dtype=object)
    names_arr = rows["feature_name"].to_numpy(dtype=object)
    groups_arr = rows["feature_group"].to_numpy(dtype=object)
    t_all = rows["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")
    v_all = rows["value"].to_numpy(dtype=float)
    cuts = np.flatnonzero((assets_arr[1:] != assets_arr[:-1]) | (names_arr[1:] != names_arr[:-1])) + 1
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    column_groups: dict[str, str] = {}
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]) if len(rows) else ():
        a, name = assets_arr[lo], names_arr[lo]
        col = name if a == asset_id else f"{a.lower()}_{name}"
        series[col] = (t_all[lo:hi], v_all[lo:hi])
        column_groups[col] = groups_arr[lo]
    calendar = pd.date_range(start + step, end_grid, freq=step, tz="UTC")
    grid = calendar
    if freq == "1d" and "close" in series and series["close"][0][0] <= start.value + step.value:
        # daily bars cover the whole window: their closes are the grid (trading days)
        t_close = series["close"][0]
        inside = t_close[(t_close > start.value) & (t_close <= end_grid.value)]
        if len(inside):
            grid = pd.DatetimeIndex(pd.to_datetime(inside, unit="ns", utc=True))
    grid_ns = grid.as_unit("ns").asi8
    data: dict[str, np.ndarray] = {}
    frame_groups: dict[str, str] = {}
    for col, (t_ns, v) in series.items():
        interval = _bar_interval(col)
        if interval is not None and interval < step:  # finer bars -> bars on the grid
            m = _BAR.match(col)
            data[m["base"]] = _window_agg(t_ns, v, grid_ns, step.value, _AGG[m["field"]])
            frame_groups[m["base"]] = "price"
        else:
            data[col] = as_of_sample(t_ns, v, grid_ns)
            frame_groups[col] = column_groups[col]
    frame = pd.DataFrame(data, index=grid)
    frame.index.name = "timestamp"
    series_groups, column_groups = column_groups, frame_groups
    freshness: dict[str, pd.Timedelta | None] = {}
    missing: dict[str, float] = {}
    stale = []
    limits = stale_after_days or {}
    for g in groups:
        last_seen = [t[-1] for t, _ in (series[c] for c, cg in series_groups.items() if cg == g)
                     if t[-1] > start.value]
        freshness[g] = as_of - pd.Timestamp(max(last_seen), unit="ns", tz="UTC") if last_seen else None
        cols = [c for c, cg in column_groups.items() if cg == g]
        missing[g] = float(frame[cols].isna().to_numpy().mean()) if cols and len(frame) else 1.0
        if freshness[g] is not None and g in limits and freshness[g] > pd.Timedelta(days=float(limits[g])):
            stale.append(g)
    return Snapshot(asset_id, as_of, freq, frame, column_groups, freshness, missing, stale)


def snapshot_from_config(store: MarketStore, asset_id: str, as_of, data_cfg, **kw) -> Snapshot:
    """:func:`snapshot` with lookback, groups, shared assets and staleness from ``cfg.data``."""
    snap_cfg = data_cfg.snapshot
    return snapshot(
        store, asset_id, as_of,
        lookback_days=int(kw.pop("lookback_days", snap_cfg.lookback_days)),
        groups=tuple(kw.pop("groups", snap_cfg.groups)),
        shared_assets=tuple(data_cfg.shared_assets),
        stale_after_days=dict(snap_cfg.stale_after_days), **kw,
    )

"""As-of snapshots: the only way models see data.

``snapshot(store, asset_id, as_of, lookback_days, groups, freq)`` aligns every feature of the
asset (and of the shared pseudo-assets such as ``MACRO``) on the model's grid, built only from
rows with ``timestamp <= as_of``:

* daily grid (``freq="1d"``): 00:00 UTC days; for an asset with daily bars (``close``) only the
  days on which a bar closed (trading days), otherwise calendar days;
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
    store.require_asset(asset_id)
    files = store._files([asset_id], ["price"])
    if not files:
        raise DataRangeError("asset_id", asset_id, "no price data", "no price data")
    with store._lock:
        first, last = store._con.execute(
            "SELECT epoch_us(min(timestamp)), epoch_us(max(timestamp)) FROM read_parquet(?)", [files]
        ).fetchall()[0]
    return pd.Timestamp(first, unit="us", tz="UTC"), pd.Timestamp(last, unit="us", tz="UTC")


def _resample_bars(wide: pd.DataFrame, grid: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DataFrame:
    out = {}
    for col in wide.columns:
        m = _BAR.match(col)
        if m is None or pd.Timedelta(m["iv"].replace("m", "min")) >= step:
            continue
        s = wide[col].dropna()
        # window (t - step, t] for each grid time t (all times in ns)
        g_ns, s_ns = grid.as_unit("ns").asi8, s.index.as_unit("ns").asi8
        bins = np.searchsorted(g_ns, s_ns, side="left")
        inside = (bins < len(grid)) & (s_ns > g_ns[np.minimum(bins, len(grid) - 1)] - step.value)
        agg = s[inside].groupby(grid[bins[inside]]).agg(_AGG[m["field"]])
        out[m["base"]] = agg.reindex(grid)
    return pd.DataFrame(out, index=grid)


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
    columns: dict[str, pd.Series] = {}
    column_groups: dict[str, str] = {}
    times = pd.DatetimeIndex(rows["timestamp"]).tz_convert("UTC")
    values = rows["value"].to_numpy()
    for (a, name, g), idx in rows.groupby(["asset_id", "feature_name", "feature_group"], sort=True).indices.items():
        col = name if a == asset_id else f"{a.lower()}_{name}"
        columns[col] = pd.Series(values[idx], index=times[idx])
        column_groups[col] = g
    wide = pd.DataFrame(columns) if columns else pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC"))
    calendar = pd.date_range(start + step, end_grid, freq=step, tz="UTC")
    if freq == "1d" and "close" in wide:
        closes = wide["close"].dropna().index
        grid = pd.DatetimeIndex(closes[(closes > start) & (closes <= end_grid)])
        grid = grid if len(grid) else calendar
    else:
        grid = calendar
    bars = _resample_bars(wide, grid, step)
    plain = [c for c in wide.columns if not (_BAR.match(c) and c in column_groups and
                                             pd.Timedelta(_BAR.match(c)["iv"].replace("m", "min")) < step)]
    sampled = wide[plain].sort_index().ffill().reindex(grid, method="ffill") if plain else pd.DataFrame(index=grid)
    frame = pd.concat([sampled, bars], axis=1)
    for c in bars.columns:
        column_groups[c] = "price"
    column_groups = {c: column_groups[c] for c in frame.columns}
    freshness: dict[str, pd.Timedelta | None] = {}
    missing: dict[str, float] = {}
    stale = []
    limits = stale_after_days or {}
    for g in groups:
        last_seen = [columns[c].index.max() for c, cg in column_groups.items()
                     if cg == g and c in columns and len(columns[c]) and columns[c].index.max() > start]
        freshness[g] = as_of - max(last_seen) if last_seen else None
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

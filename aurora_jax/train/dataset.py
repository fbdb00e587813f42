"""Training data for one asset: stacked ModelInputs per as-of date, realized future paths, splits.

One long as-of snapshot (ending at ``train.end``, or the last data) is turned into every stage's
features at every grid row at once (:func:`aurora_jax.features.inputs.history`; each row uses
only rows at or before it, so row ``t`` equals what a snapshot as of ``t`` gives). For a row
``t`` (an as-of date) the targets are the next ``H = inputs.horizon_max`` raw daily log-returns
``y_raw[t, k] = log(P_{t+k} / P_{t+k-1})`` and their RevIN-normalized values
``y[t, k] = (y_raw[t, k] - loc_t) / scale_t`` (``loc_t, scale_t`` known at ``t``).

Splits are by time. Validation: as-of dates in ``(end - val_days, end]``. Training: as-of dates
whose whole target window ends before the first validation as-of (a gap of ``H`` rows), so no
training target overlaps the validation period. The vol path is fitted on the training part
of the history only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.data.snapshot import price_range, snapshot, snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import DataRangeError, InvalidParameterError
from aurora_jax.features.cross_asset import with_reference_close
from aurora_jax.features.inputs import (
    HOURLY_CLOSE_COLUMNS,
    History,
    ModelInputs,
    history,
    inputs_at,
)


@dataclass
class EngineData:
    asset_id: str
    hist: History
    rows: np.ndarray                 # history rows used as as-of dates (complete targets)
    as_of: pd.DatetimeIndex          # hist.index[rows]
    y_raw: np.ndarray                # (n, H) raw future log-returns
    y: np.ndarray                    # (n, H) RevIN-normalized with the as-of's statistics
    y_mask: np.ndarray               # (n, H) 1 where the future return exists
    loc: np.ndarray                  # (n,)
    scale: np.ndarray                # (n,)
    train: np.ndarray                # positions (into rows) of the training split
    val: np.ndarray                  # positions of the validation split
    train_history_end: pd.Timestamp  # last history time whose data the training split may use
    pk_var: np.ndarray               # (rows of hist,) daily Parkinson variance (ln(H/L))^2 / (4 ln 2)
    inputs: ModelInputs | None = None   # stacked, set once the vol path is fitted

    def ranges(self) -> dict:
        iso = lambda t: pd.Timestamp(t).isoformat()
        return {
            "train": [iso(self.as_of[self.train[0]]), iso(self.as_of[self.train[-1]])],
            "val": [iso(self.as_of[self.val[0]]), iso(self.as_of[self.val[-1]])],
            "history": [iso(self.hist.index[0]), iso(self.hist.index[-1])],
            "n_train": len(self.train), "n_val": len(self.val),
        }

    def history_until(self, t: pd.Timestamp) -> History:
        """The history truncated to rows with time ``<= t`` (for fitting on the training part)."""
        n = int(np.searchsorted(self.hist.index, t, side="right"))
        h = self.hist
        return History(h.asset_id, h.index[:n], h.close[:n], h.returns[:n], h.revin.iloc[:n], h.desc.iloc[:n],
                       h.regime[:n], h.block_mask[:n], h.score[:n], h.regime_id[:n], h.mm[:n],
                       h.mm_used.iloc[:n], h.has_iv[:n], h.layout, h.forced_missing, h.hourly)


def _ts(x) -> pd.Timestamp | None:
    if x is None:
        return None
    t = pd.Timestamp(x)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def parkinson_variance(frame: pd.DataFrame, close: pd.Series) -> np.ndarray:
    """``(ln(high / low))^2 / (4 ln 2)`` per row from the bar (or mark) high/low; the squared
    log-return where no high/low exists."""
    hi = next((frame[c] for c in ("high", "mark_high") if c in frame and frame[c].notna().any()), None)
    lo = next((frame[c] for c in ("low", "mark_low") if c in frame and frame[c].notna().any()), None)
    r2 = np.log(close.astype(float)).diff().to_numpy() ** 2
    if hi is None or lo is None:
        return r2
    pk = np.log(hi.to_numpy(float) / lo.to_numpy(float)) ** 2 / (4.0 * np.log(2.0))
    return np.where(np.isfinite(pk) & (pk > 0), pk, r2)


def load_history(store: MarketStore, asset_id: str, cfg, start=None, end=None) -> tuple[History, np.ndarray]:
    """:class:`History` of every grid row in ``[start - warm-up, end]`` (``cfg``: root config),
    and the Parkinson variance of each row."""
    e = cfg.model
    first, last = price_range(store, asset_id)
    end = min(_ts(end) or last, last)
    start = max(_ts(start) or first, first)
    if end <= start:
        raise DataRangeError("train.end", end.isoformat(), start.isoformat(), last.isoformat())
    warm = int(e.regime.ref_days) + int(e.inputs.lookback_days) + 30
    days = int((end - start).days) + warm
    snap = with_reference_close(store, snapshot_from_config(store, asset_id, end, cfg.data, lookback_days=days),
                                cfg)
    hourly = None
    if int(e.inputs.hourly_days) > 0 and any(n in store.feature_names(asset_id) for n in HOURLY_CLOSE_COLUMNS):
        hourly = snapshot(store, asset_id, snap.as_of, lookback_days=days, groups=("price",), freq="1h",
                          shared_assets=())
    hist = history(snap, e, hourly)
    return hist, parkinson_variance(snap.frame, snap.close())


def build_dataset(store: MarketStore, asset_id: str, cfg) -> EngineData:
    """Rows, targets and time splits for ``cfg.model.train`` (module docstring)."""
    e, t = cfg.model, cfg.model.train
    H = int(e.inputs.horizon_max)
    hist, pk = load_history(store, asset_id, cfg, t.start, t.end)
    n = len(hist.index)
    valid = hist.valid_rows(max(int(e.inputs.min_returns), int(t.min_history_returns)))
    start = _ts(t.start)
    if start is not None:
        valid = valid[hist.index[valid] >= start]
    fut = np.full((n, H), np.nan)
    for k in range(1, H + 1):
        fut[: n - k, k - 1] = hist.returns[k:]
    complete = np.isfinite(fut).all(axis=1)
    rows = valid[complete[valid]]
    rows = rows[:: int(t.stride)] if int(t.stride) > 1 else rows
    if len(rows) < 10:
        raise InvalidParameterError("train.start/end", f"{len(rows)} usable as-of dates for {asset_id}",
                                    ">= 10 dates with a full lookback and a complete future path")
    as_of = hist.index[rows]
    end_t = as_of[-1]
    val_start = end_t - pd.Timedelta(days=float(t.val_days))
    val = np.flatnonzero(as_of > val_start)
    first_val_row = rows[val[0]] if len(val) else n
    train = np.flatnonzero(rows + H < first_val_row)
    if len(train) < int(t.min_train) or len(val) < int(t.min_val):
        raise InvalidParameterError(
            "train.val_days", float(t.val_days),
            f"a split leaving >= train.min_train={int(t.min_train)} training and >= train.min_val="
            f"{int(t.min_val)} validation dates (got {len(train)} / {len(val)})")
    loc = hist.revin["loc"].to_numpy(float)[rows]
    scale = hist.revin["scale"].to_numpy(float)[rows]
    y_raw = fut[rows]
    y = (y_raw - loc[:, None]) / scale[:, None]
    train_hist_end = hist.index[rows[train[-1]] + H]
    return EngineData(asset_id, hist, rows, as_of, y_raw, y, np.ones_like(y), loc, scale, train, val,
                      train_hist_end, pk)


def attach_inputs(data: EngineData, vol_params, cfg) -> EngineData:
    """Stacked ModelInputs of every row (needs the fitted vol path)."""
    data.inputs = inputs_at(data.hist, data.rows, vol_params, cfg.model)
    return data

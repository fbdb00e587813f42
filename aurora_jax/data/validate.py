"""Row-level validation of a parsed source file.

Rejected rows (with the reason and source line): unparseable or non-numeric values, duplicate
or non-monotonic timestamps, non-positive prices, negative volumes, OHLC bars with
``high < low`` or ``high``/``low`` not bracketing ``open``/``close``, and timestamps in the future.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.data.schema import group_for
from aurora_jax.data.table import RawTable


@dataclass(frozen=True)
class Rejection:
    path: str
    line: int
    reason: str


def _reject(mask: np.ndarray, reason: str, lines: np.ndarray, path: str, out: list[Rejection]):
    for line in lines[mask]:
        out.append(Rejection(path, int(line), reason))


def validate(
    table: RawTable, *, feature_groups: dict[str, str], now: pd.Timestamp, max_future: pd.Timedelta,
    ingested_at: pd.Timestamp,
) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split ``table`` into valid long rows and rejections (first failing reason per row)."""
    df = table.frame.reset_index(drop=True)
    lines = df["line"].to_numpy()
    rejected: list[Rejection] = []
    bad = np.zeros(len(df), dtype=bool)
    values = {}
    for col in table.value_columns:
        num = pd.to_numeric(df[col], errors="coerce").astype("float64")
        nonnum = (num.isna() | ~np.isfinite(num)).to_numpy() & ~bad
        _reject(nonnum, f"non-numeric value in {col!r}", lines, table.path, rejected)
        bad |= nonnum
        values[col] = num.to_numpy()
    ts = df["timestamp"]
    future = (ts > now + max_future).to_numpy() & ~bad
    _reject(future, f"future timestamp (after {now.isoformat()})", lines, table.path, rejected)
    bad |= future
    for col in table.price_columns:
        neg = (values[col] <= 0) & ~bad
        _reject(neg, f"non-positive price in {col!r}", lines, table.path, rejected)
        bad |= neg
    for col in table.nonnegative_columns:
        neg = (values[col] < 0) & ~bad
        _reject(neg, f"negative value in {col!r}", lines, table.path, rejected)
        bad |= neg
    if table.bar_columns:
        o, h, lo, c = (values[table.bar_columns[k]] for k in ("open", "high", "low", "close"))
        inconsistent = ((h < lo) | (h < np.maximum(o, c)) | (lo > np.minimum(o, c))) & ~bad
        _reject(inconsistent, "OHLC inconsistent (high < low or high/low not bracketing open/close)",
                lines, table.path, rejected)
        bad |= inconsistent
    # timestamps must strictly increase in file order, among the rows still accepted
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").astype("int64")
    last = None
    for i in np.flatnonzero(~bad):
        if last is not None and ts_ns[i] <= last:
            why = "duplicate timestamp" if ts_ns[i] == last else "non-monotonic timestamp"
            rejected.append(Rejection(table.path, int(lines[i]), why))
            bad[i] = True
        else:
            last = ts_ns[i]
    keep = ~bad
    parts = []
    for col in table.value_columns:
        parts.append(
            pd.DataFrame(
                {
                    "asset_id": table.asset_id,
                    "timestamp": ts[keep].to_numpy(),
                    "feature_group": group_for(col, feature_groups),
                    "feature_name": col,
                    "value": values[col][keep],
                    "source": table.source,
                    "ingested_at": ingested_at,
                }
            )
        )
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    long["timestamp"] = pd.to_datetime(long["timestamp"], utc=True)
    rejected.sort(key=lambda r: r.line)
    return long, rejected

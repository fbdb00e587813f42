"""Yahoo-style daily OHLCV CSV: ``Date|timestamp, Open, High, Low, Close[, Adj Close], Volume``.

Column names are matched case-insensitively; ``volume_usd``/``Volume`` become ``volume`` and
``Adj Close`` is ignored. Bars are stamped at their close (date + ``date_only_lag``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from aurora_jax.data.readers.timestamps import parse_timestamps
from aurora_jax.data.table import RawTable
from aurora_jax.errors import IngestError

_ALIASES = {
    "date": "timestamp", "timestamp": "timestamp", "time": "timestamp",
    "open": "open", "high": "high", "low": "low", "close": "close",
    "volume": "volume", "volume_usd": "volume",
}
REQUIRED = ("timestamp", "open", "high", "low", "close")


def read_ohlcv_csv(path: str | Path, asset_id: str, date_only_lag: pd.Timedelta) -> RawTable:
    path = str(path)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise IngestError(path, 1, "empty file: expected a header row")
    header = [h.strip().lower() for h in rows[0]]
    cols = {}
    for i, h in enumerate(header):
        if h in _ALIASES and _ALIASES[h] not in cols:
            cols[_ALIASES[h]] = i
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise IngestError(path, 1, f"header lacks columns {missing}; got {rows[0]}")
    width = len(header)
    data, lines = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not x.strip() for x in row):
            continue
        if len(row) != width:
            raise IngestError(path, n, f"expected {width} fields, found {len(row)}")
        data.append([row[cols[c]] for c in cols])
        lines.append(n)
    frame = pd.DataFrame(data, columns=list(cols))
    frame["line"] = lines
    frame["timestamp"] = parse_timestamps(frame["timestamp"], frame["line"], path, date_only_lag)
    value_cols = [c for c in ("open", "high", "low", "close", "volume") if c in cols]
    return RawTable(
        path=path, asset_id=asset_id, source=f"ohlcv_csv:{Path(path).name}",
        frame=frame[["timestamp", *value_cols, "line"]],
        price_columns=("open", "high", "low", "close"),
        nonnegative_columns=("volume",) if "volume" in cols else (),
        bar_columns={k: k for k in ("open", "high", "low", "close")},
    )

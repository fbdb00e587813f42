"""``timestamp,value`` feature CSVs laid out as ``features/<ASSET>/<feature_name>.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from aurora_jax.data.readers.timestamps import parse_timestamps
from aurora_jax.data.table import RawTable
from aurora_jax.errors import IngestError

PRICE_LIKE = ("close", "open", "high", "low")


def read_feature_csv(
    path: str | Path, asset_id: str, feature_name: str, date_only_lag: pd.Timedelta
) -> RawTable:
    path = str(path)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [h.strip().lower() for h in rows[0]] != ["timestamp", "value"]:
        got = rows[0] if rows else "an empty file"
        raise IngestError(path, 1, f"expected header 'timestamp,value', got {got}")
    data, lines = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not x.strip() for x in row):
            continue
        if len(row) != 2:
            raise IngestError(path, n, f"expected 2 fields, found {len(row)}")
        data.append(row)
        lines.append(n)
    frame = pd.DataFrame(data, columns=["timestamp", feature_name])
    frame["line"] = lines
    frame["timestamp"] = parse_timestamps(frame["timestamp"], frame["line"], path, date_only_lag)
    return RawTable(
        path=path, asset_id=asset_id, source=f"feature_csv:{asset_id}/{Path(path).name}",
        frame=frame, price_columns=(feature_name,) if feature_name in PRICE_LIKE else (),
    )

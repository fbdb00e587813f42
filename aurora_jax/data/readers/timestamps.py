"""Parse timestamp strings to UTC; date-only stamps become observable ``date_only_lag`` later."""

from __future__ import annotations

import re

import pandas as pd

from aurora_jax.errors import IngestError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_timestamps(
    raw: pd.Series, lines: pd.Series, path: str, date_only_lag: pd.Timedelta
) -> pd.Series:
    """UTC timestamps for ``raw`` strings. A string that is not a timestamp is a malformed file:
    :class:`IngestError` names the line. Date-only strings (``2024-06-30``) describe a whole day
    and are stamped at its end (``+ date_only_lag``)."""
    text = raw.astype("string").str.strip()
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise IngestError(path, int(lines.iloc[i]), f"unparseable timestamp {raw.iloc[i]!r}")
    date_only = text.str.match(_DATE_ONLY).fillna(False).to_numpy()
    return parsed + pd.to_timedelta(date_only.astype("int64") * date_only_lag.value, unit="ns")

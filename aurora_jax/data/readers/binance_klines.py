"""Binance kline arrays, exactly as ``/api/v3/klines`` and ``/fapi/v1/markPriceKlines`` return them.

Each element: ``[openTime, open, high, low, close, volume, closeTime, quoteVolume, trades,
takerBuyBase, takerBuyQuote, ignore]`` with prices as strings. A bar is stamped at its close
(``closeTime + 1 ms``). Feature names carry the interval (``close_1h``; daily bars are plain
``close``) and mark-price bars the ``mark_`` prefix; mark-price bars carry no volume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from aurora_jax.data.table import RawTable
from aurora_jax.errors import IngestError

_INTERVALS = {60_000: "1m", 300_000: "5m", 900_000: "15m", 3_600_000: "1h", 14_400_000: "4h",
              86_400_000: "1d", 604_800_000: "1w"}


def kline_feature_names(interval: str, mark: bool) -> list[str]:
    suffix = "" if interval == "1d" else f"_{interval}"
    prefix = "mark_" if mark else ""
    names = [f"{prefix}{c}{suffix}" for c in ("open", "high", "low", "close")]
    return names if mark else [*names, f"volume{suffix}"]


def klines_to_table(
    klines: list, path: str, asset_id: str, mark: bool, source: str
) -> RawTable:
    """Parse a list of kline arrays; a malformed element raises :class:`IngestError` naming it."""
    if not isinstance(klines, list):
        raise IngestError(path, None, "expected a JSON array of kline arrays")
    rows, lines, interval_ms = [], [], None
    for n, k in enumerate(klines, start=1):
        if not isinstance(k, list) or len(k) < 7:
            raise IngestError(path, n, f"kline element {n} is not an array of >= 7 fields: {k!r:.80}")
        try:
            open_ms, close_ms = int(k[0]), int(k[6])
        except (TypeError, ValueError):
            raise IngestError(path, n, f"kline element {n} has non-integer open/close time") from None
        width = close_ms - open_ms + 1
        if interval_ms is None:
            interval_ms = width
        elif width != interval_ms:
            raise IngestError(path, n, f"kline element {n} spans {width} ms, expected {interval_ms}")
        rows.append([close_ms + 1, k[1], k[2], k[3], k[4], k[5]])
        lines.append(n)
    if interval_ms not in _INTERVALS and rows:
        raise IngestError(path, 1, f"unsupported kline interval of {interval_ms} ms")
    interval = _INTERVALS.get(interval_ms, "1h")
    names = kline_feature_names(interval, mark)
    frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype("int64"), unit="ms", utc=True)
    if mark:
        frame = frame.drop(columns="volume")
    frame.columns = ["timestamp", *names]
    frame["line"] = lines
    return RawTable(
        path=path, asset_id=asset_id, source=source, frame=frame,
        price_columns=tuple(names[:4]), nonnegative_columns=tuple(names[4:]),
        bar_columns=dict(zip(("open", "high", "low", "close"), names[:4])),
    )


def read_binance_klines(path: str | Path, asset_id: str, mark: bool) -> RawTable:
    path = str(path)
    text = Path(path).read_text()
    try:
        klines = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(path, exc.lineno, f"invalid JSON: {exc.msg} (char {exc.pos})") from None
    kind = "mark" if mark else "spot"
    return klines_to_table(klines, path, asset_id, mark, f"binance_{kind}_klines:{Path(path).name}")

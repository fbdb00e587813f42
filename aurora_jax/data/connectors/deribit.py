"""Deribit DVOL (30-day implied volatility index) connector.

``GET /api/v2/public/get_volatility_index_data`` with ``currency, start_timestamp,
end_timestamp`` (ms) and ``resolution`` (``"1"``, ``"60"``, ``"3600"``, ``"43200"`` seconds or
``"1D"``) answers ``{"jsonrpc": "2.0", "result": {"data": [[ts_ms, open, high, low, close],
...], "continuation": ts_or_null}}``. A long range comes back newest part first: we repeat the
request with ``end_timestamp = continuation`` until it is null (or before ``start``). Candles
seen twice (an inclusive continuation) are kept once.

The value is the candle's close, stamped at ``ts + resolution`` (when it is final), as feature
``iv_30d_atm`` in group ``iv``. Candles still open at ``now`` are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from aurora_jax.data.connectors.frames import (
    FetchResult,
    check_request,
    dedupe_in_range,
    find_gaps,
    long_frame,
    make_result,
    now_ms,
    snapshot_stats,
)
from aurora_jax.data.connectors.http import HttpClient
from aurora_jax.data.connectors.settings import ConnectorSettings
from aurora_jax.errors import ConnectorError, InvalidParameterError

DVOL_PATH = "/api/v2/public/get_volatility_index_data"
RESOLUTION_MS: dict[str, int] = {
    "1": 1_000, "60": 60_000, "3600": 3_600_000, "43200": 43_200_000, "1D": 86_400_000,
}
FEATURE = "iv_30d_atm"


def fetch_deribit_dvol(
    currency: str, start: object, end: object, settings: ConnectorSettings, *,
    resolution: str = "1D", aliases: Mapping[str, str] | None = None,
    asset_id: str | None = None, client: HttpClient | None = None, now: object | None = None,
) -> FetchResult:
    """DVOL candles of ``currency`` (``"BTC"``, ``"ETH"``) with ``ts`` in ``[start, end]``."""
    resolution = str(resolution)
    if resolution not in RESOLUTION_MS:
        raise InvalidParameterError("resolution", resolution, f"one of {list(RESOLUTION_MS)}")
    step = RESOLUTION_MS[resolution]
    asset, start_ms, end_ms = check_request(currency, start, end, aliases, asset_id)
    client = client or HttpClient(settings)
    before = snapshot_stats(client.stats)
    base = settings.deribit_url
    times: list[int] = []
    closes: list[float] = []
    pages = 0
    cursor = end_ms
    while True:
        params = {"currency": currency, "start_timestamp": start_ms, "end_timestamp": cursor,
                  "resolution": resolution}
        url = client.build_url(base, DVOL_PATH, params)
        payload = client.get_json(base, DVOL_PATH, params)
        pages += 1
        data, continuation = _parse_payload(payload, url)
        for i, candle in enumerate(data):
            t, c = _parse_candle(candle, i, url)
            times.append(t)
            closes.append(c)
        if continuation is None or continuation < start_ms:
            break
        if continuation >= cursor:
            raise ConnectorError(url, f"continuation {continuation} does not move before "
                                      f"end_timestamp {cursor}; stopping to avoid a loop")
        cursor = continuation
    t_arr, keep = dedupe_in_range(np.asarray(times, dtype=np.int64), start_ms, end_ms)
    c_arr = np.asarray(closes, dtype=np.float64)[keep]
    now_value = now_ms(now)
    final = t_arr + step <= now_value
    dropped = int((~final).sum())
    t_arr, c_arr = t_arr[final], c_arr[final]
    gaps = find_gaps(t_arr, start_ms, min(end_ms, now_value - step), step, stamp_offset_ms=step)
    source = f"deribit_dvol:{currency}:{resolution}"
    frame = long_frame(asset, t_arr + step, {FEATURE: c_arr}, {FEATURE: "iv"}, source)
    return make_result(frame, gaps, client.stats, before, pages, source, dropped=dropped)


def _parse_payload(payload: Any, url: str) -> tuple[list[Any], int | None]:
    if not isinstance(payload, dict):
        raise ConnectorError(url, f"expected a JSON-RPC object, got {type(payload).__name__}")
    if "error" in payload:
        err = payload["error"]
        raise ConnectorError(url, f"JSON-RPC error: {json.dumps(err)[:300]}")
    result = payload.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("data"), list):
        raise ConnectorError(url, f"expected result.data to be an array: {str(payload)[:200]}")
    cont = result.get("continuation")
    if cont is not None:
        try:
            cont = int(cont)
        except (TypeError, ValueError):
            raise ConnectorError(url, f"continuation {cont!r} is not a timestamp") from None
    return result["data"], cont


def _parse_candle(candle: Any, i: int, url: str) -> tuple[int, float]:
    if not isinstance(candle, list) or len(candle) < 5:
        raise ConnectorError(url, f"candle {i} is not [ts, open, high, low, close]: "
                                  f"{str(candle)[:120]}")
    try:
        t, c = int(candle[0]), float(candle[4])
    except (TypeError, ValueError) as exc:
        raise ConnectorError(url, f"candle {i} is not numeric ({exc}): "
                                  f"{str(candle)[:120]}") from None
    if not np.isfinite(c):
        raise ConnectorError(url, f"candle {i} has a non-finite close: {str(candle)[:120]}")
    return t, c

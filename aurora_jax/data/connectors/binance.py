"""Binance connectors: spot klines, USDT-M mark-price klines, USDT-M funding-rate history.

Klines (``GET /api/v3/klines``, ``GET /fapi/v1/markPriceKlines``; params ``symbol, interval,
startTime, endTime, limit``) answer arrays ``[openTime, open, high, low, close, volume,
closeTime, quoteVolume, trades, takerBuyBase, takerBuyQuote, ignore]`` (prices as strings) for
open times in ``[startTime, endTime]``, oldest first, at most ``limit``. We page by moving
``startTime`` to the last ``openTime + interval`` until it passes ``endTime``, a page comes
back empty, or a page is shorter than ``limit`` (the range is exhausted).

Funding (``GET /fapi/v1/fundingRate``; params ``symbol, startTime, endTime, limit``) answers
``[{"symbol", "fundingTime", "fundingRate", "markPrice"}, ...]`` oldest first; we page with
``startTime = last fundingTime + 1``. ``fundingRate`` is a fraction per funding interval.

A bar is stamped at its close, ``openTime + interval``; a funding value at ``fundingTime``.
Bars still open at ``now`` are dropped (their values are not final).
"""

from __future__ import annotations

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
from aurora_jax.data.readers.binance_klines import kline_feature_names
from aurora_jax.errors import ConnectorError, InvalidParameterError

KLINES_PATH = "/api/v3/klines"
MARK_KLINES_PATH = "/fapi/v1/markPriceKlines"
FUNDING_PATH = "/fapi/v1/fundingRate"
INTERVAL_MS: dict[str, int] = {"1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def fetch_binance_klines(
    symbol: str, start: object, end: object, settings: ConnectorSettings, *,
    interval: str = "1d", aliases: Mapping[str, str] | None = None, asset_id: str | None = None,
    client: HttpClient | None = None, now: object | None = None,
) -> FetchResult:
    """Spot klines of ``symbol`` with open times in ``[start, end]`` as long rows
    ``open, high, low, close, volume`` (suffixed ``_1h``/``_4h`` below daily), group ``price``.
    ``volume`` is the quote volume (``settings.klines_volume="quote"``) or the base volume."""
    return _fetch_klines(symbol, start, end, settings, interval=interval, aliases=aliases,
                         asset_id=asset_id, client=client, now=now, mark=False)


def fetch_binance_mark_klines(
    symbol: str, start: object, end: object, settings: ConnectorSettings, *,
    interval: str = "1h", aliases: Mapping[str, str] | None = None, asset_id: str | None = None,
    client: HttpClient | None = None, now: object | None = None,
) -> FetchResult:
    """USDT-M mark-price klines as ``mark_open_1h ... mark_close_1h`` (no volume: always 0)."""
    return _fetch_klines(symbol, start, end, settings, interval=interval, aliases=aliases,
                         asset_id=asset_id, client=client, now=now, mark=True)


def fetch_binance_funding(
    symbol: str, start: object, end: object, settings: ConnectorSettings, *,
    aliases: Mapping[str, str] | None = None, asset_id: str | None = None,
    client: HttpClient | None = None, now: object | None = None,
) -> FetchResult:
    """USDT-M funding-rate history with ``fundingTime`` in ``[start, end]`` as feature
    ``funding_rate`` (group ``derivs``), stamped at ``fundingTime``. Gaps are the slots of the
    ``funding_interval_hours`` grid with no event within ``funding_time_tolerance_ms``."""
    asset, start_ms, end_ms = check_request(symbol, start, end, aliases, asset_id)
    client = client or HttpClient(settings)
    before = snapshot_stats(client.stats)
    base = settings.binance_futures_url
    times, rates, pages = _fetch_pages(
        client, base, FUNDING_PATH, {"symbol": symbol}, start_ms, end_ms, settings.page_limit,
        lambda ev, i, url: _parse_funding(ev, i, symbol, url), 1, "funding events", "fundingTime")
    t_arr, keep = dedupe_in_range(np.asarray(times, dtype=np.int64), start_ms, end_ms)
    r_arr = np.asarray(rates, dtype=np.float64)[keep]
    now_value = now_ms(now)
    step = round(settings.funding_interval_hours * 3_600_000)
    gaps = find_gaps(t_arr, start_ms, min(end_ms, now_value), step,
                     tolerance_ms=settings.funding_time_tolerance_ms)
    source = f"binance_funding:{symbol}"
    frame = long_frame(asset, t_arr, {"funding_rate": r_arr}, {"funding_rate": "derivs"}, source)
    return make_result(frame, gaps, client.stats, before, pages, source, dropped=0)


def _fetch_klines(
    symbol: str, start: object, end: object, settings: ConnectorSettings, *, interval: str,
    aliases: Mapping[str, str] | None, asset_id: str | None, client: HttpClient | None,
    now: object | None, mark: bool,
) -> FetchResult:
    if interval not in INTERVAL_MS:
        raise InvalidParameterError("interval", interval, f"one of {list(INTERVAL_MS)}")
    asset, start_ms, end_ms = check_request(symbol, start, end, aliases, asset_id)
    step = INTERVAL_MS[interval]
    client = client or HttpClient(settings)
    before = snapshot_stats(client.stats)
    base = settings.binance_futures_url if mark else settings.binance_spot_url
    path = MARK_KLINES_PATH if mark else KLINES_PATH
    vol_index = 7 if settings.klines_volume == "quote" else 5
    opens, rows, pages = _fetch_pages(
        client, base, path, {"symbol": symbol, "interval": interval}, start_ms, end_ms, settings.page_limit,
        lambda k, i, url: _parse_kline(k, i, step, vol_index, url), step, "klines", "openTime")
    o_arr, keep = dedupe_in_range(np.asarray(opens, dtype=np.int64), start_ms, end_ms)
    values = np.asarray(rows, dtype=np.float64).reshape(-1, 5)[keep]
    now_value = now_ms(now)
    final = o_arr + step <= now_value
    dropped = int((~final).sum())
    o_arr, values = o_arr[final], values[final]
    gaps = find_gaps(o_arr, start_ms, min(end_ms, now_value - step), step, stamp_offset_ms=step)
    names = kline_feature_names(interval, mark)
    columns = {name: values[:, j] for j, name in enumerate(names)}  # mark: no volume column
    kind = "binance_mark_klines" if mark else "binance_klines"
    source = f"{kind}:{symbol}:{interval}"
    frame = long_frame(asset, o_arr + step, columns, dict.fromkeys(names, "price"), source)
    return make_result(frame, gaps, client.stats, before, pages, source, dropped=dropped)


def _fetch_pages(client: HttpClient, base: str, path: str, params: dict, start_ms: int, end_ms: int,
                 limit: int, parse, advance_ms: int, what: str, time_field: str) -> tuple[list, list, int]:
    """Page through a Binance time-range endpoint: ask ``[cursor, end]`` with ``limit`` rows, parse each
    item to ``(time_ms, value)``, move the cursor to the last time + ``advance_ms``; stop at an empty
    or short page. Returns ``(times, values, pages)`` (not yet deduplicated)."""
    times: list[int] = []
    values: list = []
    pages = 0
    cursor = start_ms
    while cursor <= end_ms:
        query = {**params, "startTime": cursor, "endTime": end_ms, "limit": limit}
        url = client.build_url(base, path, query)
        page = client.get_json(base, path, query)
        pages += 1
        if not isinstance(page, list):
            raise ConnectorError(url, f"expected a JSON array of {what}, got "
                                      f"{type(page).__name__}: {str(page)[:200]}")
        if not page:
            break
        page_times = []
        for i, item in enumerate(page):
            t, v = parse(item, i, url)
            page_times.append(t)
            values.append(v)
        times.extend(page_times)
        last = max(page_times)
        if last < cursor:
            raise ConnectorError(url, f"{time_field} {last} before startTime {cursor}")
        cursor = last + advance_ms
        if len(page) < limit:
            break
    return times, values, pages


def _parse_kline(k: Any, i: int, step: int, vol_index: int, url: str) -> tuple[int, list[float]]:
    if not isinstance(k, list) or len(k) < 8:
        raise ConnectorError(url, f"kline {i} is not an array of >= 8 fields: {str(k)[:120]}")
    try:
        open_ms, close_ms = int(k[0]), int(k[6])
        values = [float(k[1]), float(k[2]), float(k[3]), float(k[4]), float(k[vol_index])]
    except (TypeError, ValueError) as exc:
        raise ConnectorError(url, f"kline {i} has a non-numeric field ({exc}): "
                                  f"{str(k)[:120]}") from None
    if close_ms - open_ms + 1 != step:
        raise ConnectorError(url, f"kline {i} spans {close_ms - open_ms + 1} ms, the interval "
                                  f"is {step} ms")
    if not all(np.isfinite(values)):
        raise ConnectorError(url, f"kline {i} has a non-finite value: {str(k)[:120]}")
    return open_ms, values


def _parse_funding(ev: Any, i: int, symbol: str, url: str) -> tuple[int, float]:
    if not isinstance(ev, dict) or "fundingTime" not in ev or "fundingRate" not in ev:
        raise ConnectorError(url, f"funding event {i} lacks fundingTime/fundingRate: "
                                  f"{str(ev)[:120]}")
    if ev.get("symbol", symbol) != symbol:
        raise ConnectorError(url, f"funding event {i} is for {ev.get('symbol')!r}, "
                                  f"asked for {symbol!r}")
    try:
        t, r = int(ev["fundingTime"]), float(ev["fundingRate"])
    except (TypeError, ValueError) as exc:
        raise ConnectorError(url, f"funding event {i} is not numeric ({exc}): "
                                  f"{str(ev)[:120]}") from None
    if not np.isfinite(r):
        raise ConnectorError(url, f"funding event {i} has a non-finite rate: {str(ev)[:120]}")
    return t, r

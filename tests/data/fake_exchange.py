"""A local stand-in for Binance and Deribit, serving the real data in /work/shared/data.

``FakeExchange.from_shared_data(data_dir)`` builds, in the exchanges' exact wire formats:

- ``/api/v3/klines`` BTCUSDT ``1d`` from ``ohlcv/BTC-USD_1d.csv`` (quoteVolume = the file's
  ``volume_usd``; base volume = quoteVolume / close; the file has no trade counts or taker
  volumes, served as 0 like Binance's mark-price klines do); ``1h`` and ``4h`` from the hourly
  BTCUSDT mark-price file (the only hourly Binance bars in the shared data);
- ``/fapi/v1/markPriceKlines`` BTCUSDT/ETHUSDT ``1h`` (the JSON files as they are) and ``4h``
  (complete 4-hour groups of them: first open, max high, min low, last close);
- ``/fapi/v1/fundingRate`` BTCUSDT from ``features/BTC-USD/funding_rate.csv``. That file is in
  percent per 8 h (median 0.01 = Binance's 0.01 % floor); Binance answers fractions, so the
  server sends ``value / 100`` with 8 decimals, and ``markPrice`` = the hourly mark open at
  ``fundingTime`` (``""`` outside the hourly file, as Binance does for old records);
- ``/api/v2/public/get_volatility_index_data`` BTC ``1D`` from
  ``features/BTC-USD/iv_30d_atm.csv`` (close = the value; open = the previous close;
  high/low = their max/min).

Like the real servers it honours ``startTime``/``endTime``/``limit`` (oldest first, at most
``limit``), returns Deribit's newest ``deribit_page_size`` candles with a ``continuation``,
and answers bad parameters with the real error bodies (``{"code":-1121,"msg":"Invalid
symbol."}``, JSON-RPC ``-32602``). Tests script faults (``inject``) and gaps (``hide``) and read
the request log (``requests``).
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
KLINE_INTERVALS = {"1m": 60_000, "1h": HOUR_MS, "4h": 4 * HOUR_MS, "1d": DAY_MS}
DERIBIT_RESOLUTIONS = {"1": 1_000, "60": 60_000, "3600": HOUR_MS, "43200": 12 * HOUR_MS,
                       "1D": DAY_MS}
SPOT_KLINES = "/api/v3/klines"
MARK_KLINES = "/fapi/v1/markPriceKlines"
FUNDING = "/fapi/v1/fundingRate"
DVOL = "/api/v2/public/get_volatility_index_data"


def _date_ms(date: str) -> int:
    y, m, d = (int(x) for x in date.split("-"))
    return int(dt.datetime(y, m, d, tzinfo=dt.UTC).timestamp() * 1000)


def _iso_ms(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp).timestamp() * 1000)


def load_daily_klines(path: Path) -> list[list[Any]]:
    """Binance spot kline arrays from a ``timestamp,open,high,low,close,volume_usd`` CSV."""
    rows = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            t = _date_ms(rec["timestamp"])
            quote = Decimal(rec["volume_usd"])
            base = quote / Decimal(rec["close"])
            rows.append([t, rec["open"], rec["high"], rec["low"], rec["close"], f"{base:.8f}",
                         t + DAY_MS - 1, rec["volume_usd"], 0, "0", "0", "0"])
    return rows


def load_kline_json(path: Path) -> list[list[Any]]:
    return json.loads(Path(path).read_text())


def aggregate_klines(rows: list[list[Any]], step_ms: int, width_ms: int) -> list[list[Any]]:
    """Complete ``width_ms`` bars (epoch-aligned) from consecutive ``step_ms`` bars."""
    per = width_ms // step_ms
    groups: dict[int, list[list[Any]]] = {}
    for r in rows:
        groups.setdefault(r[0] // width_ms, []).append(r)
    out = []
    for g, members in sorted(groups.items()):
        if len(members) != per:
            continue
        t0 = g * width_ms
        high = max(members, key=lambda r: float(r[2]))[2]
        low = min(members, key=lambda r: float(r[3]))[3]
        out.append([t0, members[0][1], high, low, members[-1][4], "0", t0 + width_ms - 1, "0",
                    sum(int(r[8]) for r in members), "0", "0", "0"])
    return out


def load_funding(path: Path, symbol: str, mark_rows: list[list[Any]]) -> list[dict[str, Any]]:
    mark_open = {r[0]: r[1] for r in mark_rows}
    out = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            t = _iso_ms(rec["timestamp"])
            out.append({"symbol": symbol, "fundingTime": t,
                        "fundingRate": f"{Decimal(rec['value']) / 100:.8f}",
                        "markPrice": mark_open.get(t, "")})
    return out


def load_dvol_daily(path: Path) -> list[list[Any]]:
    out: list[list[Any]] = []
    prev = None
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            close = float(rec["value"])
            open_ = close if prev is None else prev
            out.append([_date_ms(rec["timestamp"]), open_, max(open_, close), min(open_, close),
                        close])
            prev = close
    return out


@dataclass
class Fault:
    """A scripted misbehaviour for the next ``times`` requests whose path starts with
    ``path`` (any path when None). Kinds: ``status`` (answer ``status`` with ``body`` and an
    optional ``Retry-After``), ``body`` (200 with a raw ``body``), ``truncated`` (the first half
    of the real JSON, consistent Content-Length), ``short_body`` (full Content-Length, half the
    bytes, then close), ``slow`` (sleep ``delay_s`` first), ``drop`` (close, no answer)."""

    kind: str
    times: int = 1
    path: str | None = None
    status: int = 500
    body: bytes | None = None
    retry_after: str | None = None
    delay_s: float = 0.0


@dataclass
class RequestRecord:
    path: str
    params: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class _Series:
    """Rows sorted by time with a parallel list of their times."""

    def __init__(self, rows: list[Any], key) -> None:
        self.rows = sorted(rows, key=key)
        self.times = [key(r) for r in self.rows]


class FakeExchange:
    """Threaded HTTP server on 127.0.0.1 (port 0) serving Binance/Deribit formats."""

    def __init__(self, *, deribit_page_size: int = 1000, deribit_continuation: str = "inclusive"):
        if deribit_continuation not in ("inclusive", "exclusive"):
            raise ValueError("deribit_continuation must be 'inclusive' or 'exclusive'")
        self.klines: dict[tuple[str, str, str], _Series] = {}
        self.funding: dict[str, _Series] = {}
        self.dvol: dict[tuple[str, str], _Series] = {}
        self.deribit_page_size = deribit_page_size
        self.deribit_continuation = deribit_continuation
        self.requests: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._hidden: dict[tuple, set[int]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- data -------------------------------------------------------------------------------
    @classmethod
    def from_shared_data(cls, data_dir: Path, **kw: Any) -> FakeExchange:
        ex = cls(**kw)
        ohlcv = Path(data_dir) / "ohlcv"
        btc_1h = load_kline_json(ohlcv / "BTCUSDT_1h_markprice.json")
        eth_1h = load_kline_json(ohlcv / "ETHUSDT_1h_markprice.json")
        btc_4h = aggregate_klines(btc_1h, HOUR_MS, 4 * HOUR_MS)
        ex.add_klines("spot", "BTCUSDT", "1d", load_daily_klines(ohlcv / "BTC-USD_1d.csv"))
        ex.add_klines("spot", "BTCUSDT", "1h", btc_1h)
        ex.add_klines("spot", "BTCUSDT", "4h", btc_4h)
        ex.add_klines("mark", "BTCUSDT", "1h", btc_1h)
        ex.add_klines("mark", "BTCUSDT", "4h", btc_4h)
        ex.add_klines("mark", "ETHUSDT", "1h", eth_1h)
        ex.add_klines("mark", "ETHUSDT", "4h", aggregate_klines(eth_1h, HOUR_MS, 4 * HOUR_MS))
        feats = Path(data_dir) / "features" / "BTC-USD"
        ex.funding["BTCUSDT"] = _Series(
            load_funding(feats / "funding_rate.csv", "BTCUSDT", btc_1h), lambda r: r["fundingTime"])
        ex.dvol[("BTC", "1D")] = _Series(load_dvol_daily(feats / "iv_30d_atm.csv"), lambda r: r[0])
        return ex

    def add_klines(self, market: str, symbol: str, interval: str, rows: list[list[Any]]) -> None:
        self.klines[(market, symbol, interval)] = _Series(rows, lambda r: r[0])

    # -- scripting --------------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, path: str | None = None, **kw: Any) -> None:
        with self._lock:
            self._faults.append(Fault(kind=kind, times=times, path=path, **kw))

    def hide(self, dataset: tuple, times: Iterable[int]) -> None:
        """Make the rows of ``dataset`` (e.g. ``("spot","BTCUSDT","1d")``, ``("funding",
        "BTCUSDT")``, ``("dvol","BTC","1D")``) at these times disappear (a gap)."""
        with self._lock:
            self._hidden.setdefault(tuple(dataset), set()).update(int(t) for t in times)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hidden.clear()
            self.requests.clear()

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- server -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeExchange:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.exchange = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------
    def _record_and_take_fault(self, path: str, params: dict[str, str]) -> Fault | None:
        with self._lock:
            self.requests.append(RequestRecord(path, params))
            for f in self._faults:
                if f.times > 0 and (f.path is None or path.startswith(f.path)):
                    f.times -= 1
                    return f
        return None

    def _visible(self, dataset: tuple, series: _Series, lo: int, hi: int) -> list[Any]:
        hidden = self._hidden.get(dataset, set())
        i0 = bisect.bisect_left(series.times, lo)
        i1 = bisect.bisect_right(series.times, hi)
        return [r for r, t in zip(series.rows[i0:i1], series.times[i0:i1], strict=True)
                if t not in hidden]

    def route(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path in (SPOT_KLINES, MARK_KLINES):
            market = "spot" if path == SPOT_KLINES else "mark"
            return self._binance_klines(market, params, 1000 if market == "spot" else 1500)
        if path == FUNDING:
            return self._binance_funding(params)
        if path == DVOL:
            return self._deribit_dvol(params)
        return 404, {"code": -1, "msg": f"unknown path {path}"}

    @staticmethod
    def _binance_window(params: dict[str, str], default_limit: int, max_limit: int):
        def num(name: str) -> int | None:
            v = params.get(name)
            if v is None or v == "":
                return None
            if not v.lstrip("-").isdigit():
                raise _BinanceError(-1100, f"Illegal characters found in parameter '{name}'; "
                                           "legal range is '^[0-9]{1,20}$'.")
            return int(v)

        start, end, limit = num("startTime"), num("endTime"), num("limit")
        if start is not None and end is not None and start > end:
            raise _BinanceError(-1023, "Start time is greater than end time.")
        limit = default_limit if limit is None else max(1, min(limit, max_limit))
        return start, end, limit

    @staticmethod
    def _take(rows: list[Any], start: int | None, limit: int) -> list[Any]:
        # startTime given (or neither): oldest first from start; only endTime: the latest rows
        return rows[:limit] if start is not None else rows[-limit:]

    def _binance_klines(self, market: str, params: dict[str, str], max_limit: int):
        try:
            symbol = params.get("symbol")
            if not symbol:
                raise _BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was "
                                           "empty/null, or malformed.")
            interval = params.get("interval", "")
            if interval not in KLINE_INTERVALS:
                raise _BinanceError(-1120, "Invalid interval.")
            start, end, limit = self._binance_window(params, 500, max_limit)
            key = (market, symbol, interval)
            if key not in self.klines:
                raise _BinanceError(-1121, "Invalid symbol.")
        except _BinanceError as err:
            return 400, err.body()
        series = self.klines[key]
        lo = start if start is not None else -(2**62)
        hi = end if end is not None else 2**62
        return 200, self._take(self._visible(key, series, lo, hi), start, limit)

    def _binance_funding(self, params: dict[str, str]):
        try:
            symbol = params.get("symbol", "")
            start, end, limit = self._binance_window(params, 100, 1000)
            if symbol not in self.funding:
                raise _BinanceError(-1121, "Invalid symbol.")
        except _BinanceError as err:
            return 400, err.body()
        lo = start if start is not None else -(2**62)
        hi = end if end is not None else 2**62
        rows = self._visible(("funding", symbol), self.funding[symbol], lo, hi)
        return 200, self._take(rows, start, limit)

    def _deribit_dvol(self, params: dict[str, str]):
        def bad(param: str, reason: str = "wrong format"):
            return 400, _jsonrpc({"error": {"message": "Invalid params", "code": -32602,
                                            "data": {"reason": reason, "param": param}}})

        currency, resolution = params.get("currency", ""), params.get("resolution", "")
        for name in ("start_timestamp", "end_timestamp"):
            if not params.get(name, "").isdigit():
                return bad(name)
        if resolution not in DERIBIT_RESOLUTIONS:
            return bad("resolution", "must be one of 1, 60, 3600, 43200, 1D")
        if (currency, resolution) not in self.dvol:
            return bad("currency")
        start, end = int(params["start_timestamp"]), int(params["end_timestamp"])
        rows = self._visible(("dvol", currency, resolution), self.dvol[(currency, resolution)],
                             start, end)
        continuation = None
        if len(rows) > self.deribit_page_size:
            rows = rows[-self.deribit_page_size:]
            first = rows[0][0]
            continuation = first if self.deribit_continuation == "inclusive" else first - 1
        return 200, _jsonrpc({"result": {"data": rows, "continuation": continuation}})


class _BinanceError(Exception):
    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def _jsonrpc(payload: dict[str, Any]) -> dict[str, Any]:
    now_us = int(time.time() * 1e6)
    return {"jsonrpc": "2.0", **payload, "usIn": now_us, "usOut": now_us + 150, "usDiff": 150,
            "testnet": False}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              declared_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if declared_length is None
                                               else declared_length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        ex: FakeExchange = self.server.exchange  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        fault = ex._record_and_take_fault(url.path, params)
        try:
            if fault is not None:
                if fault.kind == "drop":
                    self.close_connection = True
                    return
                if fault.kind == "slow":
                    time.sleep(fault.delay_s)
                if fault.kind == "status":
                    body = fault.body if fault.body is not None else _default_error(fault.status)
                    hdrs = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    self._send(fault.status, body, hdrs)
                    return
                if fault.kind == "body":
                    self._send(200, fault.body or b"")
                    return
            status, payload = ex.route(url.path, params)
            body = json.dumps(payload, separators=(",", ":")).encode()
            if fault is not None and fault.kind == "truncated":
                self._send(status, body[: len(body) // 2])
            elif fault is not None and fault.kind == "short_body":
                self._send(status, body[: len(body) // 2], declared_length=len(body))
            else:
                self._send(status, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass


def _default_error(status: int) -> bytes:
    if status == 429:
        return json.dumps({"code": -1003, "msg": "Too many requests; current limit of IP is "
                                                 "6000 requests per minute."}).encode()
    if status == 418:
        return json.dumps({"code": -1003, "msg": "Way too many requests; IP banned."}).encode()
    return b"<html><body><h1>%d</h1></body></html>" % status

"""HTTP connectors against a local fake Binance/Deribit serving the real files in ../shared/data.

No test waits for real: clock, sleep and jitter are injected (``FakeClock``), except the
timeout tests whose server really stalls for a fraction of a second.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import socket
import time

import numpy as np
import pandas as pd
import pytest
from fake_exchange import DVOL, FUNDING, MARK_KLINES, SPOT_KLINES, FakeExchange
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from aurora_jax.data.connectors import (
    LONG_FRAME_COLUMNS,
    SOURCES,
    ConnectorSettings,
    Gap,
    HttpClient,
    TokenBucket,
    TransportError,
    backoff_bound,
    backoff_delay,
    fetch_binance_funding,
    fetch_binance_klines,
    fetch_binance_mark_klines,
    fetch_deribit_dvol,
    fetch_to_frame,
    find_gaps,
    parse_retry_after,
    urllib_transport,
)
from aurora_jax.errors import ConfigError, ConnectorError, InvalidParameterError

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
ALIASES = {"BTCUSDT": "BTC-USD", "ETHUSDT": "ETH-USD", "BTC": "BTC-USD"}
NOW = pd.Timestamp("2024-08-01", tz="UTC")  # after the last real row (2024-06-30)


# -- fixtures and helpers ----------------------------------------------------------------------
class FakeClock:
    """``clock()`` returns fake seconds; ``sleep(d)`` records ``d`` and advances the clock."""

    def __init__(self, t0: float = 1_000.0):
        self.t = t0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, d: float) -> None:
        assert d >= 0
        self.sleeps.append(d)
        self.t += d


@pytest.fixture(scope="module")
def exchange(shared_data_dir):
    with FakeExchange.from_shared_data(shared_data_dir) as ex:
        yield ex


@pytest.fixture(autouse=True)
def _clean_exchange(request):
    if "exchange" in request.fixturenames:
        ex = request.getfixturevalue("exchange")
        ex.reset()
        ex.deribit_page_size, ex.deribit_continuation = 1000, "inclusive"
    yield


def cfg(exchange: FakeExchange | None = None, **kw) -> ConnectorSettings:
    url = exchange.url if exchange is not None else "http://127.0.0.1:9"
    base = {"binance_spot_url": url, "binance_futures_url": url, "deribit_url": url,
            "timeout_s": 5.0, "rate_limit_per_s": 1e6, "rate_limit_burst": 1000,
            "max_retries": 5}
    base.update(kw)
    return ConnectorSettings(**base)


def client_for(settings: ConnectorSettings, seed: int = 0, transport=urllib_transport):
    clock = FakeClock()
    client = HttpClient(settings, transport=transport, clock=clock, sleep=clock.sleep,
                        rng=np.random.default_rng(seed))
    return client, clock


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.pivot(index="timestamp", columns="feature_name", values="value")


def daily_csv(shared_data_dir) -> pd.DataFrame:
    return _daily_csv(shared_data_dir).copy()


def hourly_json(shared_data_dir, symbol: str) -> pd.DataFrame:
    return _hourly_json(shared_data_dir, symbol).copy()


@functools.cache
def _daily_csv(shared_data_dir) -> pd.DataFrame:
    df = pd.read_csv(shared_data_dir / "ohlcv" / "BTC-USD_1d.csv", float_precision="round_trip")
    df["date"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


@functools.cache
def _hourly_json(shared_data_dir, symbol: str) -> pd.DataFrame:
    rows = json.loads((shared_data_dir / "ohlcv" / f"{symbol}_1h_markprice.json").read_text())
    df = pd.DataFrame([r[:7] for r in rows],
                      columns=["open_ms", "open", "high", "low", "close", "volume", "close_ms"])
    for c in ("open", "high", "low", "close", "volume"):
        df[c] = df[c].map(float)
    return df


def expected_pages(n_rows: int, limit: int, more_slots_after_last: bool) -> int:
    """Pages a Binance cursor walk needs: full pages, a short last page, or an empty page when
    the last page was full and the range goes on."""
    if n_rows == 0:
        return 1
    full, rest = divmod(n_rows, limit)
    return full + (1 if rest else int(more_slots_after_last))


def utc(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


# -- correctness against the real files --------------------------------------------------------
def test_spot_daily_klines_paginate_and_match_csv(exchange, shared_data_dir):
    s = cfg(exchange, page_limit=1000)
    start, end = utc("2017-01-01"), utc("2023-12-31")
    res = fetch_binance_klines("BTCUSDT", start, end, s, interval="1d", aliases=ALIASES, now=NOW)
    csv = daily_csv(shared_data_dir)
    ref = csv[(csv["date"] >= start) & (csv["date"] <= end)]
    n = len(ref)
    assert n == 2556
    assert res.requests == res.pages == expected_pages(n, 1000, False) == 3
    assert res.retries == 0 and res.gaps == () and res.complete
    # the cursor walk: each startTime is the previous page's last openTime + 1 day
    starts = [int(r.params["startTime"]) for r in exchange.requests]
    assert starts == [ms(start), ms(start + 1000 * DAY), ms(start + 2000 * DAY)]
    assert all(r.path == SPOT_KLINES and r.params["limit"] == "1000" for r in exchange.requests)
    f = res.frame
    assert tuple(f.columns) == LONG_FRAME_COLUMNS
    assert str(f["timestamp"].dtype) == "datetime64[us, UTC]"
    assert set(f["asset_id"]) == {"BTC-USD"} and set(f["feature_group"]) == {"price"}
    assert set(f["source"]) == {"binance_klines:BTCUSDT:1d"}
    w = wide(f)
    assert list(w.index) == list(ref["date"] + DAY)  # stamped at the close
    for col, src in [("open", "open"), ("high", "high"), ("low", "low"), ("close", "close"),
                     ("volume", "volume_usd")]:
        np.testing.assert_array_equal(w[col].to_numpy(), ref[src].to_numpy())


def test_base_volume_option_reads_the_base_field(exchange, shared_data_dir):
    s = cfg(exchange, klines_volume="base")
    res = fetch_binance_klines("BTCUSDT", "2024-06-01", "2024-06-30", s, aliases=ALIASES, now=NOW)
    csv = daily_csv(shared_data_dir).set_index("date").loc["2024-06-01":"2024-06-30"]
    base = (csv["volume_usd"] / csv["close"]).to_numpy()
    np.testing.assert_allclose(wide(res.frame)["volume"].to_numpy(), base, rtol=1e-9)


def test_mark_klines_hourly_match_json_for_btc_and_eth(exchange, shared_data_dir):
    s = cfg(exchange, page_limit=500)
    start, end = utc("2023-03-01"), utc("2023-04-28 23:00")
    for symbol, asset in [("BTCUSDT", "BTC-USD"), ("ETHUSDT", "ETH-USD")]:
        exchange.reset()
        res = fetch_binance_mark_klines(symbol, start, end, s, interval="1h", aliases=ALIASES,
                                        now=NOW)
        ref = hourly_json(shared_data_dir, symbol)
        ref = ref[(ref["open_ms"] >= ms(start)) & (ref["open_ms"] <= ms(end))]
        assert len(ref) == 59 * 24
        assert res.pages == expected_pages(len(ref), 500, False) == 3
        assert all(r.path == MARK_KLINES for r in exchange.requests)
        f = res.frame
        assert set(f["asset_id"]) == {asset}
        assert sorted(set(f["feature_name"])) == ["mark_close_1h", "mark_high_1h",
                                                  "mark_low_1h", "mark_open_1h"]  # no volume
        w = wide(f)
        stamps = pd.to_datetime(ref["open_ms"] + 3_600_000, unit="ms", utc=True)
        assert list(w.index) == list(stamps)
        # openTime + interval = closeTime + 1 ms, as in the real arrays
        assert (ref["close_ms"] + 1 == ref["open_ms"] + 3_600_000).all()
        for c in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(w[f"mark_{c}_1h"].to_numpy(), ref[c].to_numpy())
        assert res.gaps == ()


def test_spot_hourly_feature_names(exchange):
    res = fetch_binance_klines("BTCUSDT", "2023-05-01", "2023-05-01 23:00", cfg(exchange),
                               interval="1h", aliases=ALIASES, now=NOW)
    assert sorted(set(res.frame["feature_name"])) == [
        "close_1h", "high_1h", "low_1h", "open_1h", "volume_1h"]
    assert len(res.frame) == 24 * 5


def test_mark_4h_bars_equal_an_independent_resample(exchange, shared_data_dir):
    start, end = utc("2021-05-10"), utc("2021-05-20 20:00")
    res = fetch_binance_mark_klines("BTCUSDT", start, end, cfg(exchange, page_limit=20),
                                    interval="4h", aliases=ALIASES, now=NOW)
    ref = hourly_json(shared_data_dir, "BTCUSDT")
    ref.index = pd.to_datetime(ref["open_ms"], unit="ms", utc=True)
    bars = ref[["open", "high", "low", "close"]].resample("4h").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last"}).loc[start:end]
    w = wide(res.frame)
    assert len(bars) == 11 * 6 and res.pages == expected_pages(len(bars), 20, False) == 4
    assert list(w.index) == list(bars.index + 4 * HOUR)
    for c in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(w[f"mark_{c}_4h"].to_numpy(), bars[c].to_numpy())


def test_full_last_page_needs_one_empty_page_and_reports_trailing_gap(exchange, shared_data_dir):
    s = cfg(exchange, page_limit=10)
    # exactly 20 rows ending at the last real row: two full pages, then startTime > endTime
    res = fetch_binance_klines("BTCUSDT", "2024-06-11", "2024-06-30", s, aliases=ALIASES, now=NOW)
    assert res.requests == expected_pages(20, 10, False) == 2 and res.gaps == ()
    exchange.reset()
    # the same 20 rows but the range runs 10 days past the data: one more (empty) page, and the
    # 10 missing days are reported (their bars would close 2024-07-02 .. 2024-07-11)
    res = fetch_binance_klines("BTCUSDT", "2024-06-11", "2024-07-10", s, aliases=ALIASES, now=NOW)
    assert res.requests == expected_pages(20, 10, True) == 3
    assert len(wide(res.frame)) == 20
    assert res.gaps == (Gap(utc("2024-07-02"), utc("2024-07-11"), 10),)
    exchange.reset()
    # 15 rows: the second page is short, so the range is exhausted without an empty page
    res = fetch_binance_klines("BTCUSDT", "2024-06-16", "2024-07-10", s, aliases=ALIASES, now=NOW)
    assert res.requests == expected_pages(15, 10, True) == 2 and len(wide(res.frame)) == 15


def test_funding_history_matches_file(exchange, shared_data_dir):
    s = cfg(exchange, page_limit=1000)
    start, end = utc("2023-01-01"), utc("2023-12-31 16:00")
    res = fetch_binance_funding("BTCUSDT", start, end, s, aliases=ALIASES, now=NOW)
    ref = pd.read_csv(shared_data_dir / "features" / "BTC-USD" / "funding_rate.csv",
                      float_precision="round_trip")
    ref["t"] = pd.to_datetime(ref["timestamp"], utc=True)
    ref = ref[(ref["t"] >= start) & (ref["t"] <= end)]
    assert len(ref) == 365 * 3
    assert res.pages == expected_pages(len(ref), 1000, False) == 2
    # second page starts 1 ms after the last fundingTime of the first
    p = [int(r.params["startTime"]) for r in exchange.requests]
    assert p[1] == ms(ref["t"].iloc[999]) + 1
    f = res.frame
    assert set(f["feature_name"]) == {"funding_rate"} and set(f["feature_group"]) == {"derivs"}
    assert list(f["timestamp"]) == list(ref["t"])  # stamped at fundingTime
    # Binance sends fractions with 8 decimals; the shared file is in percent
    err = np.abs(f["value"].to_numpy() - ref["value"].to_numpy() / 100)
    assert err.max() <= 5e-9 + 1e-15
    assert res.gaps == ()


def test_funding_gaps_reported_not_filled(exchange):
    t1, t2 = utc("2023-06-10 08:00"), utc("2023-06-10 16:00")
    exchange.hide(("funding", "BTCUSDT"), [ms(t1), ms(t2)])
    res = fetch_binance_funding("BTCUSDT", "2023-06-01", "2023-06-30 16:00", cfg(exchange),
                                aliases=ALIASES, now=NOW)
    assert len(res.frame) == 30 * 3 - 2
    assert res.gaps == (Gap(t1, t2, 2),) and res.missing == 2
    assert t1 not in set(res.frame["timestamp"])


@pytest.mark.parametrize("mode", ["inclusive", "exclusive"])
def test_dvol_continuation_pages_match_file(exchange, shared_data_dir, mode):
    exchange.deribit_page_size, exchange.deribit_continuation = 100, mode
    ref = pd.read_csv(shared_data_dir / "features" / "BTC-USD" / "iv_30d_atm.csv",
                      float_precision="round_trip")
    ref["t"] = pd.to_datetime(ref["timestamp"], utc=True)
    start, end = ref["t"].iloc[0], ref["t"].iloc[-1]
    res = fetch_deribit_dvol("BTC", start, end, cfg(exchange), resolution="1D", aliases=ALIASES,
                             now=NOW)
    n, p = len(ref), 100
    pages = math.ceil(n / p) if mode == "exclusive" else 1 + math.ceil((n - p) / (p - 1))
    assert res.requests == res.pages == pages
    ends = [int(r.params["end_timestamp"]) for r in exchange.requests]
    assert ends[0] == ms(end) and all(b < a for a, b in itertools.pairwise(ends))
    assert all(r.path == DVOL and r.params["resolution"] == "1D" for r in exchange.requests)
    f = res.frame
    assert set(f["feature_name"]) == {"iv_30d_atm"} and set(f["feature_group"]) == {"iv"}
    assert set(f["source"]) == {"deribit_dvol:BTC:1D"}
    assert list(f["timestamp"]) == list(ref["t"] + DAY)  # candle ts + resolution
    np.testing.assert_array_equal(f["value"].to_numpy(), ref["value"].to_numpy())
    assert res.gaps == ()


def test_dvol_gap_reported(exchange):
    exchange.deribit_page_size = 50
    hidden = [utc("2023-02-03"), utc("2023-02-04"), utc("2023-05-01")]
    exchange.hide(("dvol", "BTC", "1D"), [ms(t) for t in hidden])
    res = fetch_deribit_dvol("BTC", "2023-01-01", "2023-06-30", cfg(exchange), aliases=ALIASES,
                             now=NOW)
    assert res.gaps == (Gap(utc("2023-02-04"), utc("2023-02-05"), 2),
                        Gap(utc("2023-05-02"), utc("2023-05-02"), 1))
    assert len(res.frame) == 181 - 3


def test_kline_gaps_across_page_boundary_reported_not_filled(exchange, shared_data_dir):
    hidden = [utc("2020-01-30"), utc("2020-01-31"), utc("2020-02-01"), utc("2020-03-15")]
    exchange.hide(("spot", "BTCUSDT", "1d"), [ms(t) for t in hidden])
    res = fetch_binance_klines("BTCUSDT", "2020-01-01", "2020-03-31", cfg(exchange, page_limit=30),
                               aliases=ALIASES, now=NOW)
    assert res.gaps == (Gap(utc("2020-01-31"), utc("2020-02-02"), 3),
                        Gap(utc("2020-03-16"), utc("2020-03-16"), 1))
    w = wide(res.frame)
    csv = daily_csv(shared_data_dir).set_index("date").loc["2020-01-01":"2020-03-31"]
    csv = csv.drop(index=hidden)
    assert len(w) == 91 - 4 and res.pages == expected_pages(87, 30, False) == 3
    assert list(w.index) == list(csv.index + DAY)
    np.testing.assert_array_equal(w["close"].to_numpy(), csv["close"].to_numpy())


def test_start_end_accept_epoch_ms_datetimes_and_strings(exchange):
    a = fetch_binance_klines("BTCUSDT", ms(utc("2024-05-01")), float(ms(utc("2024-05-10"))),
                             cfg(exchange), aliases=ALIASES, now=NOW)
    b = fetch_binance_klines("BTCUSDT", utc("2024-05-01").to_pydatetime(), "2024-05-10T00:00",
                             cfg(exchange), aliases=ALIASES, now=NOW)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert len(wide(a.frame)) == 10


def test_open_bar_is_dropped_not_reported_as_gap(exchange):
    now = utc("2024-06-30 12:00")  # the 2024-06-30 bar closes at 2024-07-01 00:00
    res = fetch_binance_klines("BTCUSDT", "2024-06-20", "2024-06-30", cfg(exchange),
                               aliases=ALIASES, now=now)
    assert res.dropped_incomplete == 1 and res.gaps == ()
    assert wide(res.frame).index.max() == utc("2024-06-30")


# -- robustness --------------------------------------------------------------------------------
def test_400_with_binance_error_is_not_retried(exchange):
    s = cfg(exchange)
    client, clock = client_for(s)
    with pytest.raises(ConnectorError) as ei:
        fetch_binance_klines("NOPEUSDT", "2024-01-01", "2024-01-31", s, asset_id="NOPE",
                             client=client, now=NOW)
    err = ei.value
    assert err.status_code == 400 and "-1121" in str(err) and "Invalid symbol." in str(err)
    assert "symbol=NOPEUSDT" in err.url and err.url.startswith(exchange.url + SPOT_KLINES)
    assert len(exchange.requests) == 1 and clock.sleeps == [] and client.stats.retries == 0


def test_deribit_jsonrpc_error_is_not_retried(exchange):
    with pytest.raises(ConnectorError) as ei:
        fetch_deribit_dvol("XYZ", "2023-01-01", "2023-01-31", cfg(exchange), asset_id="XYZ-USD",
                           now=NOW)
    assert ei.value.status_code == 400 and "-32602" in str(ei.value) and "currency" in str(ei.value)
    assert len(exchange.requests) == 1


def test_429_storm_honours_retry_after(exchange, shared_data_dir):
    s = cfg(exchange)
    client, clock = client_for(s)
    exchange.inject("status", times=3, path=SPOT_KLINES, status=429, retry_after="7")
    exchange.inject("status", times=1, path=SPOT_KLINES, status=418, retry_after="2")
    res = fetch_binance_klines("BTCUSDT", "2024-01-01", "2024-01-31", s, aliases=ALIASES,
                               client=client, now=NOW)
    assert clock.sleeps == [7.0, 7.0, 7.0, 2.0]
    assert res.retries == 4 and res.requests == 5 and res.pages == 1 and res.backoff_s == 23.0
    csv = daily_csv(shared_data_dir).set_index("date").loc["2024-01-01":"2024-01-31"]
    np.testing.assert_array_equal(wide(res.frame)["close"].to_numpy(), csv["close"].to_numpy())


def test_retry_after_beyond_limit_fails_at_once(exchange):
    s = cfg(exchange, max_retry_after_s=120.0)
    client, clock = client_for(s)
    exchange.inject("status", times=5, status=418, retry_after="3600")
    with pytest.raises(ConnectorError) as ei:
        fetch_binance_klines("BTCUSDT", "2024-01-01", "2024-01-31", s, aliases=ALIASES,
                             client=client, now=NOW)
    assert "Retry-After=3600" in str(ei.value) and ei.value.status_code == 418
    assert len(exchange.requests) == 1 and clock.sleeps == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_5xx_and_429_without_retry_after_back_off_with_full_jitter(exchange, seed):
    s = cfg(exchange, max_retries=6, backoff_base_s=0.5, backoff_cap_s=4.0, jitter="full")
    client, clock = client_for(s, seed=seed)
    exchange.inject("status", times=2, status=500)
    exchange.inject("status", times=2, status=503)
    exchange.inject("status", times=2, status=429)  # no Retry-After: plain backoff
    res = fetch_binance_klines("BTCUSDT", "2024-02-01", "2024-02-10", s, aliases=ALIASES,
                               client=client, now=NOW)
    bounds = [backoff_bound(k, 0.5, 4.0) for k in range(6)]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert res.retries == 6 and res.requests == 7 and len(clock.sleeps) == 6
    assert all(0.0 <= d <= b for d, b in zip(clock.sleeps, bounds, strict=True))
    # exactly the draws Uniform(0, b_k) of the injected generator, in order
    rng = np.random.default_rng(seed)
    np.testing.assert_allclose(clock.sleeps, [rng.uniform(0, b) for b in bounds], rtol=0, atol=0)
    assert len(set(clock.sleeps)) == 6  # jittered, not the bounds themselves
    assert len(wide(res.frame)) == 10


def test_no_jitter_delays_are_the_doubling_bounds(exchange):
    s = cfg(exchange, max_retries=5, backoff_base_s=0.25, backoff_cap_s=3.0, jitter="none")
    client, clock = client_for(s)
    exchange.inject("status", times=5, status=502)
    fetch_binance_klines("BTCUSDT", "2024-02-01", "2024-02-02", s, aliases=ALIASES,
                         client=client, now=NOW)
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 3.0]


def test_full_jitter_distribution_grows_with_attempt():
    rng = np.random.default_rng(7)
    means, n = [], 4000
    for k in range(5):
        b = backoff_bound(k, 0.5, 30.0)
        d = np.array([backoff_delay(k, 0.5, 30.0, "full", rng) for _ in range(n)])
        assert d.min() >= 0 and d.max() <= b and d.max() > 0.95 * b
        # Uniform(0, b): mean b/2 (s.e. b/sqrt(12 n) ~ 0.5 % of b), variance b^2/12
        assert abs(d.mean() - b / 2) < 0.03 * b
        assert abs(d.var() - b**2 / 12) < 0.06 * b**2 / 12
        means.append(d.mean())
    assert all(b > a for a, b in itertools.pairwise(means))
    assert backoff_bound(2000, 0.5, 30.0) == 30.0  # no overflow far past the cap


def test_retries_stop_at_max_retries(exchange):
    s = cfg(exchange, max_retries=3, jitter="none", backoff_base_s=1.0, backoff_cap_s=8.0)
    client, clock = client_for(s)
    exchange.inject("status", times=50, status=503)
    with pytest.raises(ConnectorError) as ei:
        fetch_binance_funding("BTCUSDT", "2023-01-01", "2023-01-31", s, aliases=ALIASES,
                              client=client, now=NOW)
    err = ei.value
    assert len(exchange.requests) == 4 and client.stats.requests == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert err.status_code == 503 and err.url.startswith(exchange.url + FUNDING)
    assert "4 attempts" in str(err) and "HTTP 503" in str(err)


@pytest.mark.parametrize("kind", ["truncated", "short_body", "drop"])
def test_broken_bodies_are_retried(exchange, shared_data_dir, kind):
    s = cfg(exchange)
    client, clock = client_for(s)
    exchange.inject(kind, times=2, path=MARK_KLINES)
    res = fetch_binance_mark_klines("BTCUSDT", "2022-01-01", "2022-01-02 23:00", s,
                                    aliases=ALIASES, client=client, now=NOW)
    assert res.retries == 2 and res.requests == 3 and len(clock.sleeps) == 2
    ref = hourly_json(shared_data_dir, "BTCUSDT")
    ref = ref[(ref["open_ms"] >= ms(utc("2022-01-01"))) &
              (ref["open_ms"] <= ms(utc("2022-01-02 23:00")))]
    np.testing.assert_array_equal(wide(res.frame)["mark_close_1h"].to_numpy(),
                                  ref["close"].to_numpy())


def test_transport_rejects_a_body_shorter_than_its_content_length(exchange):
    exchange.inject("short_body", times=1)
    url = f"{exchange.url}{SPOT_KLINES}?symbol=BTCUSDT&interval=1d&startTime=0&limit=5"
    with pytest.raises(TransportError, match="truncated body"):
        urllib_transport(url, 2.0, {})
    resp = urllib_transport(url, 2.0, {})  # the fault is spent: the same request now succeeds
    assert resp.status == 200 and len(json.loads(resp.body)) == 5


def test_truncated_json_after_max_retries_names_the_url(exchange):
    s = cfg(exchange, max_retries=2)
    client, clock = client_for(s)
    exchange.inject("truncated", times=10, path=DVOL)
    with pytest.raises(ConnectorError) as ei:
        fetch_deribit_dvol("BTC", "2023-01-01", "2023-03-01", s, aliases=ALIASES, client=client,
                           now=NOW)
    assert ei.value.url.startswith(exchange.url + DVOL) and "currency=BTC" in ei.value.url
    assert "invalid JSON" in str(ei.value) and ei.value.url in str(ei.value)
    assert len(exchange.requests) == 3 and len(clock.sleeps) == 2


def test_malformed_rows_fail_without_retry(exchange):
    exchange.inject("body", times=5, body=b'[[1577836800000,"1","2"]]')
    with pytest.raises(ConnectorError, match="kline 0"):
        fetch_binance_klines("BTCUSDT", "2020-01-01", "2020-01-05", cfg(exchange),
                             aliases=ALIASES, now=NOW)
    assert len(exchange.requests) == 1


def test_slow_responses_time_out_and_are_retried(exchange):
    s = cfg(exchange, timeout_s=0.25, max_retries=3)
    client, _ = client_for(s)
    exchange.inject("slow", times=2, delay_s=1.5)
    t0 = time.monotonic()
    res = fetch_binance_klines("BTCUSDT", "2024-03-01", "2024-03-05", s, aliases=ALIASES,
                               client=client, now=NOW)
    elapsed = time.monotonic() - t0
    assert res.retries == 2 and res.requests == 3 and len(wide(res.frame)) == 5
    assert elapsed < 1.4  # two 0.25 s timeouts, not two 1.5 s waits


def test_timeouts_exhaust_retries(exchange):
    s = cfg(exchange, timeout_s=0.2, max_retries=1)
    client, _ = client_for(s)
    exchange.inject("slow", times=2, delay_s=1.0)
    with pytest.raises(ConnectorError) as ei:
        fetch_binance_klines("BTCUSDT", "2024-03-01", "2024-03-05", s, aliases=ALIASES,
                             client=client, now=NOW)
    assert "timed out" in str(ei.value).lower() and "2 attempts" in str(ei.value)


def test_connection_refused_is_retried_then_fails():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    s = ConnectorSettings(binance_spot_url=url, binance_futures_url=url, deribit_url=url,
                          max_retries=2, timeout_s=2.0)
    client, clock = client_for(s)
    with pytest.raises(ConnectorError) as ei:
        fetch_binance_klines("BTCUSDT", "2024-03-01", "2024-03-05", s, aliases=ALIASES,
                             client=client, now=NOW)
    assert client.stats.requests == 3 and len(clock.sleeps) == 2
    assert "transport error" in str(ei.value) and ei.value.status_code is None


# -- rate limiting -----------------------------------------------------------------------------
def _assert_bucket_bound(times: list[float], rate: float, burst: int) -> None:
    """At most ``burst + rate * T`` starts in any window of length ``T``."""
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1e-9


def test_rate_limiter_bounds_real_requests(exchange):
    s = cfg(exchange, page_limit=100, rate_limit_per_s=2.0, rate_limit_burst=3)
    clock = FakeClock()
    sent: list[float] = []

    def recording(url, timeout, headers):
        sent.append(clock())
        return urllib_transport(url, timeout, headers)

    client = HttpClient(s, transport=recording, clock=clock, sleep=clock.sleep,
                        rng=np.random.default_rng(0))
    res = fetch_binance_klines("BTCUSDT", "2020-01-01", "2022-09-26", s, aliases=ALIASES,
                               client=client, now=NOW)
    assert res.pages == len(sent) == 10
    _assert_bucket_bound(sent, 2.0, 3)
    # the first 3 go at once, then one every 0.5 s: it really throttled, and no more than needed
    np.testing.assert_allclose(np.array(sent) - sent[0],
                               [0, 0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], atol=1e-9)
    assert sum(clock.sleeps) == pytest.approx(3.5)


@hyp_settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.2, 50.0), burst=st.integers(1, 8),
    idles=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=40),
)
def test_token_bucket_never_exceeds_its_rate(rate, burst, idles):
    clock = FakeClock(0.0)
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    times = []
    for idle in idles:
        clock.t += idle  # the caller does other work between requests
        times.append(bucket.acquire())
    _assert_bucket_bound(times, rate, burst)
    # no needless waiting: a request only waits when the burst since the last idle is used up
    assert bucket.waited_s <= max(0.0, (len(idles) - burst) / rate) + 1e-6


# -- pure pieces -------------------------------------------------------------------------------
def test_find_gaps_tolerates_funding_time_jitter():
    step = 8 * 3_600_000
    t0 = ms(utc("2023-01-01"))
    times = [t0 + 3, t0 + step - 2, t0 + 3 * step, t0 + 4 * step + 1]  # slot 2 missing
    gaps = find_gaps(times, t0, t0 + 4 * step, step, tolerance_ms=60_000)
    assert gaps == (Gap(utc("2023-01-01 16:00"), utc("2023-01-01 16:00"), 1),)
    strict = find_gaps(times, t0, t0 + 4 * step, step, tolerance_ms=0)
    assert sum(g.count for g in strict) == 4  # only the exact slot 3 counts


def test_parse_retry_after_seconds_and_http_date():
    import datetime as dt

    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:45 GMT", now=lambda: now) == 45.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=lambda: now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_settings_validation_and_config_node():
    with pytest.raises(InvalidParameterError) as ei:
        ConnectorSettings(page_limit=1001)
    assert ei.value.field == "page_limit" and "1..1000" in str(ei.value)
    with pytest.raises(InvalidParameterError, match="jitter"):
        ConnectorSettings(jitter="half")
    with pytest.raises(InvalidParameterError, match="backoff_cap_s"):
        ConnectorSettings(backoff_base_s=2.0, backoff_cap_s=1.0)
    with pytest.raises(InvalidParameterError, match="binance_spot_url"):
        ConnectorSettings(binance_spot_url="ftp://x")
    with pytest.raises(ConfigError, match="bogus"):
        ConnectorSettings.from_config({"bogus": 1})
    node = OmegaConf.create({"max_retries": 2, "rate_limit_per_s": 3.5})
    s = ConnectorSettings.from_config(node)
    assert s.max_retries == 2 and s.rate_limit_per_s == 3.5 and s.page_limit == 1000
    assert set(ConnectorSettings().describe()) == set(ConnectorSettings.__dataclass_fields__)


def test_config_defaults_agree_with_settings_defaults(data_cfg):
    assert ConnectorSettings.from_config(data_cfg.connectors) == ConnectorSettings()


def test_bad_request_parameters_raise_typed_errors():
    s = ConnectorSettings()
    with pytest.raises(InvalidParameterError) as ei:
        fetch_binance_klines("BTCUSDT", "2024-01-01", "2024-01-02", s, interval="15m",
                             aliases=ALIASES)
    assert ei.value.field == "interval"
    with pytest.raises(InvalidParameterError) as ei:
        fetch_binance_klines("BTCUSDT", "2024-02-01", "2024-01-01", s, aliases=ALIASES)
    assert ei.value.field == "end"
    with pytest.raises(InvalidParameterError) as ei:
        fetch_binance_funding("DOGEUSDT", "2024-01-01", "2024-01-02", s, aliases=ALIASES)
    assert ei.value.field == "symbol" and "BTCUSDT" in str(ei.value)
    with pytest.raises(InvalidParameterError) as ei:
        fetch_deribit_dvol("BTC", "2024-01-01", "2024-01-02", s, resolution="2h", aliases=ALIASES)
    assert ei.value.field == "resolution"
    with pytest.raises(InvalidParameterError) as ei:
        fetch_binance_klines("BTCUSDT", 1.5e12 + 0.5, 1.6e12, s, aliases=ALIASES)
    assert ei.value.field == "start"
    with pytest.raises(InvalidParameterError) as ei:
        fetch_binance_klines("BTCUSDT", "not a date", "2024-01-01", s, aliases=ALIASES)
    assert ei.value.field == "start"
    with pytest.raises(InvalidParameterError) as ei:
        fetch_to_frame("coinbase_klines", "BTC-USD", "2024-01-01", "2024-01-02", s)
    assert ei.value.field == "source" and "deribit_dvol" in str(ei.value)


def test_fetch_to_frame_dispatches_each_source(exchange):
    s = cfg(exchange)
    calls = {
        "binance_klines": ("BTCUSDT", {"interval": "4h"}),
        "binance_mark_klines": ("ETHUSDT", {"interval": "1h"}),
        "binance_funding": ("BTCUSDT", {}),
        "deribit_dvol": ("BTC", {"resolution": "1D"}),
    }
    assert set(calls) == set(SOURCES)
    for source, (symbol, kw) in calls.items():
        got = fetch_to_frame(source, symbol, "2023-09-01", "2023-09-10", s, aliases=ALIASES,
                             now=NOW, **kw)
        direct = SOURCES[source](symbol, "2023-09-01", "2023-09-10", s, aliases=ALIASES,
                                 now=NOW, **kw)
        pd.testing.assert_frame_equal(got.frame, direct.frame)
        assert got.source.startswith(source) and len(got.frame) > 0 and got.gaps == ()


def test_frames_agree_with_the_store_ingest_of_the_same_files(exchange, shared_data_dir,
                                                             data_cfg, tmp_path):
    """Connector rows land on the same (asset, feature, timestamp) keys with the same values as
    the store's own ingest of the shared files: re-ingesting the files finds duplicates only."""
    from aurora_jax.data.ingest import IngestSettings, ingest_table
    from aurora_jax.data.readers import read_binance_klines, read_feature_csv, read_ohlcv_csv
    from aurora_jax.data.store import MarketStore

    s = cfg(exchange)
    store = MarketStore(tmp_path / "store")
    results = [
        fetch_binance_klines("BTCUSDT", "2023-01-01", "2023-03-31", s, aliases=ALIASES, now=NOW),
        fetch_binance_mark_klines("BTCUSDT", "2023-06-01", "2023-06-07 23:00", s,
                                  aliases=ALIASES, now=NOW),
        fetch_deribit_dvol("BTC", "2023-01-01", "2023-03-31", s, aliases=ALIASES, now=NOW),
    ]
    for r in results:
        rep = store.ingest_frame(r.frame, path=r.source)
        assert rep.added == len(r.frame) and rep.conflicts == 0
    ing = IngestSettings(data_cfg)
    lag = ing.date_only_lag
    feats = shared_data_dir / "features" / "BTC-USD"
    tables = [
        read_ohlcv_csv(shared_data_dir / "ohlcv" / "BTC-USD_1d.csv", "BTC-USD", lag),
        read_binance_klines(shared_data_dir / "ohlcv" / "BTCUSDT_1h_markprice.json", "BTC-USD",
                            mark=True),
        read_feature_csv(feats / "iv_30d_atm.csv", "BTC-USD", "iv_30d_atm", lag),
    ]
    for r, table in zip(results, tables, strict=True):
        rep = ingest_table(store, table, ing)
        assert rep.conflicts == 0 and rep.duplicates == len(r.frame), table.path
    close = store.series("BTC-USD", "close", utc("2023-01-01"), utc("2023-04-01"))
    ref = results[0].frame.query("feature_name == 'close'")
    np.testing.assert_array_equal(close.to_numpy(), ref["value"].to_numpy())


def test_settings_fields_have_yaml_friendly_defaults():
    """The YAML block handed to the lead is these defaults; all are plain scalars."""
    d = {k: getattr(ConnectorSettings(), k) for k in ConnectorSettings.__dataclass_fields__}
    assert all(isinstance(v, str | int | float) for v in d.values())
    assert ConnectorSettings.from_config(OmegaConf.create(d)) == ConnectorSettings()


def test_cli_ingest_fetches_validates_and_stores(exchange, tmp_path, capsys):
    """`just ingest data.fetch.source=...` downloads through the connector into the store, and
    the downloaded bars equal the shared file's bars (funding in fractions, like the API)."""
    from aurora_jax.cli import main
    from aurora_jax.data.store import MarketStore

    common = [f"data.root={tmp_path}", f"outputs_dir={tmp_path / 'out'}", "progress=false",
              f"data.connectors.binance_futures_url={exchange.url}", "data.fetch.symbol=BTCUSDT",
              "data.fetch.start=2023-03-01", "data.fetch.end=2023-03-03"]
    assert main(["ingest", "data.fetch.source=binance_mark_klines", "data.fetch.interval=1h", *common]) == 0
    assert main(["ingest", "data.fetch.source=binance_funding", *common]) == 0
    store = MarketStore(tmp_path)
    close = store.series("BTC-USD", "mark_close_1h")
    assert len(close) == 49 and close.index[0]  # bars opening in [start, end] == pd.Timestamp("2023-03-01 01:00", tz="UTC")
    funding = store.series("BTC-USD", "funding_rate")
    assert len(funding) >= 6 and funding.abs().max() < 0.01  # fractions per 8h, not percent
    assert main(["ingest", "data.fetch.source=binance_funding", *common]) == 0  # idempotent
    assert len(MarketStore(tmp_path).series("BTC-USD", "funding_rate")) == len(funding)


def test_shared_funding_file_is_scaled_to_fractions(real_store):
    """The shared funding file is in percent; data.source_scale stores fractions."""
    f = real_store.series("BTC-USD", "funding_rate")
    assert abs(f.median() - 1e-4) < 1e-9

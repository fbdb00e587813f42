"""As-of snapshots: no leakage (property test), resampling, grids, freshness, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurora_jax.data.snapshot import snapshot
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import DataRangeError, InvalidParameterError, UnknownAssetError


@pytest.fixture(scope="module")
def window_rows(real_store):
    """Real BTC rows (daily bars, hourly mark price, DVOL, funding, MACRO) for Nov 2022 - Feb 2023."""
    return real_store.read_long(
        ["BTC-USD", "MACRO"], ["price", "iv", "derivs", "macro"],
        start=pd.Timestamp("2022-11-01", tz="UTC"), end=pd.Timestamp("2023-02-01", tz="UTC"),
    )


def _store_from(rows: pd.DataFrame, root, order: list[int], chunks: int) -> MarketStore:
    store = MarketStore(root)
    parts = np.array_split(np.arange(len(rows)), chunks)
    for i in order:
        store.ingest_frame(rows.iloc[parts[i]])
    return store


def _frames_equal(a, b):
    pd.testing.assert_frame_equal(a.frame.sort_index(axis=1), b.frame.sort_index(axis=1), check_freq=False)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    as_of_minutes=st.integers(min_value=0, max_value=60 * 24 * 80),
    order=st.permutations(list(range(5))),
    freq=st.sampled_from(["1d", "1h"]),
)
def test_no_value_after_as_of_leaks(window_rows, tmp_path_factory, as_of_minutes, order, freq):
    """A snapshot from the full store equals the one from a store that only ever held rows with
    ``timestamp <= as_of``, whatever the as_of and the order in which the rows were ingested."""
    as_of = pd.Timestamp("2022-11-10", tz="UTC") + pd.Timedelta(minutes=as_of_minutes)
    full = _store_from(window_rows, tmp_path_factory.mktemp("full"), order, 5)
    past_rows = window_rows[window_rows["timestamp"] <= as_of]
    past = _store_from(past_rows, tmp_path_factory.mktemp("past"), [0], 1)
    a = snapshot(full, "BTC-USD", as_of, lookback_days=7, freq=freq, shared_assets=("MACRO",))
    b = snapshot(past, "BTC-USD", as_of, lookback_days=7, freq=freq, shared_assets=("MACRO",))
    _frames_equal(a, b)
    assert a.frame.index.max() <= as_of
    assert all(age is None or age >= pd.Timedelta(0) for age in a.freshness.values())
    assert a.freshness == b.freshness


def test_daily_bars_from_hourly_mark_price(real_store):
    s = snapshot(real_store, "BTC-USD", "2023-06-01", lookback_days=10)
    hourly = real_store.read_long(["BTC-USD"], ["price"], start=pd.Timestamp("2023-05-30", tz="UTC"),
                                  end=pd.Timestamp("2023-05-31", tz="UTC"))
    h = hourly.pivot(index="timestamp", columns="feature_name", values="value")
    day = s.frame.loc[pd.Timestamp("2023-05-31", tz="UTC")]
    assert day["mark_high"] == h["mark_high_1h"].max()
    assert day["mark_low"] == h["mark_low_1h"].min()
    assert day["mark_close"] == h["mark_close_1h"].iloc[-1]
    assert day["mark_open"] == h["mark_open_1h"].iloc[0]
    # the spot daily close and the futures mark close agree closely on real data
    assert abs(day["mark_close"] / day["close"] - 1) < 0.01


def test_spx_uses_trading_days_and_reports_missing_groups(spx_store):
    s = snapshot(spx_store, "SPX", "2015-03-03 12:00", lookback_days=90)
    assert len(s.frame) < 70 and not (s.frame.index.dayofweek == 6).any()  # no Sunday stamps
    assert {"micro", "derivs", "onchain", "narrative"} <= set(s.missing_groups)
    assert "iv" in s.used_groups and s.freshness["price"] == pd.Timedelta(hours=12)
    assert s.close().notna().all()


def test_eth_close_falls_back_to_mark_price(real_store):
    s = snapshot(real_store, "ETH-USD", "2021-06-01", lookback_days=30)
    assert "close" not in s.frame and s.close().notna().all()
    assert {"iv", "derivs", "onchain"} <= set(s.missing_groups) and "price" in s.used_groups


def test_stale_groups(real_store):
    s = snapshot(real_store, "BTC-USD", "2024-01-05 06:00", lookback_days=30,
                 stale_after_days={"iv": 0.0001, "price": 3})
    assert "iv" in s.stale_groups and "price" not in s.stale_groups


def test_bad_input(real_store):
    with pytest.raises(DataRangeError, match="last available"):
        snapshot(real_store, "BTC-USD", "2030-01-01")
    with pytest.raises(DataRangeError):
        snapshot(real_store, "BTC-USD", "2010-01-01")
    with pytest.raises(UnknownAssetError):
        snapshot(real_store, "XRP-USD", "2023-01-01")
    with pytest.raises(InvalidParameterError, match="freq"):
        snapshot(real_store, "BTC-USD", "2023-01-01", freq="5m")
    with pytest.raises(InvalidParameterError, match="groups"):
        snapshot(real_store, "BTC-USD", "2023-01-01", groups=("price", "tea_leaves"))


def test_window_straddling_the_start_of_daily_bars_keeps_calendar_days(real_store):
    """ETH's daily close starts 2022-11; a window reaching back before it stays on calendar
    days and falls back to the hourly mark price, instead of dropping the earlier history."""
    s = snapshot(real_store, "ETH-USD", "2023-01-15", lookback_days=120)
    assert len(s.frame) == 120
    close = s.close()
    assert close.notna().all()
    assert s.frame["close"].isna().sum() > 40  # before the daily close series began

"""RevIN: past-only statistics on real BTC returns, reference values, round trip, errors."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import log_returns
from aurora_jax.features.revin import RevIN, revin_from_config, revin_stats, rolling_revin


@pytest.fixture(scope="module")
def btc_returns(real_store) -> pd.Series:
    close = real_store.series(
        "BTC-USD",
        "close",
        start=pd.Timestamp("2021-01-01", tz="UTC"),
        end=pd.Timestamp("2023-01-01", tz="UTC"),
    )
    r, _ = log_returns(close)
    return r.dropna()


def test_matches_numpy_on_the_trailing_window(btc_returns):
    as_of = pd.Timestamp("2022-06-20", tz="UTC")
    loc, scale = revin_stats(btc_returns, as_of, window_days=90, min_count=20)
    ref = btc_returns[
        (btc_returns.index > as_of - pd.Timedelta(days=90)) & (btc_returns.index <= as_of)
    ]
    assert len(ref) in (89, 90)
    assert loc == pytest.approx(ref.mean(), rel=1e-12)
    assert scale == pytest.approx(ref.std(ddof=0), rel=1e-12)
    # June 2022 (3AC / Celsius) was a high-vol window: daily std well above 3%
    assert 0.03 < scale < 0.08


def test_future_rows_do_not_change_the_statistics(btc_returns):
    """Changing (or deleting) every row after as_of leaves loc/scale at as_of and the rolling
    statistics of all earlier rows unchanged."""
    as_of = pd.Timestamp("2022-03-01", tz="UTC")
    base = revin_stats(btc_returns, as_of)
    rng = np.random.default_rng(0)
    future = btc_returns.index > as_of
    changed = btc_returns.copy()
    changed[future] = rng.standard_t(2, future.sum()) * 0.5
    assert revin_stats(changed, as_of) == base
    assert revin_stats(btc_returns[~future], as_of) == base
    a, b = rolling_revin(btc_returns), rolling_revin(changed)
    pd.testing.assert_frame_equal(a[~future], b[~future])
    assert not np.allclose(a[future]["scale"], b[future]["scale"])


def test_rolling_last_row_equals_point_estimate(btc_returns):
    roll = rolling_revin(btc_returns, window_days=90, min_count=20)
    for t in btc_returns.index[[150, 400, -1]]:
        loc, scale = revin_stats(btc_returns, t, window_days=90, min_count=20)
        assert roll.loc[t, "loc"] == pytest.approx(loc, rel=1e-9, abs=1e-15)
        assert roll.loc[t, "scale"] == pytest.approx(scale, rel=1e-9)
    # first rows: fewer than min_count returns in the window -> NaN, never a guess
    assert roll["loc"].iloc[:19].isna().all() and roll["loc"].iloc[19:].notna().all()


def test_round_trip_and_config(btc_returns, engine_cfg):
    rev = revin_from_config(btc_returns, engine_cfg.model.inputs.revin)
    x = jnp.asarray(btc_returns.to_numpy()[-90:], jnp.float32)
    z = rev.normalize(x)
    assert float(jnp.abs(z.mean())) < 1e-4 and float(jnp.abs(z.std() - 1.0)) < 1e-3
    np.testing.assert_allclose(rev.denormalize(z), x, rtol=1e-5, atol=1e-7)
    assert isinstance(rev, RevIN) and float(rev.scale) > 0


def test_bad_settings_and_short_windows_raise(btc_returns):
    with pytest.raises(InvalidParameterError, match="revin.window_days"):
        revin_stats(btc_returns, window_days=0)
    with pytest.raises(InvalidParameterError, match="revin.min_count"):
        rolling_revin(btc_returns, min_count=1)
    with pytest.raises(InvalidParameterError, match="series"):
        revin_stats(btc_returns.iloc[:10], min_count=20)
    # a constant window floors the scale at eps instead of dividing by zero
    const = pd.Series(0.01, index=btc_returns.index[:40])
    assert revin_stats(const, eps=1e-6) == (pytest.approx(0.01), 1e-6)


def test_hourly_bars_give_the_daily_scale(real_store):
    """90 days of hourly mark-price bars: the per-bar scale times sqrt(24) is close to the daily
    close-to-close scale of the same window (same functions, calendar-time window)."""
    end = pd.Timestamp("2023-06-01", tz="UTC")
    start = end - pd.Timedelta(days=120)
    hourly = real_store.series("BTC-USD", "mark_close_1h", start=start, end=end)
    daily = real_store.series("BTC-USD", "close", start=start, end=end)
    rh, _ = log_returns(hourly)
    rd, _ = log_returns(daily)
    _, sh = revin_stats(rh.dropna(), end, window_days=90, min_count=1000)
    _, sd = revin_stats(rd.dropna(), end, window_days=90, min_count=60)
    assert 0.7 < sh * np.sqrt(24) / sd < 1.4

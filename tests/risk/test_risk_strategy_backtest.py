"""The forecast-driven backtest on synthetic data with known answers, and the `backtest`
command on real BTC data (short window)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from aurora_jax.execution.paper_broker import PaperBrokerConfig
from aurora_jax.risk.acceptance import AcceptanceConfig
from aurora_jax.risk.breakers import BreakerConfig
from aurora_jax.risk.sizing import SizingConfig
from aurora_jax.risk.strategy_backtest import (
    BuyAndHold,
    ForecastPoint,
    ForecastPolicy,
    StrategyConfig,
    run_backtest,
    simulate,
)

LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


@pytest.fixture(scope="module")
def cfgs(risk_cfg, exec_cfg):
    return dict(
        cfg=StrategyConfig.from_cfg(risk_cfg.backtest),
        sizing=SizingConfig.from_cfg(risk_cfg.sizing),
        acceptance_cfg=AcceptanceConfig.from_cfg(risk_cfg.acceptance),
        breaker_cfg=BreakerConfig.from_cfg(risk_cfg.breakers),
        broker_cfg=PaperBrokerConfig.from_cfg(exec_cfg.paper_broker),
    )


def random_walk(n=300, vol=0.02, seed=0, drift=0.0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    op = np.r_[100.0, close[:-1]]
    wig = np.abs(rng.normal(0, vol / 4, (2, n)))
    frame = pd.DataFrame({"open": op, "high": np.maximum(op, close) * (1 + wig[0]),
                          "low": np.minimum(op, close) * (1 - wig[1]), "close": close},
                         index=pd.date_range("2021-01-01", periods=n, freq="D", tz="UTC"))
    return frame


def point(ts, price, paths):
    return ForecastPoint(ts, float(price), LEVELS, np.quantile(paths, LEVELS), paths)


def test_buy_and_hold_accounting_is_exact(cfgs):
    frame = random_walk()
    c, b = cfgs["cfg"], cfgs["broker_cfg"]
    t0 = frame.index[50]
    res = simulate(frame, [t0], BuyAndHold(c.lot, 2 * (b.taker_fee_bps + b.slippage_bps)), None, c, b, None)
    qty = res.position.iloc[-1]
    fill = frame["open"].iloc[51] * (1 + b.slippage_bps / 1e4)
    fee = qty * fill * b.taker_fee_bps / 1e4
    expected = c.initial_equity - qty * fill - fee + qty * frame["close"].iloc[-1]
    assert res.equity.iloc[-1] == pytest.approx(expected, rel=1e-12)
    assert res.fees == pytest.approx(fee) and res.n_fills == 1
    assert 0.99 < qty * frame["close"].iloc[50] / c.initial_equity <= 1.0  # fully invested


def test_no_edge_means_no_trades(cfgs):
    frame = random_walk(seed=1, vol=0.01)
    rng = np.random.default_rng(0)
    fc = {}
    for i in range(100, 299):
        z = rng.standard_normal(500)
        paths = frame["close"].iloc[i] * np.exp(0.02 * np.r_[z, -z])  # symmetric: P(up) = 1/2 exactly
        fc[frame.index[i]] = point(frame.index[i], frame["close"].iloc[i], paths)
    rep = run_backtest(frame, fc, **cfgs, trial_thresholds=[0.55, 0.6])
    assert rep.strategy.n_fills == 0
    assert (rep.strategy.equity == cfgs["cfg"].initial_equity).all()
    assert set(rep.strategy.decisions["reason"]) == {"no edge"}


def test_oracle_forecasts_beat_the_baselines(cfgs):
    frame = random_walk(seed=2)
    rng = np.random.default_rng(1)
    close = frame["close"].to_numpy()
    fc = {frame.index[i]: point(frame.index[i], close[i], close[i + 1] * np.exp(rng.normal(0, 0.005, 400)))
          for i in range(100, 299)}
    rep = run_backtest(frame, fc, **cfgs, trial_thresholds=[0.55, 0.6, 0.7])
    st = rep.stats
    assert st.loc["strategy", "sharpe"] > 3
    assert st.loc["strategy", "sharpe"] > st.loc["buy_and_hold", "sharpe"] + 2
    assert st.loc["strategy", "total_return"] > st.loc["vol_target", "total_return"]
    assert st.loc["strategy", "psr"] > 0.99 and 0 < st.loc["strategy", "dsr"] <= st.loc["strategy", "psr"]
    d = rep.strategy.decisions.dropna(subset=["binding"])
    assert set(d["binding"]) <= {"kelly", "leverage", "exposure", "cvar_gate"}
    # both directions are used and sizes respect the exposure cap
    assert (d["target"] > 0).any() and (d["target"] < 0).any()
    assert (d["target"].abs() * d["price"] <= d["equity"] * 1.0 + 1e-6).all()


def test_stop_fills_at_the_gap_open(cfgs):
    c, b = cfgs["cfg"], cfgs["broker_cfg"]
    frame = random_walk(n=120, vol=0.005, seed=3)
    i = 100
    price = frame["close"].iloc[i]
    # a confident long; the next bar opens 30% lower (a gap through the stop)
    paths = price * np.exp(np.random.default_rng(0).normal(0.01, 0.01, 500))
    frame.iloc[i + 2, :] = [price * 0.7, price * 0.72, price * 0.69, price * 0.71]
    fc = {frame.index[i]: point(frame.index[i], price, paths)}
    res = simulate(frame, [frame.index[i]], ForecastPolicy(c, cfgs["sizing"], cfgs["acceptance_cfg"], b),
                   fc, c, b, None)
    assert res.position.iloc[1] > 0  # long after bar i+1
    assert res.position.iloc[2] == 0  # stopped out in the gap bar
    assert res.n_fills == 2
    # the exit filled at the gap open minus slippage, far below the stop price
    q = res.position.iloc[1]
    entry_px = frame["open"].iloc[i + 1] * (1 + b.slippage_bps / 1e4)
    exit_px = (res.traded_notional - q * entry_px) / q
    assert exit_px == pytest.approx(price * 0.7 * (1 - b.slippage_bps / 1e4), rel=1e-9)
    assert res.decisions.iloc[0]["stop"] > price * 0.9


def test_flash_crash_trips_the_breaker_and_flattens(cfgs):
    c, b, brk = cfgs["cfg"], cfgs["broker_cfg"], cfgs["breaker_cfg"]
    frame = random_walk(n=200, vol=0.004, seed=4)
    close = frame["close"].to_numpy()
    k = 150
    # a -8% bar that stays above a wide stop, then normal bars
    frame.iloc[k:, :] = frame.iloc[k:, :] * 0.92
    frame.iloc[k, 0] = close[k - 1]  # opens at the previous close, closes 8% lower
    frame.iloc[k, 1] = close[k - 1]
    close = frame["close"].to_numpy()
    rng = np.random.default_rng(2)
    fc = {frame.index[i]: point(frame.index[i], close[i], close[i] * np.exp(rng.normal(0.01, 0.2, 400)))
          for i in range(100, 199)}
    pol = ForecastPolicy(dataclasses.replace(c, prob_threshold=0.51), cfgs["sizing"], cfgs["acceptance_cfg"], b)
    res = simulate(frame, sorted(fc), pol, fc, dataclasses.replace(c, prob_threshold=0.51), b, brk)
    assert any(n == "flash" for _, n in res.breaker_trips)
    pos = res.position
    t_trip = frame.index[k]
    assert pos.loc[:t_trip].iloc[-2] > 0  # long before the crash
    after = pos.loc[t_trip:].iloc[1:1 + brk.cooldown_flash]
    assert (after == 0).all()  # flattened at the next open, flat during the cooldown
    assert pos.iloc[-1] > 0  # and trading again afterwards


def test_backtest_command_on_real_btc(real_store, tmp_path):
    from aurora_jax.config import load_config
    from aurora_jax.risk.backtest_command import run

    cfg = load_config(["experiment=btc_daily", "model=garch", f"data.root={real_store.root}", f"outputs_dir={tmp_path}",
                       "progress=false", "risk.backtest.start=2024-05-20", "risk.backtest.num_paths=1000",
                       "risk.backtest.trial_prob_thresholds=[0.51,0.52]", "risk.backtest.prob_threshold=0.51"])
    seen = []
    from aurora_jax.risk.backtest_command import api_forecaster

    api = api_forecaster(cfg, real_store, "BTC-USD", 1, 1000)

    def forecaster(as_of):
        f = api(as_of)
        seen.append((as_of, f))
        return f

    rep = run(cfg, [], tmp_path, forecaster=forecaster)
    # the API forecaster only saw data up to as_of: its spot is the close at as_of
    closes = real_store.series("BTC-USD", "close")
    for as_of, f in seen:
        assert f.price == pytest.approx(closes.loc[as_of])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert set(stats["stats"]) == {"strategy", "buy_and_hold", "vol_target"}
    for k in ("sharpe", "sortino", "max_drawdown", "cvar95", "turnover", "psr"):
        assert np.isfinite(stats["stats"]["buy_and_hold"][k])
    assert (tmp_path / "equity.png").stat().st_size > 10_000
    assert "| strategy |" in (tmp_path / "report.md").read_text()
    assert len(rep.strategy.equity) == len(rep.baselines["buy_and_hold"].equity)


def test_backtest_with_the_engine_never_uses_an_engine_trained_past_the_decision(smoke_run, spx_store, tmp_path):
    """model=engine: each decision uses the newest engine whose training history ends by its
    as-of (the smoke engine: 2016-06-30); before that, a clear error instead of a look-ahead."""

    from aurora_jax.config import load_config
    from aurora_jax.errors import ModelUnavailableError
    from aurora_jax.forecast.api import forecast
    from aurora_jax.risk.backtest_command import api_forecaster

    cfg = load_config(["experiment=smoke", f"data.root={spx_store.root}", f"outputs_dir={tmp_path}", "progress=false",
                       f"model.train.registry_dir={smoke_run.cfg.model.train.registry_dir}",
                       "forecast.train_if_missing=false"])
    fn = api_forecaster(cfg, spx_store, "SPX", 3, 1000)
    point = fn(pd.Timestamp("2016-08-01", tz="UTC"))
    ref = forecast("SPX", 3, "2016-08-01", quantiles=tuple(cfg.quantiles), num_paths=1000, store=spx_store, cfg=cfg,
                   drivers=False)
    np.testing.assert_array_equal(point.quantiles, ref.table[ref.table["step"] == 3].iloc[0, 4:].to_numpy(float))
    assert point.paths.shape == (1000,) and np.isfinite(point.paths).all()
    with pytest.raises(ModelUnavailableError, match="model.train.end=2016-06-01"):
        fn(pd.Timestamp("2016-06-01", tz="UTC"))

"""The engine adapter (aurora_jax/forecast/eval_adapter.py) on the smoke engine (SPX, trained on
data up to 2016-06-30 by the ``smoke_run`` fixture; nothing here trains an engine)."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from aurora_jax.config import load_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.eval.data import SeriesCache
from aurora_jax.eval.forecaster import AsOfView, ForecastContext, Forecaster
from aurora_jax.forecast.engine import simulate_paths
from aurora_jax.forecast.eval_adapter import AuroraForecaster, AuroraState, history_end
from aurora_jax.models.trend_ensemble import EwafTracker

SMOKE_END = pd.Timestamp("2016-06-30", tz="UTC")      # model.train.end of the smoke experiment

# small walk-forward settings (real config keys)
FAST_WF = [
    "eval.num_paths=200", "eval.warmup_days=21", "eval.lookback_days=400", "eval.horizon=14",
    "eval.min_asof_dates=8", "eval.step_days=7", "eval.start=2016-07-26", "eval.end=2016-09-27",
    "calibration.router.stride=25", "calibration.router.sim_windows=24", "calibration.router.steps=150",
    "calibration.router.refit_every_days=3650", "calibration.router.max_train_windows=80",
    "calibration.hmm.enabled=false", "calibration.regime.lookback_days=365",
    "calibration.conformal.min_bucket=10", "calibration.conformal.min_pooled=10",
]


def _cfg(smoke_run, tmp_path, *over):
    return load_config(["experiment=smoke", f"data.root={smoke_run.cfg.data.root}",
                        f"outputs_dir={tmp_path / 'outputs'}", "progress=false",
                        f"++model.train.registry_dir={smoke_run.cfg.model.train.registry_dir}",
                        "eval.engine.train_missing=false", *over])


@pytest.fixture(scope="module")
def spx(smoke_run):
    store = MarketStore(smoke_run.cfg.data.root)
    cache = SeriesCache(store)
    return store, cache, cache.asset("SPX")


def _ctx(spx, as_of, refit=True, prev=None):
    _, cache, series = spx
    t = pd.Timestamp(as_of, tz="UTC")
    return series.returns[series.returns.index <= t], ForecastContext(t, "SPX", AsOfView(cache, t), refit, prev)


@pytest.fixture
def adapter(smoke_run, spx, tmp_path):
    return AuroraForecaster(_cfg(smoke_run, tmp_path), store=spx[0])


def test_paths_are_the_engine_increments(adapter, smoke_run, spx):
    assert isinstance(adapter, Forecaster)
    state = adapter.fit(*_ctx(spx, "2016-08-02"))
    assert isinstance(state, AuroraState)
    # newest of the two registered smoke versions, trained strictly before the as-of date
    assert state.version == smoke_run.versions[-1] and state.history_end == SMOKE_END
    a = adapter.sample(state, 14, 256, np.random.default_rng(7))
    b = adapter.sample(state, 14, 256, np.random.default_rng(7))
    c = adapter.sample(state, 14, 256, np.random.default_rng(8))
    short = adapter.sample(state, 5, 256, np.random.default_rng(7))
    assert a.shape == (256, 14) and short.shape == (256, 5) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(short, a[:, :5])     # one compiled shape, sliced
    assert not np.allclose(a, c)
    # per-step returns = increments of the engine's own log-price paths for the same key
    key = jax.random.PRNGKey(int(np.random.default_rng(7).integers(2**31)))
    ref = np.asarray(simulate_paths(state.params, state.inputs, key, 14, 256, state.ewaf_losses))
    np.testing.assert_allclose(np.cumsum(a, axis=1), ref, atol=2e-6)
    # raw daily log-returns (fractions): the spread is that of SPX's recent daily returns
    realized = np.std(spx[2].returns[spx[2].returns.index <= state.as_of].to_numpy()[-60:])
    assert 0.4 < np.std(a[:, 0]) / realized < 2.5
    with pytest.raises(InvalidParameterError, match="horizon"):
        adapter.sample(state, 15, 256, np.random.default_rng(0))


def test_never_an_engine_trained_past_the_as_of(adapter, spx, smoke_run):
    for as_of in ("2016-06-29", "2016-01-05", "2015-06-30"):
        with pytest.raises(ModelUnavailableError, match="train_missing=false"):
            adapter.fit(*_ctx(spx, as_of))
    # a state from a later fit is not carried back in time: it is re-selected (and refused)
    later = adapter.fit(*_ctx(spx, "2016-07-12"))
    with pytest.raises(ModelUnavailableError):
        adapter.fit(*_ctx(spx, "2016-06-21", refit=False, prev=later))
    # too old for max_age_days (refit_days=730 by default): a fresh engine would be trained
    with pytest.raises(ModelUnavailableError):
        adapter.fit(*_ctx(spx, "2018-07-10"))
    assert adapter.trained == []


def test_refit_schedule_keeps_params_and_rebuilds_inputs(smoke_run, spx, tmp_path):
    f = AuroraForecaster(_cfg(smoke_run, tmp_path, "eval.engine.refit_days=28", "eval.engine.max_age_days=3650"), store=spx[0])
    s1 = f.fit(*_ctx(spx, "2016-07-05"))
    s2 = f.fit(*_ctx(spx, "2016-07-12", refit=True, prev=s1))
    assert s2.params is s1.params and s2.selected_at == s1.selected_at      # < refit_days: kept
    assert float(s2.inputs.spot) != float(s1.inputs.spot)
    close = spx[1].asset("SPX").close
    assert float(s2.inputs.spot) == pytest.approx(float(close[close.index <= s2.as_of].iloc[-1]), rel=1e-6)
    s3 = f.fit(*_ctx(spx, "2016-08-09", refit=True, prev=s2))               # >= refit_days: re-selected
    assert s3.selected_at == s3.as_of and s3.params is not s1.params
    s4 = f.fit(*_ctx(spx, "2016-09-20", refit=False, prev=s3))              # harness says keep
    assert s4.params is s3.params


def test_ewaf_point_in_time_or_off(smoke_run, spx, tmp_path):
    frozen = AuroraForecaster(_cfg(smoke_run, tmp_path), store=spx[0])
    off = AuroraForecaster(_cfg(smoke_run, tmp_path, "eval.engine.ewaf=off"), store=spx[0])
    sf = frozen.fit(*_ctx(spx, "2016-08-02"))
    so = off.fit(*_ctx(spx, "2016-08-02"))
    tracker = EwafTracker(sf.entry.ewaf_path("SPX"), float(frozen.cfg.model.trend.ewaf.discount)).load()
    np.testing.assert_array_equal(sf.ewaf_losses, tracker.losses_at(sf.as_of))
    assert pd.Timestamp(tracker.history[-1][0]) <= history_end(sf.entry) and np.all(sf.ewaf_losses > 0)
    np.testing.assert_array_equal(so.ewaf_losses, np.zeros(3))
    a = frozen.sample(sf, 14, 128, np.random.default_rng(1))
    b = off.sample(so, 14, 128, np.random.default_rng(1))
    assert not np.allclose(a, b)          # the losses change the trend weights
    with pytest.raises(InvalidParameterError, match="eval.engine.ewaf"):
        AuroraForecaster(_cfg(smoke_run, tmp_path, "eval.engine.ewaf=online"))


def test_walk_forward_scores_aurora_next_to_a_peer(smoke_run, spx, tmp_path):
    from aurora_jax.eval.command import build_metrics, resolve_methods
    from aurora_jax.eval.walkforward import WalkForward

    cfg = _cfg(smoke_run, tmp_path, *FAST_WF, "eval.methods=[aurora,ewma]", "eval.report.fan_methods=[aurora]")
    forecasters, unavailable = resolve_methods(cfg)           # eval.forecasters.aurora -> the adapter
    assert [f.name for f in forecasters] == ["aurora", "ewma"] and not unavailable
    assert isinstance(forecasters[0], AuroraForecaster)
    res = WalkForward(cfg, SeriesCache(spx[0]), forecasters).run()
    assert res.skipped == {"aurora": 0, "ewma": 0}
    sc = res.scores
    assert set(sc["method"]) == {"aurora", "aurora+conformal", "ewma", "ewma+conformal"}
    n = sc.groupby(["method", "h"]).size().unstack()
    assert (n.loc["aurora"] == n.loc["ewma"]).all() and (n.loc["aurora+conformal"] == n.loc["aurora"]).all()
    crps = sc.groupby(["method", "h"])["crps"].mean().unstack()
    assert np.isfinite(crps.to_numpy()).all()
    for h in (1, 7, 14):           # same units and scale as the peer (fractions, per-step increments)
        assert 0.5 < crps.loc["aurora", h] / crps.loc["ewma", h] < 2.0
    m = build_metrics(cfg, res, ["ewma"])
    assert {"aurora", "aurora+conformal"} <= set(m["metrics"])
    assert m["targets"]["candidates"][0]["method"] == "aurora+conformal"
    assert m["best_peer"]["1"]["raw"]["method"] == "ewma"
    assert set(forecasters[0].used) == {smoke_run.versions[-1]}
    d = forecasters[0].describe()
    assert set(d["versions"]) == {smoke_run.versions[-1]} and d["trained"] == []
    assert d["versions"][smoke_run.versions[-1]]["as_of_dates"] == len(res.signals)

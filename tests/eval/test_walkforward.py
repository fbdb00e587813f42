
import numpy as np
import pandas as pd
import pytest

from aurora_jax.config import load_config
from aurora_jax.errors import ConfigError, DataRangeError, InvalidParameterError
from aurora_jax.eval.data import SeriesCache
from aurora_jax.eval.peers.ewma import EwmaPeer
from aurora_jax.eval.walkforward import WalkForward


class Spy:
    """A forecaster that records the latest timestamp it could see at each as-of date."""

    name = "spy"

    def __init__(self):
        self.seen: list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp | None, bool]] = []

    def fit(self, returns, context):
        iv = context.view.series(context.asset, "iv_30d_atm")
        close = context.view.series(context.asset, "close")
        last_iv = iv.index[-1] if iv is not None and len(iv) else None
        assert close.index[-1] <= context.as_of
        self.seen.append((context.as_of, returns.index[-1], last_iv, context.refit))
        return float(np.std(returns.to_numpy()[-60:]))

    def sample(self, state, horizon, num_paths, rng):
        return state * rng.standard_normal((num_paths, horizon))


def _run(make_cfg, forecasters, *over):
    cfg = make_cfg(*over)
    return WalkForward(cfg, SeriesCache(_store(cfg)), forecasters).run()


def _store(cfg):
    from aurora_jax.data.store import MarketStore

    return MarketStore(cfg.data.root)


def test_no_look_ahead_and_refit_schedule(make_cfg):
    spy = Spy()
    res = _run(make_cfg, [spy, EwmaPeer()], "eval.start=2023-01-01", "eval.end=2023-08-06",
               "eval.step_days=7", "eval.refit_every_days=28")
    assert len(spy.seen) == len(res.signals)
    for as_of, last_ret, last_iv, _ in spy.seen:
        assert last_ret <= as_of and (last_iv is None or last_iv <= as_of)
        assert as_of - last_ret < pd.Timedelta(days=2)  # but it does see the latest bar
    refits = [r for *_, r in spy.seen]
    assert refits[0] and sum(refits) == pytest.approx(len(refits) / 4, abs=1)
    sc = res.scores
    assert set(sc["method"]) == {"spy", "spy+conformal", "ewma", "ewma+conformal"}
    # every score is for a forecast whose as-of date is in the scored window and whose
    # outcome was observable by the end of the data
    assert sc["as_of"].min() >= pd.Timestamp("2023-01-01", tz="UTC")
    assert sc["h"].between(1, 14).all()
    assert (res.signals.index <= pd.Timestamp("2023-08-06", tz="UTC")).all()


def test_later_data_never_changes_earlier_results(make_cfg):
    """Extending the evaluation window (more future data in play) leaves every earlier
    forecast, calibration signal and score unchanged."""
    a = _run(make_cfg, [EwmaPeer()], "eval.start=2023-02-05", "eval.end=2023-09-03", "eval.step_days=7")
    b = _run(make_cfg, [EwmaPeer()], "eval.start=2023-02-05", "eval.end=2023-11-26", "eval.step_days=7")
    cut = pd.Timestamp("2023-09-03", tz="UTC")

    def known_by_cut(sc):
        sc = sc[(sc["as_of"] <= cut) & (sc["as_of"] + pd.to_timedelta(sc["h"], unit="D") <= cut)]
        return sc.sort_values(["method", "as_of", "h"]).reset_index(drop=True)

    sa, sb = known_by_cut(a.scores), known_by_cut(b.scores)
    assert len(sa) > 300
    pd.testing.assert_frame_equal(sa, sb[sa.columns], check_exact=False, rtol=1e-12)
    # forecasts issued at the last as-of dates are scored once their outcome is known
    last = a.scores[a.scores["as_of"] == a.scores["as_of"].max()]
    assert set(last["h"]) == set(range(1, 15))
    common = a.signals.index
    cols = ["regime", "z", "aci", "trans", "router_entropy"]
    pd.testing.assert_frame_equal(a.signals[cols], b.signals.loc[common, cols])


def test_bad_input_fails_before_any_computation(make_cfg):
    spy = Spy()
    with pytest.raises(InvalidParameterError, match="as-of dates"):
        _run(make_cfg, [spy], "eval.start=2023-01-01", "eval.end=2023-06-01", "eval.step_days=7")
    with pytest.raises(DataRangeError, match="eval.start"):
        _run(make_cfg, [spy], "eval.start=2015-06-01", "eval.end=2016-06-01", "eval.step_days=7")
    with pytest.raises(DataRangeError, match="eval.end"):
        _run(make_cfg, [spy], "eval.start=2024-01-01", "eval.end=2025-06-01", "eval.step_days=7")
    with pytest.raises(InvalidParameterError, match="eval.step_days"):
        _run(make_cfg, [spy], "eval.step_days=0")
    for bad in (1, -5):
        with pytest.raises(InvalidParameterError, match="eval.recalibration.grid"):
            _run(make_cfg, [spy], f"eval.recalibration.grid={bad}")
    with pytest.raises(InvalidParameterError, match="eval.recalibration.min_n"):
        _run(make_cfg, [spy], "eval.recalibration.min_n=0")
    assert spy.seen == []  # nothing was fitted
    with pytest.raises(ConfigError):
        load_config(["experiment=no_such_experiment"])

"""The public forecast call on the embedded default: shapes, monotone cones, determinism,
threshold probabilities, bad input, and the CLI writing its outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aurora_jax.cli import main
from aurora_jax.errors import DataRangeError, InvalidParameterError, UnknownAssetError
from aurora_jax.forecast.api import forecast
from aurora_jax.models.garch import GarchSpec, fit_garch, simulate_garch


def test_cone_shape_monotone_and_deterministic(spx_store, smoke_cfg):
    a = forecast("SPX", 5, "2015-06-01", num_paths=2000, thresholds=[2000, 2150], store=spx_store, cfg=smoke_cfg)
    b = forecast("SPX", 5, "2015-06-01", num_paths=2000, thresholds=[2000, 2150], store=spx_store, cfg=smoke_cfg)
    qcols = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]
    assert list(a.table.columns) == ["asset_id", "as_of", "ds", "step", *qcols]
    assert len(a.table) == 5 and (a.table["ds"] > a.as_of).all()
    q = a.table[qcols].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    assert (q[-1, -1] - q[-1, 0]) > (q[0, -1] - q[0, 0])  # the cone widens with the horizon
    pd.testing.assert_frame_equal(a.table, b.table)      # same request, same numbers
    for t in a.thresholds:
        assert abs(t["p_below"] + t["p_above"] - 1) < 1e-9
        beyond = t["p_below"] if t["threshold"] < a.spot else t["p_above"]
        assert t["p_touch"] >= beyond  # ending beyond K implies having touched it
    assert "micro" in a.feature_groups_missing and "price" in a.feature_groups_used


def test_trading_day_dates_for_spx(spx_store, smoke_cfg):
    r = forecast("SPX", 5, "2015-06-05 12:00", num_paths=1000, store=spx_store, cfg=smoke_cfg)
    trading_dates = r.table["ds"] - pd.Timedelta(days=1)  # ds = end of the trading day
    assert (trading_dates.dt.dayofweek < 5).all() and trading_dates.is_monotonic_increasing


def test_garch_simulation_matches_arch(spx_store):
    """Our numpy GARCH-t simulator reproduces arch's own simulation forecast distribution."""
    from arch import arch_model

    close = spx_store.series("SPX", "close")
    r = np.diff(np.log(close.to_numpy()))[-1000:]
    fit = fit_garch(r, GarchSpec())
    ours = simulate_garch(fit, 10, 4000, np.random.default_rng(1)).sum(axis=1)
    res = arch_model(100 * r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
    theirs = res.forecast(horizon=10, method="simulation", simulations=4000, reindex=False).simulations.values[-1]
    theirs = theirs.sum(axis=1) / 100
    assert stats.ks_2samp(ours, theirs).pvalue > 0.001
    assert abs(np.std(ours) / np.std(theirs) - 1) < 0.1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(horizon=0), "horizon"), (dict(horizon=15), "horizon"), (dict(horizon=2.5), "horizon"),
        (dict(num_paths=999), "num_paths"), (dict(num_paths=10**7), "num_paths"),
        (dict(quantiles=[0.5, 0.1]), "quantiles"), (dict(quantiles=[0.0, 0.5]), "quantiles"),
        (dict(quantiles=[0.5, 1.2]), "quantiles"), (dict(thresholds=[2100, 2000]), "thresholds"),
        (dict(thresholds=[-5]), "thresholds"),
    ],
)
def test_bad_input_names_the_field(spx_store, smoke_cfg, kwargs, field):
    args = dict(asset_id="SPX", horizon=5, as_of="2015-06-01", num_paths=1000) | kwargs
    with pytest.raises(InvalidParameterError) as err:
        forecast(**args, store=spx_store, cfg=smoke_cfg)
    assert err.value.field == field and "allowed" in str(err.value)


def test_unknown_asset_and_as_of_out_of_range(spx_store, smoke_cfg):
    with pytest.raises(UnknownAssetError, match="SPX"):
        forecast("BTC-EUR", 5, num_paths=1000, store=spx_store, cfg=smoke_cfg)
    with pytest.raises(DataRangeError, match="2019-01-01"):
        forecast("SPX", 5, "2020-06-01", num_paths=1000, store=spx_store, cfg=smoke_cfg)
    with pytest.raises(DataRangeError):
        forecast("SPX", 5, "1990-06-01", num_paths=1000, store=spx_store, cfg=smoke_cfg)


def test_cli_forecast_on_fresh_store_writes_outputs(tmp_path, capsys):
    """README command 1 in miniature: an empty store is filled with the embedded default."""
    rc = main(["forecast", "experiment=smoke", f"data.root={tmp_path / 'data'}",
               f"outputs_dir={tmp_path / 'out'}", "progress=false"])
    assert rc == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    out = json.loads(open(path).read())
    assert out["asset_id"] == "SPX" and out["num_paths"] == 1000 and len(out["quantiles"]) == 5
    run_dir = tmp_path / "out"
    pngs = list(run_dir.rglob("fan_chart.png"))
    assert pngs and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads(next(run_dir.rglob("meta.json")).read_text())
    assert meta["seed"] == 0 and meta["git_sha"] and meta["command"].startswith("forecast")
    assert next(run_dir.rglob("config.yaml")).read_text().count("asset: SPX") == 1


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    rc = main(["forecast", "experiment=smoke", "horizon=20", f"data.root={tmp_path / 'data'}",
               f"outputs_dir={tmp_path / 'out'}", "progress=false"])
    assert rc == 1
    assert "horizon=20 is invalid" in capsys.readouterr().err.replace("\n", "")
    assert main(["forecast", "experiment=no_such_experiment", f"outputs_dir={tmp_path}"]) == 1

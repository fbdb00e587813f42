"""The public forecast call on the embedded default: shapes, monotone cones, determinism,
threshold probabilities, bad input, and the CLI writing its outputs; with the trained engine
(the smoke engine): fixed compiled shapes, horizons as slices of one simulation, what-if
overrides, and the CLI's drivers."""

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


def test_cli_forecast_on_fresh_machine_ingests_trains_and_forecasts(tmp_path, capsys):
    """README command 1 in miniature: an empty store is filled with the embedded default, no
    engine is registered, so the experiment's small default engine is trained and registered
    first (``forecast.train_if_missing``), then the engine forecasts; a second call reuses it."""
    from aurora_jax.train.registry import list_entries

    reg = tmp_path / "registry"
    args = ["forecast", "experiment=smoke", f"data.root={tmp_path / 'data'}", f"outputs_dir={tmp_path / 'out'}",
            "progress=false", f"model.train.registry_dir={reg}", f"model.explain.dir={tmp_path / 'explain'}"]
    assert main(args) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    with open(path) as fh:
        out = json.load(fh)
    entries = list_entries(reg)
    assert [e.experiment for e in entries] == ["smoke_quick"] and entries[0].asset_id == "SPX"
    assert out["model_name"] == "aurora" and out["model_version"] == entries[0].version
    assert out["asset_id"] == "SPX" and out["num_paths"] == 1000 and len(out["quantiles"]) == 5
    q = np.array([[row[c] for c in ("q05", "q10", "q25", "q50", "q75", "q90", "q95")] for row in out["quantiles"]])
    assert (np.diff(q, axis=1) >= 0).all() and (q[-1, -1] - q[-1, 0]) > (q[0, -1] - q[0, 0]) > 0
    assert main([*args, "horizon=3"]) == 0 and len(list_entries(reg)) == 1     # reused, not retrained
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


# -- the trained engine (model=engine; the smoke engine of tests/conftest.py) ------------------------
def test_engine_forecast_has_fixed_shapes_and_horizons_are_slices(smoke_run, spx_store):
    from aurora_jax.forecast.engine import simulate_batch

    cfg = smoke_run.cfg
    qcols = ["q05", "q10", "q25", "q50", "q75", "q90", "q95"]
    r5 = forecast("SPX", 5, "2018-06-01", num_paths=1500, thresholds=[2650.0], store=spx_store, cfg=cfg, drivers=False)
    assert r5.model_name == "aurora" and r5.model_version == smoke_run.versions[-1] and r5.paths.shape == (1500, 5)
    again = forecast("SPX", 5, "2018-06-01", num_paths=1500, thresholds=[2650.0], store=spx_store, cfg=cfg,
                     drivers=False)
    pd.testing.assert_frame_equal(r5.table, again.table)                  # same request, same numbers
    r3 = forecast("SPX", 3, "2018-06-01", num_paths=1500, store=spx_store, cfg=cfg, drivers=False)
    np.testing.assert_array_equal(r3.table[qcols].to_numpy(), r5.table[qcols].to_numpy()[:3])
    np.testing.assert_array_equal(r3.paths, r5.paths[:, :3])              # the same simulation, sliced
    # the cone: numpy's linear quantiles of log(P / spot), as prices, non-decreasing across levels
    log_q = np.quantile(np.log(r5.paths / r5.spot), [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95], axis=0).T
    np.testing.assert_allclose(r5.table[qcols].to_numpy(), r5.spot * np.exp(log_q), rtol=1e-9)
    assert (np.diff(r5.table[qcols].to_numpy(), axis=1) >= 0).all()
    t = r5.thresholds[0]
    assert t["p_below"] == np.mean(r5.paths[:, -1] < 2650.0) and t["p_touch"] >= min(t["p_below"], t["p_above"])
    # path counts inside one bucket (serving.engine.path_buckets: 1000, 2000, ...) and any horizon
    # reuse the compiled shape
    n = simulate_batch._cached._cache_size()
    for h, paths, as_of in ((2, 1001, "2017-01-03"), (14, 2000, "2016-06-01"), (1, 1999, None)):
        r = forecast("SPX", h, as_of, num_paths=paths, store=spx_store, cfg=cfg, drivers=False)
        assert r.paths.shape == (paths, h) and np.isfinite(r.paths).all()
    assert simulate_batch._cached._cache_size() == n
    with pytest.raises(InvalidParameterError) as err:
        forecast("SPX", 15, num_paths=1000, store=spx_store, cfg=cfg)
    assert err.value.field == "horizon"


def test_engine_what_if_is_conditional_and_keeps_the_key(smoke_run, spx_store, smoke_cfg):
    base = forecast("SPX", 5, "2018-06-01", num_paths=1000, store=spx_store, cfg=smoke_run.cfg, drivers=False)
    scen = forecast("SPX", 5, "2018-06-01", num_paths=1000, overrides={"gamma_squeeze_index": -2.5}, store=spx_store,
                    cfg=smoke_run.cfg, drivers=False)
    assert scen.conditional and not base.conditional and scen.overrides == {"gamma_squeeze_index": -2.5}
    assert not np.array_equal(scen.paths, base.paths)
    from aurora_jax.forecast.api import prepare

    now = float(prepare("SPX", "2018-06-01", store=spx_store, cfg=smoke_run.cfg).inputs.mm_indices[0])
    same = forecast("SPX", 5, "2018-06-01", num_paths=1000, overrides={"gamma_squeeze_index": now}, store=spx_store,
                    cfg=smoke_run.cfg, drivers=False)
    assert same.conditional
    np.testing.assert_array_equal(same.paths, base.paths)     # no effective change, same key: the same cone
    with pytest.raises(InvalidParameterError) as err:
        forecast("SPX", 5, "2018-06-01", num_paths=1000, overrides={"gamma_squeeze_index": 9.0}, store=spx_store,
                 cfg=smoke_run.cfg)
    assert err.value.field == "scenario_overrides.gamma_squeeze_index"
    with pytest.raises(InvalidParameterError) as err:                   # the baseline has no conditioning inputs
        forecast("SPX", 5, "2018-06-01", num_paths=1000, overrides={"gamma_squeeze_index": 1.0}, store=spx_store,
                 cfg=smoke_cfg)
    assert err.value.field == "overrides"


def test_cli_engine_forecast_prints_drivers_and_draws_them(smoke_run, spx_store, tmp_path, capsys):
    rc = main(["forecast", "experiment=smoke", "model=engine", f"data.root={spx_store.root}",
               f"++model.train.registry_dir={smoke_run.cfg.model.train.registry_dir}",
               f"model.explain.dir={tmp_path / 'explain'}", f"outputs_dir={tmp_path / 'out'}", "progress=false",
               "model.explain.fit.days=400", "model.explain.fit.dates=72", "model.explain.fit.paths=64",
               "model.explain.fit.chunk=24", "model.explain.fit.min_train=12", "model.explain.horizons=[1,5]",
               "model.explain.fit_on_demand=true", "as_of=2018-06-01"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"drivers (surrogate of {smoke_run.versions[-1]}" in out
    for role in ("upside", "downside", "trend"):
        assert any(line.strip().startswith(role) and ("R²" in line or "unreliable" in line) for line in out.splitlines())
    with open(out.strip().splitlines()[-1]) as fh:
        result = json.load(fh)
    d = result["drivers"]
    assert d["horizon"] == 5 and set(d) >= {"upside", "downside", "trend", "reliable"}
    for role in ("upside", "downside", "trend"):
        r = d[role]
        assert r["reliable"] == (r["fidelity_r2"] is not None and r["fidelity_r2"] >= 0.5)
        assert (len(r["drivers"]) == 3) if r["reliable"] else (r["drivers"] == [] and "min_fidelity" in r["reason"])
    png = next((tmp_path / "out").rglob("drivers.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "explain" / f"{smoke_run.versions[-1]}.json").exists()   # saved for the engine version


def test_path_buckets_bound_the_compiled_shapes():
    from aurora_jax.forecast.api import path_bucket

    buckets = (1000, 2000, 5000)
    assert [path_bucket(n, buckets) for n in (1, 1000, 1001, 2000, 4999, 5000)] == [1000, 1000, 2000, 2000, 5000, 5000]
    # above the largest bucket: the next multiple of it (at most max_paths / 5000 extra shapes)
    assert [path_bucket(n, buckets) for n in (5001, 10000, 12345, 200000)] == [10000, 10000, 15000, 200000]
    assert len({path_bucket(n, buckets) for n in range(1, 200001, 97)}) == 2 + 200000 // 5000


def test_batch_pieces_use_bucket_sizes_without_padding_waste():
    from aurora_jax.forecast.api import batch_pieces

    sizes = lambda n, bs: [s for _, s in batch_pieces(list(range(n)), bs)]
    assert sizes(5, (1, 4, 16)) == [4, 1] and sizes(21, (1, 4, 16)) == [16, 4, 1] and sizes(3, (1, 4, 16)) == [1, 1, 1]
    for n in range(1, 60):
        pieces = batch_pieces(list(range(n)), (1, 4, 16))
        assert [i for p, _ in pieces for i in p] == list(range(n))            # every item once, in order
        assert all(len(p) == s and s in (1, 4, 16) for p, s in pieces)         # never padded with a bucket of 1
    # without a bucket of 1 only the remainder below the smallest bucket is padded
    assert [(len(p), s) for p, s in batch_pieces(list(range(7)), (2, 4))] == [(4, 4), (2, 2), (1, 2)]

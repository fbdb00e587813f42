"""The service with the trained engine (the smoke engine, trained once per test run by
tests/conftest.py): warm-up compiles before /ready and no request compiles, equal requests share
one simulation, distinct ones share one compiled call and a bad one fails alone, drivers with
every forecast, 503 + /ready when no engine is registered, and the service equals the library."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil

import numpy as np
import pandas as pd

from aurora_jax.forecast import api
from serving.schemas import ForecastRequest

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def _raw(out: dict, cols=("q05", "q25", "q50", "q75", "q95")) -> np.ndarray:
    return np.array([[row["raw"][c] for c in cols] for row in out["quantiles"]])


def _gather(app, reqs: list[ForecastRequest]) -> list:
    """Submit requests to the service in one event-loop tick (so they meet in one collection window)."""
    svc = app.service

    async def main():
        return await asyncio.gather(*(svc.forecast(r, f"g{i}", log=False) for i, r in enumerate(reqs)),
                                    return_exceptions=True)

    return app.client.blocking_portal.call(main)


def test_warmup_compiles_every_shape_before_ready_and_no_request_compiles(engine_app):
    svc, c = engine_app.service, engine_app.client
    f = svc.forecaster
    r = c.get("/ready")
    assert r.status_code == 200 and r.json()["warmed_up"], r.text
    version = r.json()["assets"]["SPX"]["engine"]
    assert r.json()["assets"]["SPX"]["drivers"] == "available"
    want = {(version, b, p) for b in (1, 4) for p in (1000, 5000)}
    assert want <= f.warmed_shapes                       # every (batch, paths) bucket ran at start-up
    assert svc.warmup_report["assets"] == ["SPX"] and not svc.warmup_report["failed"]
    m = c.get("/models").json()
    assert m["model_name"] == "aurora" and m["active"] == version
    assert any(e["active"] and e["version"] == version and e["source"] == "registry" for e in m["models"])
    compiled = f.compiled_shapes()
    assert compiled >= 4
    # the first user requests: every horizon, path counts inside the buckets, levels, thresholds,
    # other as-of dates, alone and concurrently -- the jit cache does not grow
    for h, n in ((1, 1000), (14, 5000), (5, 1234), (3, 4999)):
        body = {"asset_id": "SPX", "horizon": h, "num_paths": n, "quantiles": [0.1, 0.5, 0.9], "thresholds": [2500.0]}
        assert c.post("/forecast", json=body).status_code == 200
    outs = _gather(engine_app, [ForecastRequest(asset_id="SPX", horizon=1 + i % 14, num_paths=1000 + 500 * i,
                                                as_of=f"2018-0{1 + i % 3}-15") for i in range(7)])
    assert all(not isinstance(o, BaseException) for o in outs), outs
    assert f.compiled_shapes() == compiled
    assert f"aurora_compiled_shapes {float(compiled)}" in c.get("/metrics").text


def test_service_equals_library_forecast_and_horizons_are_slices(engine_app, smoke_run, spx_store):
    svc, c = engine_app.service, engine_app.client
    body = {"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01T00:00:00Z", "num_paths": 2000,
            "thresholds": [2650.0, 2800.0], "quantiles": list(LEVELS)}
    out = c.post("/forecast", json=body).json()
    assert out["model_name"] == "aurora" and out["num_paths"] == 2000 and len(out["quantiles"]) == 5
    ref = api.forecast("SPX", 5, "2018-06-01", quantiles=LEVELS, thresholds=[2650.0, 2800.0], num_paths=2000,
                       store=spx_store, cfg=svc.cfg, drivers=False)
    np.testing.assert_array_equal(_raw(out), ref.table[["q05", "q25", "q50", "q75", "q95"]].to_numpy())
    assert [t["p_touch"] for t in out["thresholds"]] == [t["p_touch"] for t in ref.thresholds]
    assert out["model_version"] == ref.model_version == smoke_run.versions[-1] and out["spot"] == ref.spot
    assert [r["ds"] for r in out["quantiles"]] == [d.isoformat() for d in ref.table["ds"]]
    # one simulation of horizon_max steps: a shorter horizon is the first steps of a longer one
    short = c.post("/forecast", json={**body, "horizon": 3}).json()
    np.testing.assert_array_equal(_raw(short), _raw(out)[:3])
    for row in out["quantiles"]:
        assert list(row["raw"].values()) == sorted(row["raw"].values())
        assert list(row["quantiles"].values()) == sorted(row["quantiles"].values())
    widths = [row["raw"]["q95"] - row["raw"]["q05"] for row in out["quantiles"]]
    assert widths[-1] > widths[0]
    for t in out["thresholds"]:
        assert abs(t["p_below"] + t["p_above"] - 1) < 1e-9
        assert t["p_touch"] >= (t["p_below"] if t["threshold"] < out["spot"] else t["p_above"])


def test_equal_requests_share_one_simulation_with_their_own_summaries(engine_app, spx_store):
    svc = engine_app.service
    sims0, batches0 = svc.metrics.simulations._value.get(), svc.batcher.stats.batches
    asks = [((0.05, 0.5, 0.95), (2600.0,)), ((0.1, 0.9), ()), ((0.5,), (2500.0, 2700.0)), ((0.05, 0.5, 0.95), ())]
    reqs = [ForecastRequest(asset_id="SPX", horizon=4, as_of="2018-03-01", num_paths=3000, quantiles=list(q),
                            thresholds=list(k)) for q, k in asks]
    outs = _gather(engine_app, reqs)
    assert all(not isinstance(o, BaseException) for o in outs), outs
    assert svc.metrics.simulations._value.get() - sims0 == 1          # one simulation for four requests
    assert svc.batcher.stats.batches - batches0 == 1
    ref = api.forecast("SPX", 4, "2018-03-01", quantiles=(0.05, 0.1, 0.5, 0.9, 0.95), thresholds=[2500.0, 2600.0, 2700.0],
                       num_paths=3000, store=spx_store, cfg=svc.cfg, drivers=False)
    for out, (q, ks) in zip(outs, asks):
        cols = [api.quantile_column(x) for x in q]
        assert list(out.quantiles[0].raw) == cols                      # each gets its own levels ...
        got = np.array([[row.raw[c] for c in cols] for row in out.quantiles])
        np.testing.assert_array_equal(got, ref.table[cols].to_numpy())  # ... from the same paths
        assert [t.threshold for t in out.thresholds] == list(ks)
        for t in out.thresholds:
            want = next(x for x in ref.thresholds if x["threshold"] == t.threshold)
            assert (t.p_below, t.p_above, t.p_touch) == (want["p_below"], want["p_above"], want["p_touch"])


def test_distinct_requests_share_one_call_and_a_bad_one_fails_alone(engine_app, spx_store):
    svc = engine_app.service
    f = svc.forecaster
    bad_as_of = f.resolve_as_of("SPX", "2017-09-01")
    good = f.prepare("SPX", bad_as_of)
    x = good.forecast.inputs
    nan_inputs = type(x)(**{k: getattr(x, k) for k in x.__dataclass_fields__} | {"revin_scale": np.float32(np.nan)})
    key = f._cache_key("SPX", bad_as_of)
    f.cache.put(key, dataclasses.replace(good, forecast=dataclasses.replace(good.forecast, inputs=nan_inputs)))
    try:
        dates = ["2017-06-01", "2017-09-01", "2017-12-01", "2018-03-01"]   # one call of batch bucket 4
        for d in dates:                                  # prepared (cached): the requests meet in one window
            f.prepare("SPX", f.resolve_as_of("SPX", d))
        batches0, sims0 = svc.batcher.stats.batches, svc.metrics.simulations._value.get()
        outs = _gather(engine_app, [ForecastRequest(asset_id="SPX", horizon=3, as_of=d, num_paths=1000) for d in dates])
        assert svc.batcher.stats.batches - batches0 == 1 and svc.metrics.simulations._value.get() - sims0 == 4
        assert not any(isinstance(outs[i], BaseException) for i in (0, 2, 3))
        assert isinstance(outs[1], Exception) and "non-finite" in str(outs[1])
        for out, d in ((outs[0], dates[0]), (outs[2], dates[2]), (outs[3], dates[3])):   # batched: float32 rounding only
            ref = api.forecast("SPX", 3, d, quantiles=svc.default_levels, num_paths=1000, store=spx_store,
                               cfg=svc.cfg, drivers=False)
            cols = [api.quantile_column(q) for q in svc.default_levels]
            np.testing.assert_allclose([[r.raw[c] for c in cols] for r in out.quantiles], ref.table[cols], rtol=1e-6)
        from serving.errors import error_body

        assert error_body(outs[1]).status_code == 503
    finally:
        f.cache.put(key, good)
    assert engine_app.client.post("/forecast", json={"asset_id": "SPX", "as_of": "2017-09-01"}).status_code == 200
    assert engine_app.client.get("/ready").status_code == 200
    items = [{"asset_id": "SPX", "horizon": 2, "num_paths": 1000}, {"asset_id": "SPX", "horizon": 99},
             {"asset_id": "SPX", "horizon": 2, "as_of": "2016-01-04", "num_paths": 1000}, {"asset_id": "NOPE"}]
    out = engine_app.client.post("/forecast/batch", json={"items": items}).json()
    assert [i["status_code"] for i in out["items"]] == [200, 422, 200, 404]


def test_drivers_with_every_forecast(engine_app):
    from aurora_jax.forecast.explain.blocks import BLOCKS
    from serving.service import ForecastService

    svc, c = engine_app.service, engine_app.client
    out = c.post("/forecast", json={"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01", "num_paths": 1000}).json()
    d = out["drivers"]
    assert d["status"] == "ok" and d["reliable"] and d["horizon"] == 5 and d["min_fidelity"] == -100
    assert d["surrogate_engine_version"] == out["model_version"]
    for role in ("upside", "downside", "trend"):
        t = d[role]
        assert t["reliable"] and t["fidelity_r2"] is not None and len(t["drivers"]) == 3
        effects = [x["effect"] for x in t["drivers"]]
        assert [abs(e) for e in effects] == sorted((abs(e) for e in effects), reverse=True)
        assert len({x["block"] for x in t["drivers"]}) == 3 and all(x["block"] in BLOCKS for x in t["drivers"])
        for x in t["drivers"]:
            assert x["sign"] == ("+" if x["effect"] >= 0 else "-")
            want = 100 * np.expm1(x["effect"]) if role != "trend" else 100 * x["effect"]
            assert abs(x["effect_pct"] - want) < 1e-9
    # the same numbers as the library's drivers of that forecast
    f = svc.forecaster
    prep = f.prepare("SPX", f.resolve_as_of("SPX", "2018-06-01")).forecast
    sim = api.simulate(prep, 5, 1000, svc.cfg)
    lib = api.drivers_of(prep, sim, 5, f.surrogate(prep.engine), svc.cfg.model.explain)
    assert [x["block"] for x in lib["upside"]["drivers"]] == [x["block"] for x in d["upside"]["drivers"]]
    # below the configured fidelity: unreliable, no invented drivers
    from aurora_jax.forecast.explain.drivers import Explainable, drivers_for

    strict = drivers_for(Explainable(prep.inputs, sim.trend_paths[:, :5]), f.surrogate(prep.engine), 5, min_fidelity=1.0)
    body = ForecastService._drivers_body({"drivers": strict, "min_fidelity": 1.0})
    assert body.status == "unreliable" and not body.reliable and "min_fidelity" in body.note
    assert all(getattr(body, r).drivers == [] and "explain.min_fidelity" in getattr(body, r).reason
               for r in ("upside", "downside", "trend"))


def test_scenario_override_is_a_conditional_forecast_with_the_same_key(engine_app):
    c = engine_app.client
    base = c.post("/forecast", json={"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01"}).json()
    r = c.post("/forecast", json={"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01",
                                  "scenario_overrides": {"gamma_squeeze_index": 2.5}})
    assert r.status_code == 200, r.text
    scen = r.json()
    assert scen["conditional"] and not base["conditional"] and scen["scenario_overrides"] == {"gamma_squeeze_index": 2.5}
    assert not np.array_equal(_raw(scen, ("q05", "q50", "q95")), _raw(base, ("q05", "q50", "q95")))
    bad = c.post("/forecast", json={"asset_id": "SPX", "scenario_overrides": {"gamma_squeeze_index": 99.0}})
    assert bad.status_code == 422 and bad.json()["field"] == "scenario_overrides.gamma_squeeze_index"
    bad = c.post("/forecast", json={"asset_id": "SPX", "scenario_overrides": {"colour": 1.0}})
    assert bad.status_code == 422 and bad.json()["field"] == "scenario_overrides"
    # POST /scenario reuses the prepared forecast and the compiled shapes: its base cone is the
    # /forecast cone (one call for both cones: float32 rounding only), its scenario cone the what-if one
    compiled = engine_app.service.forecaster.compiled_shapes()
    r = c.post("/scenario", json={"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01",
                                  "overrides": {"gamma_squeeze_index": 2.5}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["conditional"] and d["model_version"] == base["model_version"]
    cols = ("q05", "q50", "q95")
    np.testing.assert_allclose(_raw(d["base"], cols), _raw(base, cols), rtol=1e-6)
    np.testing.assert_allclose(_raw(d["scenario"], cols), _raw(scen, cols), rtol=1e-6)
    assert any(x["input"] == "mm_indices.Gamma_Squeeze_Index" for x in d["inputs_changed"]), d["inputs_changed"]
    assert d["base"]["drivers"]["horizon"] == 5 and d["scenario"]["drivers"]["horizon"] == 5
    assert engine_app.service.forecaster.compiled_shapes() == compiled


def test_missing_engine_is_503_with_the_reason_and_ready_says_why(smoke_run, spx_store, tmp_path, make_engine_cfg,
                                                                 app_starter):
    import json

    # no engine at all: nothing to serve
    app = app_starter(make_engine_cfg("serving.assets=[SPX]", registry=tmp_path / "empty_registry"), spx_store)
    r = app.client.get("/ready")
    assert r.status_code == 503 and not r.json()["ready"] and not r.json()["model_loaded"]
    assert any("no trained engine for SPX" in x for x in r.json()["reasons"]), r.json()
    r = app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 3})
    assert r.status_code == 503 and "no trained engine for SPX" in r.json()["detail"]
    assert app.client.get("/health").status_code == 200
    assert app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 30}).status_code == 422
    # an engine for SPX only: SPX is served, NDX answers 503 with the reason, /ready lists it;
    # an engine registered for NDX later is picked up by the refresh, without a restart
    reg = tmp_path / "registry"
    shutil.copytree(smoke_run.cfg.model.train.registry_dir, reg, ignore=shutil.ignore_patterns(".*"))
    app = app_starter(make_engine_cfg("serving.assets=[NDX,SPX]", "serving.engine.path_buckets=[1000]",
                                      "serving.engine.batch_buckets=[1]", "serving.engine.drivers=false", registry=reg),
                      spx_store)
    r = app.client.get("/ready")
    assert r.status_code == 503 and r.json()["warmed_up"] and r.json()["model_loaded"]
    assert any(x.startswith("model:NDX") and "no trained engine for NDX" in x for x in r.json()["reasons"])
    assert r.json()["assets"]["NDX"]["engine"] is None and r.json()["assets"]["SPX"]["engine"]
    out = app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 3}).json()
    assert out["model_name"] == "aurora"
    assert out["drivers"]["status"] == "unavailable" and "disabled" in out["drivers"]["note"]
    r = app.client.post("/forecast", json={"asset_id": "NDX", "horizon": 3})
    assert r.status_code == 503 and "no trained engine for NDX" in r.json()["detail"]
    src = reg / smoke_run.versions[-1]                   # the SPX weights registered for NDX (same shapes)
    entry = json.loads((src / "entry.json").read_text())
    dst = reg / src.name.replace("spx", "ndx")
    shutil.copytree(src, dst)
    entry.update(version=dst.name, asset_id="NDX", path=str(dst))
    (dst / "entry.json").write_text(json.dumps(entry))
    (dst / "ewaf" / "SPX.json").rename(dst / "ewaf" / "NDX.json")
    app.client.blocking_portal.call(app.service.refresh)
    r = app.client.get("/ready")
    assert r.status_code == 200, r.json()
    assert app.client.post("/forecast", json={"asset_id": "NDX", "horizon": 3}).json()["model_version"] == dst.name


def test_nightly_with_the_engine_updates_the_ewaf_state_once(smoke_run, spx_store, tmp_path, make_engine_cfg):
    import json

    from serving import nightly

    reg = tmp_path / "registry"   # a copy: the nightly writes the EWAF state next to the model
    shutil.copytree(smoke_run.cfg.model.train.registry_dir, reg, ignore=shutil.ignore_patterns(".*"))
    ewaf = reg / smoke_run.versions[-1] / "ewaf" / "SPX.json"
    before = json.loads(ewaf.read_text())

    def cfg(as_of):
        return make_engine_cfg("serving.assets=[SPX]", f"serving.nightly.as_of={as_of}", registry=reg)

    api.forecast("SPX", 5, "2018-06-01", num_paths=1000, store=spx_store, cfg=cfg("2018-06-01"), drivers=False)
    assert json.loads(ewaf.read_text()) == before                     # interactive use never updates it
    first = nightly.run(cfg("2018-06-01"))
    s1 = json.loads(ewaf.read_text())
    assert s1["last_as_of"].startswith("2018-06-01") and s1["pending"] is not None
    assert s1["n_updates"] == before["n_updates"] + (1 if before.get("pending") else 0)
    table = pd.read_parquet(f"{first['out_dir']}/quantiles.parquet")
    assert len(table) == 5 and (table["model_version"] == smoke_run.versions[-1]).all()
    q = table[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    second = nightly.run(cfg("2018-06-25"))
    s2 = json.loads(ewaf.read_text())
    assert s2["n_updates"] == s1["n_updates"] + 1 and s2["last_as_of"].startswith("2018-06-25")
    assert s2["history"][-1][0].startswith("2018-06-25") and len(s2["history"]) == len(s1["history"]) + 1
    assert second["outcomes_added"] == {"SPX": 5}
    third = nightly.run(cfg("2018-06-25"))                             # same night again: nothing twice
    assert third["resumed"] == ["SPX"] and json.loads(ewaf.read_text()) == s2
    assert third["outcomes_added"] == {"SPX": 0}


def test_a_running_simulation_is_shared_by_later_equal_requests(engine_app, monkeypatch):
    """Single flight: a batch that asks a simulation another batch is running waits for it."""
    import threading
    import time

    from serving import forecaster as fmod
    from serving.forecaster import ForecastJob

    f = engine_app.service.forecaster
    prep = f.prepare("SPX", f.resolve_as_of("SPX", "2018-02-01"))
    real, calls = fmod.api.simulate_engine, []

    def slow(preps, ns, **kw):
        calls.append(len(preps))
        time.sleep(0.5)
        return real(preps, ns, **kw)

    monkeypatch.setattr(fmod.api, "simulate_engine", slow)
    jobs = [ForecastJob(prep, 3, 2000, (0.1, 0.5, 0.9), (), f.seed), ForecastJob(prep, 5, 2000, (0.5,), (2500.0,), f.seed)]
    shared0 = f.shared_flights
    out: dict[int, object] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, f.simulate([jobs[i]])[0])) for i in range(2)]
    threads[0].start()
    time.sleep(0.1)                                  # the second batch arrives while the first simulates
    threads[1].start()
    for t in threads:
        t.join()
    assert calls == [1] and f.shared_flights - shared0 == 1
    np.testing.assert_array_equal(out[0].quantiles[:, 1], out[1].quantiles[:3, 0])   # the same paths
    assert out[1].thresholds[0]["threshold"] == 2500.0 and out[0].thresholds == []


def test_assets_without_an_engine_do_not_block_readiness_unless_configured(smoke_run, spx_store, app_starter,
                                                                            make_engine_cfg):
    """serving.assets unset: /ready needs an engine for the experiment's asset (SPX) only; NDX,
    without one, answers 503 with the reason and /ready lists it without turning false."""
    app = app_starter(make_engine_cfg("serving.engine.path_buckets=[1000]", "serving.engine.batch_buckets=[1]",
                                      "serving.engine.drivers=false"), spx_store)
    r = app.client.get("/ready")
    assert r.status_code == 200 and r.json()["ready"], r.json()
    assert r.json()["assets"]["NDX"]["engine"] is None and "no trained engine for NDX" in r.json()["assets"]["NDX"]["reason"]
    assert any(x.startswith("model:NDX") for x in r.json()["reasons"])
    assert app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 2}).status_code == 200
    r = app.client.post("/forecast", json={"asset_id": "NDX", "horizon": 2})
    assert r.status_code == 503 and "no trained engine for NDX" in r.json()["detail"]

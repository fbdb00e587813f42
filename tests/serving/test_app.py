"""The HTTP service on the embedded S&P 500 data: responses, errors, batch, readiness, metrics,
request log, model failures (503 + /ready), coalescing, and the ops files."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from aurora_jax.forecast.api import forecast

OPS = Path(__file__).resolve().parents[2] / "serving" / "ops"


def test_forecast_response_matches_library_and_is_coherent(spx_app, spx_store, serve_cfg):
    body = {"asset_id": "SPX", "horizon": 5, "as_of": "2018-06-01T00:00:00Z", "num_paths": 2000,
            "thresholds": [2650.0, 2800.0], "quantiles": [0.05, 0.25, 0.5, 0.75, 0.95]}
    r = spx_app.client.post("/forecast", json=body, headers={"x-request-id": "test-req-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["request_id"] == "test-req-1" and r.headers["x-request-id"] == "test-req-1"
    assert out["horizon"] == 5 and len(out["quantiles"]) == 5 and out["num_paths"] == 2000
    assert out["conditional"] is False and out["latency_ms"] > 0
    ref = forecast("SPX", 5, "2018-06-01", quantiles=body["quantiles"], thresholds=body["thresholds"],
                   num_paths=2000, store=spx_store, cfg=serve_cfg)
    raw = np.array([[row["raw"][c] for c in ("q05", "q25", "q50", "q75", "q95")] for row in out["quantiles"]])
    np.testing.assert_allclose(raw, ref.table[["q05", "q25", "q50", "q75", "q95"]].to_numpy(), rtol=1e-12)
    assert out["model_version"] == ref.model_version and out["spot"] == ref.spot
    assert [t["p_touch"] for t in out["thresholds"]] == [t["p_touch"] for t in ref.thresholds]
    ds = pd.to_datetime([row["ds"] for row in out["quantiles"]])
    assert ds.is_monotonic_increasing and ds[0] > pd.Timestamp(out["as_of"])
    for row in out["quantiles"]:
        vals = list(row["quantiles"].values())
        assert vals == sorted(vals)
    cal = out["calibration"]
    assert cal["regime"] in ("calm", "normal", "volatile", "unknown")
    assert cal["status"] == "uncalibrated" and cal["buffer"] == "none"  # no nightly outcomes yet
    assert set(cal["alpha"]) >= {"0.05", "0.95"}
    assert "price" in out["feature_groups_used"] and "micro" in out["feature_groups_missing"]
    assert out["calibration_version"] == "empty" and len(out["input_hash"]) == 16


def test_bad_requests_name_the_field(spx_app):
    c = spx_app.client
    cases = [
        ({"asset_id": "BTC-EUR"}, 404, "asset_id"),
        ({"asset_id": "SPX", "horizon": 0}, 422, "horizon"),
        ({"asset_id": "SPX", "horizon": 15}, 422, "horizon"),
        ({"asset_id": "SPX", "horizon": "five"}, 422, "horizon"),
        ({"asset_id": "SPX", "horizon": 2.5}, 422, "horizon"),
        ({"asset_id": "SPX", "num_paths": 10**6}, 422, "num_paths"),
        ({"asset_id": "SPX", "num_paths": 10}, 422, "num_paths"),
        ({"asset_id": "SPX", "quantiles": [0.5, 0.1]}, 422, "quantiles"),
        ({"asset_id": "SPX", "quantiles": [0.5, 1.5]}, 422, "quantiles[1]"),
        ({"asset_id": "SPX", "thresholds": [-1.0]}, 422, "thresholds[0]"),
        ({"asset_id": "SPX", "as_of": "not a date"}, 422, "as_of"),
        ({"asset_id": "SPX", "as_of": "2031-01-01"}, 422, "as_of"),
        ({"asset_id": "SPX", "colour": "blue"}, 422, "colour"),
        ({"horizon": 3}, 422, "asset_id"),
        ({"asset_id": "SPX", "scenario_overrides": {"iv_30d_atm": 90.0}}, 422, "scenario_overrides"),
    ]
    for body, status, field in cases:
        r = c.post("/forecast", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()
        assert err["field"] == field and err["allowed"] and err["detail"], (body, err)
    r = c.post("/forecast", json={"asset_id": "BTC-EUR"})
    assert r.json()["known"] == ["SPX"]
    r = c.post("/forecast", json={"asset_id": "SPX", "horizon": 15})
    assert "[1, 14]" in r.json()["allowed"]
    r = c.post("/forecast", json={"asset_id": "SPX", "num_paths": 10**6})
    assert r.json()["allowed"] == "an integer in [1000, 5000]"
    r = c.post("/forecast", json={"asset_id": "SPX", "as_of": "2031-01-01"})
    assert r.json()["last_available"].startswith("2019-01-01") and "last available timestamp" in r.json()["detail"]
    r = c.post("/forecast", content=b'{"asset_id": "SPX", ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = c.post("/forecast", content=b'{"asset_id": "' + b"x" * 70000 + b'"}',
               headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.get("/forecast").status_code == 405 and c.get("/nowhere").status_code == 404


def test_batch_reports_partial_failures_per_item(spx_app):
    items = [{"asset_id": "SPX", "horizon": 3, "num_paths": 1000},
             {"asset_id": "SPX", "horizon": 99},
             {"asset_id": "NOPE", "horizon": 3},
             {"asset_id": "SPX", "horizon": 2, "as_of": "2018-06-01", "num_paths": 1000},
             "not an object"]
    r = spx_app.client.post("/forecast/batch", json={"items": items})
    assert r.status_code == 200, r.text
    out = r.json()
    codes = [i["status_code"] for i in out["items"]]
    assert codes == [200, 422, 404, 200, 422] and out["succeeded"] == 2 and out["failed"] == 3
    assert out["items"][1]["error"]["field"] == "horizon"
    assert out["items"][2]["error"]["known"] == ["SPX"]
    assert len(out["items"][0]["result"]["quantiles"]) == 3
    assert spx_app.client.post("/forecast/batch", json={"items": []}).status_code == 422


def test_health_ready_models(spx_app):
    c = spx_app.client
    assert c.get("/health").json() == {"status": "ok"}
    r = c.get("/ready")
    assert r.status_code == 200 and r.json()["ready"] and r.json()["warmed_up"], r.text
    assert r.json()["assets"]["SPX"]["prepared"] and not r.json()["reasons"]
    m = c.get("/models").json()
    assert m["model_name"] == "garch_t" and m["active"].startswith("garch_t-")
    assert any(e["active"] and e["version"] == m["active"] for e in m["models"])
    schema = c.get("/schema/openapi.json").json()
    props = schema["components"]["schemas"]["ForecastRequest"]["properties"]
    assert {"asset_id", "horizon", "as_of", "quantiles", "thresholds", "num_paths", "scenario_overrides"} <= set(props)
    assert "/forecast/batch" in schema["paths"]


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{.*\}})? ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_count_requests_paths_batches_and_freshness(spx_app):
    c = spx_app.client
    before = c.get("/metrics").text
    for n in (1000, 2000):
        assert c.post("/forecast", json={"asset_id": "SPX", "horizon": 2, "num_paths": n}).status_code == 200
    assert c.post("/forecast", json={"asset_id": "SPX", "horizon": 20}).status_code == 422
    after = c.get("/metrics").text
    d = lambda name, **kw: _metric(after, name, **kw) - _metric(before, name, **kw)
    assert d("aurora_http_requests_total", route="/forecast", code="200") == 2
    assert d("aurora_http_errors_total", route="/forecast", code="422") == 1
    assert d("aurora_paths_simulated_total", asset="SPX") == 3000
    assert d("aurora_batch_size_count") >= 1
    assert d("aurora_http_request_duration_seconds_count", route="/forecast") == 3
    assert _metric(after, "aurora_feature_group_stale", asset="SPX", group="price", critical="true") == 0
    assert _metric(after, "aurora_feature_group_age_hours", asset="SPX", group="price") >= 0
    assert _metric(after, "aurora_model_ready") == 1


def test_one_json_log_line_per_request(spx_app):
    n0 = len(spx_app.log_lines())
    spx_app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 4, "num_paths": 1000},
                        headers={"x-request-id": "log-ok"})
    spx_app.client.post("/forecast", json={"asset_id": "SPX", "horizon": 40}, headers={"x-request-id": "log-bad"})
    spx_app.client.post("/forecast", json={"asset_id": "ZZZ"}, headers={"x-request-id": "log-404"})
    lines = spx_app.log_lines()[n0:]
    assert [x["request_id"] for x in lines] == ["log-ok", "log-bad", "log-404"]
    ok, bad, unknown = lines
    assert ok["outcome"] == "ok" and ok["status"] == 200 and ok["asset_id"] == "SPX"
    assert {"input_hash", "as_of", "model_version", "calibration_version", "latency_ms"} <= set(ok)
    assert ok["p05"] < ok["p50"] < ok["p95"]
    assert bad["status"] == 422 and bad["outcome"] == "client_error"
    assert unknown["status"] == 404 and unknown["error"] == "unknown_asset"


def test_model_failure_is_503_and_ready_reflects_it(spx_app):
    svc = spx_app.service
    f = svc.forecaster
    as_of = f.resolve_as_of("SPX", "2017-03-01")
    good = f.prepare("SPX", as_of)

    def broken_sampler(h, n, rng):
        raise FloatingPointError("the variance recursion diverged")

    f.cache.put(("SPX", as_of.value), dataclasses.replace(
        good, forecast=dataclasses.replace(good.forecast, sampler=broken_sampler)))
    try:
        r = spx_app.client.post("/forecast", json={"asset_id": "SPX", "as_of": "2017-03-01", "num_paths": 1000})
        assert r.status_code == 503 and "diverged" in r.json()["detail"]
        ready = spx_app.client.get("/ready")
        assert ready.status_code == 503 and not ready.json()["ready"]
        assert any("diverged" in x for x in ready.json()["reasons"])
        assert "aurora_model_ready 0.0" in spx_app.client.get("/metrics").text
    finally:
        f.cache.put(("SPX", as_of.value), good)
    r = spx_app.client.post("/forecast", json={"asset_id": "SPX", "as_of": "2017-03-01", "num_paths": 1000})
    assert r.status_code == 200
    assert spx_app.client.get("/ready").status_code == 200  # a success for the asset clears it


def test_concurrent_requests_share_batches_and_a_slow_fit_stalls_nobody(spx_app):
    from concurrent.futures import ThreadPoolExecutor

    svc = spx_app.service
    f = svc.forecaster
    slow_as_of = f.resolve_as_of("SPX", "2016-02-01")
    real_prepare = f._prepare

    def slow_prepare(asset, as_of):
        if as_of == slow_as_of:
            time.sleep(1.5)
        return real_prepare(asset, as_of)

    f._prepare = slow_prepare
    stats0 = (svc.batcher.stats.batches, svc.batcher.stats.items)
    t0 = time.perf_counter()

    def post(body):
        r = spx_app.client.post("/forecast", json=body)
        return r.status_code, time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(17) as pool:
            slow = pool.submit(post, {"asset_id": "SPX", "as_of": "2016-02-01", "num_paths": 1000})
            time.sleep(0.05)
            fast = [pool.submit(post, {"asset_id": "SPX", "horizon": 1 + i % 14, "num_paths": 1000})
                    for i in range(16)]
            fast = [x.result() for x in fast]
            slow = slow.result()
    finally:
        f._prepare = real_prepare
    assert [c for c, _ in fast] == [200] * 16 and slow[0] == 200
    assert max(t for _, t in fast) < slow[1]            # cached requests never waited for the fit
    batches = svc.batcher.stats.batches - stats0[0]
    items = svc.batcher.stats.items - stats0[1]
    assert items == 17 and batches < items              # coalesced


def test_nightly_scores_feed_rolling_metrics(spx_app, serve_cfg):
    svc = spx_app.service
    path = svc.scores_path
    path.parent.mkdir(parents=True, exist_ok=True)
    days = pd.date_range("2018-09-01", periods=40, freq="D", tz="UTC")
    cov80 = np.arange(40) % 4 != 0          # 0.75 inside
    pd.DataFrame({"asset_id": "SPX", "target_ds": days, "covered_80": cov80, "covered_90": True,
                  "crps": np.linspace(1, 2, 40), "regime": np.where(np.arange(40) < 20, "calm", "volatile")}
                 ).to_parquet(path)
    spx_app.client.blocking_portal.call(svc.refresh)  # what the periodic refresher does
    text = spx_app.client.get("/metrics").text
    assert abs(_metric(text, "aurora_rolling_coverage", asset="SPX", band="p10_p90") - 0.75) < 1e-12
    assert _metric(text, "aurora_rolling_coverage", asset="SPX", band="p05_p95") == 1.0
    assert abs(_metric(text, "aurora_daily_crps", asset="SPX") - 2.0) < 1e-12
    assert abs(_metric(text, "aurora_rolling_crps", asset="SPX") - 1.5) < 1e-12
    assert _metric(text, "aurora_rolling_coverage_by_regime", asset="SPX", regime="calm", band="p10_p90") == 0.75
    assert _metric(text, "aurora_scored_outcomes", asset="SPX") == 40


def test_alert_rules_and_dashboard_use_exported_metrics(spx_app):
    text = spx_app.client.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    names = {n for n, _ in exported} | {f"{n}_{s}" for n, t in exported if t == "histogram"
                                        for s in ("bucket", "sum", "count")} | {f"{n}_total" for n, t in exported
                                                                               if t == "counter"}
    rules = yaml.safe_load((OPS / "alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"AuroraCoverageLow", "AuroraLatencyP99AboveSLA", "AuroraCriticalFeatureGroupStale",
            "AuroraErrorRateHigh"} <= set(alerts)
    assert "< 0.75" in alerts["AuroraCoverageLow"] and "> 0.1" in alerts["AuroraLatencyP99AboveSLA"]
    assert "> 0.01" in alerts["AuroraErrorRateHigh"]
    dash = json.loads((OPS / "grafana_dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]] + list(alerts.values())
    used = {m for e in exprs for m in re.findall(r"\baurora_[a-z_]+", e)}
    assert used and used <= names, used - names
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    assert all(w in titles for w in ("crps", "coverage", "regime", "latency"))

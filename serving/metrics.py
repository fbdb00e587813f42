"""Prometheus metrics of one app instance (its own registry, no global state).

Names (all prefixed ``aurora_``):

* ``http_request_duration_seconds{route,method}`` histogram, ``http_requests_total{route,method,code}``,
  ``http_errors_total{route,code}`` (status >= 400);
* ``paths_simulated_total{asset}``, ``forecasts_total{asset,regime,conditional}``,
  ``batch_size`` histogram (real requests per batched call), ``batch_padded_size`` histogram;
* ``feature_group_age_hours{asset,group}`` (as-of time minus the group's last observation in
  the latest snapshot), ``feature_group_stale{asset,group}`` (1 = older than
  ``data.snapshot.stale_after_days``; ``critical`` label says whether readiness depends on it),
  ``data_age_seconds{asset}`` (wall clock minus the last price);
* ``rolling_coverage{asset,band}`` (share of realised outcomes inside the issued P10–P90 =
  ``p10_p90`` and P5–P95 = ``p05_p95`` bands over the last ``rolling_days``),
  ``rolling_coverage_by_regime{asset,regime,band}``, ``rolling_crps{asset}`` (mean CRPS of the
  h-day log-return), ``daily_crps{asset}`` (mean CRPS of the outcomes of the latest day),
  ``scored_outcomes{asset}`` — all from the nightly scores table, only where outcomes exist;
* ``simulations_total`` (distinct simulations run: coalesced equal requests count once),
  ``compiled_shapes`` (entries in the engine's jit cache; constant after warm-up when no request
  compiles);
* ``model_ready`` (0/1) and ``model_info{name,version}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self, latency_buckets: Sequence[float], batch_buckets: Sequence[int]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram("aurora_http_request_duration_seconds", "Request latency",
                                 ["route", "method"], buckets=list(latency_buckets), registry=r)
        self.requests = Counter("aurora_http_requests_total", "Requests by route and status code",
                                ["route", "method", "code"], registry=r)
        self.errors = Counter("aurora_http_errors_total", "Responses with status >= 400",
                              ["route", "code"], registry=r)
        self.paths = Counter("aurora_paths_simulated_total", "Monte-Carlo paths simulated", ["asset"], registry=r)
        self.forecasts = Counter("aurora_forecasts_total", "Forecasts served",
                                 ["asset", "regime", "conditional"], registry=r)
        edges = sorted({int(b) for b in batch_buckets})
        self.batch_size = Histogram("aurora_batch_size", "Real requests per batched call",
                                    buckets=edges, registry=r)
        self.batch_padded = Histogram("aurora_batch_padded_size", "Batch size after padding to a bucket",
                                      buckets=edges, registry=r)
        self.batch_seconds = Histogram("aurora_batch_duration_seconds", "Time of one batched call",
                                       buckets=list(latency_buckets), registry=r)
        self.group_age = Gauge("aurora_feature_group_age_hours",
                               "As-of time minus the last observation of the group (latest snapshot)",
                               ["asset", "group"], registry=r)
        self.group_stale = Gauge("aurora_feature_group_stale", "1 when the group is stale at the latest as-of",
                                 ["asset", "group", "critical"], registry=r)
        self.data_age = Gauge("aurora_data_age_seconds", "Wall clock minus the last price", ["asset"], registry=r)
        self.coverage = Gauge("aurora_rolling_coverage", "Rolling coverage of issued bands", ["asset", "band"],
                              registry=r)
        self.coverage_regime = Gauge("aurora_rolling_coverage_by_regime", "Rolling coverage per regime",
                                     ["asset", "regime", "band"], registry=r)
        self.crps = Gauge("aurora_rolling_crps", "Rolling mean CRPS of the h-day log-return", ["asset"], registry=r)
        self.daily_crps = Gauge("aurora_daily_crps", "Mean CRPS of the latest day's outcomes", ["asset"], registry=r)
        self.scored = Gauge("aurora_scored_outcomes", "Realised outcomes in the rolling window", ["asset"],
                            registry=r)
        self.simulations = Counter("aurora_simulations_total", "Distinct simulations run (equal requests share one)",
                                   registry=r)
        self.compiled = Gauge("aurora_compiled_shapes", "Compiled shapes of the batched engine call", registry=r)
        self.ready = Gauge("aurora_model_ready", "1 when /ready is true", registry=r)
        self.model_info = Gauge("aurora_model_info", "Active model", ["name", "version"], registry=r)
        self._scores_stamp: tuple | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, route: str, method: str, code: int, seconds: float) -> None:
        self.latency.labels(route, method).observe(seconds)
        self.requests.labels(route, method, str(code)).inc()
        if code >= 400:
            self.errors.labels(route, str(code)).inc()

    def observe_batch(self, real: int, padded: int, seconds: float) -> None:
        self.batch_size.observe(real)
        self.batch_padded.observe(padded)
        self.batch_seconds.observe(seconds)

    def set_freshness(self, asset: str, age_hours: dict[str, float | None], stale: Sequence[str],
                      critical: Sequence[str], data_age_s: float) -> None:
        for group, age in age_hours.items():
            if age is not None:
                self.group_age.labels(asset, group).set(age)
            self.group_stale.labels(asset, group, str(group in critical).lower()).set(
                1.0 if (group in stale or (age is None and group in critical)) else 0.0)
        self.data_age.labels(asset).set(data_age_s)

    def load_scores(self, path: Path, rolling_days: int) -> bool:
        """Refresh the coverage/CRPS gauges from the nightly scores table (when it changed)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        stamp = (st.st_mtime_ns, st.st_size, rolling_days)
        if stamp == self._scores_stamp:
            return False
        scores = pd.read_parquet(path)
        self._scores_stamp = stamp
        for asset, s in scores.groupby("asset_id"):
            s = s.sort_values("target_ds")
            last = s["target_ds"].max()
            win = s[s["target_ds"] > last - pd.Timedelta(days=rolling_days)]
            self.scored.labels(asset).set(len(win))
            for band, col in (("p10_p90", "covered_80"), ("p05_p95", "covered_90")):
                self.coverage.labels(asset, band).set(float(win[col].mean()))
                for regime, g in win.groupby("regime"):
                    self.coverage_regime.labels(asset, regime, band).set(float(g[col].mean()))
            self.crps.labels(asset).set(float(win["crps"].mean()))
            self.daily_crps.labels(asset).set(float(s[s["target_ds"] == last]["crps"].mean()))
        return True

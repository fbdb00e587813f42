"""The forecast service behind the routes: validate -> prepare (cached per asset and as-of) ->
one batched simulation -> conformal calibration -> response (with the engine's drivers), plus
warm-up, readiness and freshness.

The expensive, request-independent part (snapshot + fit, or the engine's inputs) runs in a
prepare pool with its own timeout; the simulation of concurrent requests is coalesced by
:class:`serving.batcher.Batcher` (requests asking the same simulation share it; distinct ones
share one compiled call, :mod:`serving.forecaster`). A cache miss therefore never blocks requests
whose forecast is already prepared.

Start-up (:meth:`ForecastService.warmup`, before ``/ready``): the forecaster loads its models
(for the engine: the latest registered version per asset and its driver surrogate) and runs
every compiled shape once; an asset without a model is listed in ``/ready`` with the reason and
its requests get 503 with that reason, while the other assets are served. The periodic refresh
re-reads the registry and warms what became available.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import msgspec
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.errors import AuroraError, InvalidParameterError, ModelUnavailableError
from aurora_jax.forecast.api import validate_request
from aurora_jax.forecast.quantiles import quantile_column
from serving.batcher import Batcher, BatchTimeoutError
from serving.calibration import CalibrationService
from serving.errors import error_body, msgspec_error_body
from serving.forecaster import ForecastJob, Prepared
from serving.metrics import ServiceMetrics
from serving.reqlog import RequestLog, outcome_of
from serving.schemas import (
    BatchBody,
    BatchItemResult,
    BatchRequest,
    BatchResponse,
    DriversBody,
    ErrorBody,
    ForecastRequest,
    ForecastResponse,
    QuantileRow,
    Readiness,
    ThresholdProbability,
)


@dataclass(frozen=True)
class Work:
    """One batched unit: the job plus what the response needs."""

    job: ForecastJob
    requested: tuple[float, ...]
    conditional: bool
    overrides: dict
    request_id: str


class ForecastService:
    def __init__(self, cfg: DictConfig, forecaster, calibration: CalibrationService, metrics: ServiceMetrics,
                 log: RequestLog):
        s = cfg.serving
        self.cfg = cfg
        self.s = s
        self.forecaster = forecaster
        self.calibration = calibration
        self.metrics = metrics
        self.log = log
        self.limits = SimpleNamespace(max_horizon=int(cfg.forecast.max_horizon),
                                      min_paths=int(cfg.forecast.min_paths),
                                      max_paths=min(int(s.max_paths), int(cfg.forecast.max_paths)))
        self.default_levels = tuple(float(q) for q in cfg.quantiles)
        self.default_paths = int(s.default_num_paths)
        self.seed = int(cfg.seed)
        self.batcher: Batcher[Work, ForecastResponse] = Batcher(
            self._batch_fn, window_ms=float(s.batch.window_ms), buckets=list(s.batch.buckets),
            timeout_s=float(s.batch.timeout_s), workers=int(s.batch.workers), max_queue=int(s.batch.max_queue),
            pad=False,   # the engine forecaster pads its own compiled calls (after merging equal simulations)
            key=lambda w: forecaster.batch_key(w.job),
            on_batch=metrics.observe_batch, name="forecast-batcher",
        )
        self.prepare_pool = ThreadPoolExecutor(int(s.prepare.workers), thread_name_prefix="prepare")
        self.warmed = False
        self.warmup_error: str | None = None
        self.warmup_report: dict = {}
        self.failures: dict[str, str] = {}      # asset -> reason of its last model/data failure
        self.latest: dict[str, Prepared] = {}   # asset -> prepared model at its latest as-of
        self._refresher: asyncio.Task | None = None
        metrics.model_info.labels(str(forecaster.model_name), "pending").set(1)
        forecaster.on_simulations = metrics.simulations.inc

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.batcher.start()
        if bool(self.s.warmup.block_startup):
            await self.warmup()
        else:
            asyncio.create_task(self.warmup())
        if float(self.s.refresh_s) > 0:
            self._refresher = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.batcher.stop()
        self.prepare_pool.shutdown(wait=False, cancel_futures=True)

    async def warmup(self) -> None:
        """Load the models, prepare every asset at its latest as-of, compile every shape, and push
        one request per served asset through the batcher, so the first user request meets a
        fitted (or compiled) model. Assets without a model are listed by /ready."""
        try:
            report = await self._warm(None)
            if not report["assets"]:
                raise ModelUnavailableError("no asset can be served: " + "; ".join(
                    f"{a}: {why}" for a, why in sorted(report["failed"].items())))
            await self.refresh(reload_models=False)
            self.warmed = True
            self.warmup_error = None
        except Exception as exc:  # noqa: BLE001 - reported by /ready
            self.warmup_error = f"{type(exc).__name__}: {exc}"
        self._set_ready_gauge()

    async def _warm(self, assets: list[str] | None) -> dict:
        """``forecaster.warmup`` in the prepare pool for ``assets`` (None = all), then one request
        per asset that warmed through the batcher; records per-asset model failures."""
        w = self.s.warmup
        loop = asyncio.get_running_loop()
        levels = self.calibration.needed_levels(self.default_levels)
        report = await loop.run_in_executor(self.prepare_pool, functools.partial(
            self.forecaster.warmup, int(w.horizon), int(w.num_paths), levels, assets=assets))
        for asset in assets or self.forecaster.assets:
            self.failures.pop(f"model:{asset}", None)
        for asset, why in report["failed"].items():
            self.failures[f"model:{asset}"] = why
        if self.forecaster.fixed_shapes:
            self.metrics.compiled.set(self.forecaster.compiled_shapes())
        for asset in report["assets"]:
            await self.forecast(ForecastRequest(asset_id=asset, horizon=int(w.horizon),
                                                num_paths=int(w.num_paths)), "warmup", log=False)
        self.warmup_report = {**self.warmup_report, **{k: v for k, v in report.items() if k != "failed"},
                              "failed": {**self.warmup_report.get("failed", {}), **report["failed"]}}
        for asset in report["assets"]:
            self.warmup_report["failed"].pop(asset, None)
        return report

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(float(self.s.refresh_s))
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001
                self.failures["refresh"] = f"{type(exc).__name__}: {exc}"

    async def refresh(self, reload_models: bool = True) -> None:
        """Re-read the model registry (engines that became available or newer versions are
        warmed here), re-resolve each asset's latest as-of (new data is prepared here, not on a
        request), update the freshness gauges, and reload the nightly scores."""
        loop = asyncio.get_running_loop()
        critical = list(self.s.ready.critical_groups)
        if reload_models:
            changed = await loop.run_in_executor(self.prepare_pool, self.forecaster.refresh_models)
            retry = [a for a in self.forecaster.assets if f"model:{a}" in self.failures or a in changed]
            if retry:
                await self._warm(retry)
        for asset in self.forecaster.assets:
            if f"model:{asset}" in self.failures:
                continue
            try:
                as_of = self.forecaster.resolve_as_of(asset, None)
                prep = self.forecaster.cached(asset, as_of) or await asyncio.wait_for(
                    loop.run_in_executor(self.prepare_pool, self.forecaster.prepare, asset, as_of),
                    float(self.s.prepare.timeout_s))
                self.latest[asset] = prep
                self.failures.pop(f"data:{asset}", None)
            except Exception as exc:  # noqa: BLE001
                self.failures[f"data:{asset}"] = f"{type(exc).__name__}: {exc}"
                continue
            age = (pd.Timestamp.now(tz="UTC") - prep.as_of).total_seconds()
            self.metrics.set_freshness(asset, prep.freshness_hours, prep.stale_groups, critical, age)
        self.metrics.load_scores(self.scores_path, int(self.s.metrics.rolling_days))
        self._set_ready_gauge()

    @property
    def scores_path(self):
        from pathlib import Path

        return Path(self.s.nightly.out_dir) / "scores.parquet"

    # -- readiness -------------------------------------------------------------------------------
    def readiness(self) -> Readiness:
        reasons: list[str] = []
        if self.warmup_error:
            reasons.append(f"warm-up failed: {self.warmup_error}")
        elif not self.warmed:
            reasons.append("warming up")
        critical = set(self.s.ready.critical_groups)
        max_age_h = self.s.ready.max_data_age_hours
        fresh = True
        assets: dict[str, dict[str, object]] = {}
        now = pd.Timestamp.now(tz="UTC")
        required = self.forecaster.required_assets()
        optional_missing = {f"model:{a}" for a in self.forecaster.assets if a not in required} & set(self.failures)
        for asset in self.forecaster.assets:
            prep = self.latest.get(asset)
            if prep is None:
                assets[asset] = {"prepared": False}
                if f"model:{asset}" in optional_missing:
                    continue          # no model for an optional asset: listed with its reason, not "stale"
                if self.warmed:
                    fresh = False
                    reasons.append(f"{asset}: no prepared model at the latest data")
                continue
            stale = sorted(critical & (set(prep.stale_groups) | set(prep.feature_groups_missing)))
            age_h = (now - prep.as_of).total_seconds() / 3600.0
            too_old = max_age_h is not None and age_h > float(max_age_h)
            assets[asset] = {"prepared": True, "as_of": prep.as_of.isoformat(), "model_version": prep.model_version,
                             "stale_critical_groups": stale, "data_age_hours": round(age_h, 2),
                             "regime": prep.regime}
            if stale:
                fresh = False
                reasons.append(f"{asset}: critical feature groups stale {stale}")
            if too_old:
                fresh = False
                reasons.append(f"{asset}: last price {age_h:.1f} h old > serving.ready.max_data_age_hours={max_age_h}")
        for who, why in sorted(self.failures.items()):
            reasons.append(f"{who}: {why}")
        for asset, st in self.forecaster.status().items():
            assets.setdefault(asset, {}).update(st)
        model_loaded = self.forecaster is not None and self.warmup_error is None
        ready = model_loaded and self.warmed and fresh and not (set(self.failures) - optional_missing)
        versions = sorted({p.model_version for p in self.latest.values()})
        return Readiness(ready=ready, model_loaded=model_loaded, warmed_up=self.warmed, data_fresh=fresh,
                         reasons=reasons, model_name=str(self.forecaster.model_name),
                         model_version=",".join(versions) or None, assets=assets)

    def _set_ready_gauge(self) -> None:
        r = self.readiness()
        self.metrics.ready.set(1.0 if r.ready else 0.0)
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(r.model_name, r.model_version or "none").set(1)

    def _record_failure(self, asset: str, exc: BaseException) -> None:
        self.failures[asset] = f"{type(exc).__name__}: {exc}"
        self.metrics.ready.set(0.0)

    # -- one forecast -----------------------------------------------------------------------------
    def validate(self, req: ForecastRequest):
        self.forecaster.require_asset(req.asset_id)
        num_paths = self.default_paths if req.num_paths is None else req.num_paths
        levels = self.default_levels if req.quantiles is None else req.quantiles
        horizon, num_paths, levels, ks = validate_request(req.horizon, num_paths, levels, req.thresholds or (),
                                                          self.limits)
        overrides = dict(req.scenario_overrides or {})
        bad = [k for k, v in overrides.items() if not np.isfinite(v)]
        if bad:
            raise InvalidParameterError("scenario_overrides", bad, "finite numbers")
        return horizon, num_paths, levels, ks, overrides

    async def _prepare(self, asset: str, as_of: pd.Timestamp, timeout_s: float) -> Prepared:
        hit = self.forecaster.cached(asset, as_of)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                asyncio.shield(loop.run_in_executor(self.prepare_pool, self.forecaster.prepare, asset, as_of)),
                timeout_s)
        except TimeoutError:
            raise BatchTimeoutError(
                f"preparing the model for {asset} as of {as_of.isoformat()} took longer than {timeout_s:g} s"
            ) from None

    async def forecast(self, req: ForecastRequest, request_id: str, *, log: bool = True,
                       timeout_s: float | None = None, route: str = "/forecast") -> ForecastResponse:
        t0 = time.perf_counter()
        fields: dict = {"asset_id": req.asset_id, "as_of": req.as_of}
        try:
            horizon, num_paths, levels, ks, overrides = self.validate(req)
            as_of = self.forecaster.resolve_as_of(req.asset_id, req.as_of)
            fields["as_of"] = as_of.isoformat()
            prep = await self._prepare(req.asset_id, as_of, float(timeout_s or self.s.prepare.timeout_s))
            if overrides:
                prep = await asyncio.get_running_loop().run_in_executor(
                    self.prepare_pool, self.forecaster.scenario, prep, overrides)
            job = ForecastJob(prep, horizon, num_paths, self.calibration.needed_levels(levels), ks, self.seed)
            resp = await self.batcher.submit(Work(job, levels, bool(overrides), overrides, request_id),
                                             timeout_s)
        except Exception as exc:  # noqa: BLE001 - mapped to a typed error below
            err = self._as_served_error(req.asset_id, exc)
            if log:
                body = error_body(err, request_id)
                self.log.write(request_id=request_id, route=route, status=body.status_code,
                               outcome=outcome_of(body.status_code), latency_ms=_ms(t0), error=body.error,
                               detail=body.detail, **fields)
            raise err from None
        self.failures.pop(req.asset_id, None)
        resp.latency_ms = _ms(t0)
        self.metrics.paths.labels(resp.asset_id).inc(resp.num_paths)
        self.metrics.forecasts.labels(resp.asset_id, resp.calibration.regime, str(resp.conditional).lower()).inc()
        if log:
            last = resp.quantiles[-1].quantiles
            self.log.write(request_id=request_id, route=route, status=200, outcome="ok",
                           latency_ms=resp.latency_ms, asset_id=resp.asset_id, as_of=resp.as_of,
                           input_hash=resp.input_hash, model_version=resp.model_version,
                           calibration_version=resp.calibration_version, horizon=resp.horizon,
                           num_paths=resp.num_paths, conditional=resp.conditional,
                           p05=last.get("q05"), p50=last.get("q50"), p95=last.get("q95"))
        return resp

    def _as_served_error(self, asset: str, exc: BaseException) -> BaseException:
        """Client errors pass through; a model/data failure becomes a 503 that /ready shows."""
        if isinstance(exc, AuroraError) and not isinstance(exc, ModelUnavailableError):
            return exc
        if isinstance(exc, BatchTimeoutError) or type(exc).__name__ == "OverloadedError":
            return exc
        if not isinstance(exc, ModelUnavailableError):
            exc = ModelUnavailableError(f"model or data failure for {asset}: {type(exc).__name__}: {exc}")
        self._record_failure(asset, exc)
        return exc

    # -- the batch function (worker thread) -----------------------------------------------------
    def _batch_fn(self, works: list[Work]) -> list[ForecastResponse | BaseException]:
        sims = self.forecaster.simulate([w.job for w in works])
        if self.forecaster.fixed_shapes:
            self.metrics.compiled.set(self.forecaster.compiled_shapes())
        out: list[ForecastResponse | BaseException] = []
        calibrated: dict[tuple, tuple] = {}  # equal simulations and levels calibrate equally
        for w, sim in zip(works, sims):
            if isinstance(sim, BaseException):
                out.append(sim)
                continue
            try:
                out.append(self._respond(w, sim, calibrated))
            except Exception as exc:  # noqa: BLE001 - this request only
                out.append(exc)
        return out

    def _respond(self, w: Work, sim, memo: dict) -> ForecastResponse:
        job, prep = w.job, w.job.prepared
        key = f"{prep.asset_id}|{prep.as_of.isoformat()}|{w.request_id}"
        drivers = self._drivers_body(sim.extras) if prep.is_engine else None
        memo_key = None if w.conditional else (job.sim_key, job.levels, w.requested)
        if memo_key in memo:
            cal_q, cal_body, cal_version = memo[memo_key]
        else:
            cal_q, cal_body, cal_version = self.calibration.apply(
                prep.asset_id, prep.regime, prep.vol_z, job.levels, sim.quantiles, w.requested, w.conditional, key)
            if memo_key is not None:
                memo[memo_key] = (cal_q, cal_body, cal_version)
        col = {lv: j for j, lv in enumerate(job.levels)}
        names = [quantile_column(lv) for lv in w.requested]
        rows = []
        for k in range(job.horizon):
            rows.append(QuantileRow(
                step=k + 1, ds=prep.dates[k].isoformat(),
                quantiles={n: float(cal_q[k, j]) for j, n in enumerate(names)},
                raw={n: float(sim.quantiles[k, col[lv]]) for n, lv in zip(names, w.requested)},
            ))
        return ForecastResponse(
            request_id=w.request_id, asset_id=prep.asset_id, as_of=prep.as_of.isoformat(), horizon=job.horizon,
            num_paths=sim.num_paths, spot=prep.spot, conditional=w.conditional, scenario_overrides=w.overrides,
            quantiles=rows, thresholds=[ThresholdProbability(**t) for t in sim.thresholds], calibration=cal_body,
            feature_groups_used=list(prep.feature_groups_used),
            feature_groups_missing=list(prep.feature_groups_missing), stale_groups=list(prep.stale_groups),
            model_name=prep.model_name, model_version=prep.model_version, calibration_version=cal_version,
            input_hash=prep.input_hash, latency_ms=0.0, drivers=drivers,
        )

    @staticmethod
    def _drivers_body(extras: dict) -> DriversBody:
        """The response's ``drivers`` (aurora_jax.forecast.explain.drivers_for) or why there are none."""
        d = extras.get("drivers")
        if d is None:
            return DriversBody(status="unavailable", reliable=False, note=str(extras.get("drivers_note", "")))
        body = msgspec.convert({"status": "ok" if d["reliable"] else "unreliable",
                                **{k: d[k] for k in ("horizon", "reliable", "upside", "downside", "trend")}},
                               DriversBody, strict=False)
        body.min_fidelity = extras.get("min_fidelity")
        body.surrogate_engine_version = (d.get("surrogate") or {}).get("engine_version")
        if not body.reliable:
            weak = [r for r in ("upside", "downside", "trend") if not d[r]["reliable"]]
            body.note = f"surrogate fidelity below explain.min_fidelity for {weak}: no drivers given for them"
        return body

    # -- many forecasts in one call -----------------------------------------------------------------
    async def forecast_batch(self, body: BatchRequest | BatchBody, request_id: str) -> BatchResponse:
        t0 = time.perf_counter()
        items = body.items
        limit = int(self.s.max_batch_items)
        if len(items) > limit:
            raise InvalidParameterError("items", f"{len(items)} items", f"1 .. {limit} items (serving.max_batch_items)")
        timeout = float(self.s.batch_item_timeout_s)

        async def one(i: int, raw) -> BatchItemResult:
            rid = f"{request_id}-{i}"
            try:
                req = raw if isinstance(raw, ForecastRequest) else msgspec.convert(raw, ForecastRequest, strict=False)
            except msgspec.ValidationError as exc:
                err = msgspec_error_body(exc, rid)
                self.log.write(request_id=rid, route="/forecast/batch", status=err.status_code,
                               outcome=outcome_of(err.status_code), error=err.error, detail=err.detail,
                               latency_ms=_ms(t0))
                return BatchItemResult(index=i, ok=False, status_code=err.status_code, error=err)
            try:
                res = await self.forecast(req, rid, timeout_s=timeout, route="/forecast/batch")
                return BatchItemResult(index=i, ok=True, status_code=200, result=res)
            except Exception as exc:  # noqa: BLE001 - per item
                err: ErrorBody = error_body(exc, rid)
                return BatchItemResult(index=i, ok=False, status_code=err.status_code, error=err)

        results = await asyncio.gather(*(one(i, raw) for i, raw in enumerate(items)))
        ok = sum(r.ok for r in results)
        return BatchResponse(request_id=request_id, succeeded=ok, failed=len(results) - ok, items=list(results),
                             latency_ms=_ms(t0))


def _ms(t0: float) -> float:
    return round(1e3 * (time.perf_counter() - t0), 3)

"""The Litestar app: ``POST /forecast``, ``POST /forecast/batch``, ``GET /health``, ``/ready``,
``/metrics``, ``/models``; OpenAPI at ``/schema`` (generated from :mod:`serving.schemas`).

``create_app(cfg, store=None)`` builds everything from the config (no global state: each app owns
its forecaster, batcher, metrics registry and request log); ``run(cfg, targets, run_dir)`` is
``just serve``: it starts uvicorn on ``serving.host:serving.port``.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from litestar import Controller, Litestar, MediaType, Request, Response, get, post
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from omegaconf import DictConfig

from aurora_jax.data.store import MarketStore
from aurora_jax.errors import ConfigError
from serving.calibration import CalibrationService
from serving.errors import error_body
from serving.forecaster import BaselineForecaster, EngineForecaster
from serving.metrics import CONTENT_TYPE, ServiceMetrics
from serving.reqlog import RequestLog, outcome_of
from serving.schemas import (
    BatchBody,
    BatchResponse,
    ErrorBody,
    ForecastRequest,
    ForecastResponse,
    Health,
    ModelEntry,
    ModelsBody,
    Readiness,
)
from serving.service import ForecastService

ERRORS = {
    400: ResponseSpec(ErrorBody, description="The body is not JSON"),
    404: ResponseSpec(ErrorBody, description="Unknown asset (the known ones are listed)"),
    413: ResponseSpec(ErrorBody, description="Body over serving.max_body_bytes"),
    422: ResponseSpec(ErrorBody, description="A field is out of range or malformed (named, with what is allowed), "
                                             "or as_of is beyond the data (last available timestamp)"),
    503: ResponseSpec(ErrorBody, description="Model or data failure, timeout or overload (reason given)"),
}
ROUTES = ("/forecast", "/forecast/batch", "/scenario", "/health", "/ready", "/metrics", "/models")
_RID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def route_label(path: str) -> str:
    """Bounded label set for metrics."""
    path = path.rstrip("/") or "/"
    if path in ROUTES:
        return path
    return "/schema" if path.startswith("/schema") else "other"


def request_id_of(scope: Scope) -> str:
    return scope.get("state", {}).get("request_id") or uuid.uuid4().hex[:16]


def observe_middleware(metrics: ServiceMetrics, log: RequestLog, skip: frozenset[str] = frozenset()):
    """Request id (``x-request-id`` in and out), latency and status metrics for every request,
    and a log line for every request the forecast handler did not log itself (routes in
    ``skip``, e.g. the scrapes of ``/metrics``, are not logged)."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            t0 = time.perf_counter()
            given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
            rid = given if _RID.match(given) else uuid.uuid4().hex[:16]
            scope.setdefault("state", {})["request_id"] = rid
            status = {"code": 500}

            async def wrapped(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                await send(message)

            try:
                await app(scope, receive, send=wrapped)
            finally:
                route = route_label(scope["path"])
                metrics.observe_request(route, scope["method"], status["code"], time.perf_counter() - t0)
                if not scope["state"].get("logged") and route not in skip:
                    log.write(request_id=rid, route=route, method=scope["method"], status=status["code"],
                              outcome=outcome_of(status["code"]), latency_ms=round(1e3 * (time.perf_counter() - t0), 3))
        return middleware

    return factory


def error_handler(request: Request, exc: Exception) -> Response:
    body = error_body(exc, request.scope.get("state", {}).get("request_id"))
    return Response(body, status_code=body.status_code, media_type=MediaType.JSON)


class ForecastController(Controller):
    path = "/forecast"
    tags = ("forecast",)

    @post("/", status_code=200, summary="Forecast one asset",
          description="Quantile cone per step, threshold probabilities and calibration info. "
                      "Requests with scenario_overrides are labelled conditional.",
          responses=ERRORS)
    async def forecast(self, data: ForecastRequest, request: Request, service: ForecastService) -> ForecastResponse:
        request.scope["state"]["logged"] = True  # the service writes this request's log line
        return await service.forecast(data, request_id_of(request.scope))

    @post("/batch", status_code=200, summary="Forecast many (asset, as_of, horizon) items",
          description="Each item is a ForecastRequest object; a bad item fails only itself "
                      "(its error is reported in its slot).",
          responses={k: v for k, v in ERRORS.items() if k in (400, 413, 422)})
    async def batch(self, data: BatchBody, request: Request, service: ForecastService) -> BatchResponse:
        return await service.forecast_batch(data, request_id_of(request.scope))


class OpsController(Controller):
    tags = ("operations",)

    @get("/health", summary="Liveness")
    async def health(self) -> Health:
        return Health(status="ok")

    @get("/ready", summary="Readiness: model loaded and warmed up, data fresh, no model/data failure")
    async def ready(self, service: ForecastService) -> Response[Readiness]:
        r = service.readiness()
        return Response(r, status_code=200 if r.ready else 503)

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE)
    async def metrics(self, service: ForecastService) -> Response[bytes]:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @get("/models", summary="Model versions in use and the active one")
    async def models(self, service: ForecastService) -> ModelsBody:
        latest = {p.model_version for p in service.latest.values()}
        engine = isinstance(service.forecaster, EngineForecaster)
        entries = [] if engine else [
            ModelEntry(version=m["version"], name=str(service.forecaster.model_name), active=m["version"] in latest,
                       source="fitted", detail={"fits": m["fits"]}) for m in service.forecaster.models()]
        fits = {m["version"]: m["fits"] for m in service.forecaster.models()} if engine else {}
        for e in registry_entries(service.cfg, latest if engine else set()):
            if e["version"] in fits:
                e["detail"]["fits"] = fits[e["version"]]
            entries.append(ModelEntry(**e))
        return ModelsBody(active=",".join(sorted(latest)) or None, model_name=str(service.forecaster.model_name),
                          models=entries)


def registry_entries(cfg: DictConfig, active: set[str] | None = None) -> list[dict]:
    """Trained engine versions in the registry (aurora_jax.train.registry); ``active``: the versions
    the service serves (None: the newest per asset when ``model.name`` is ``aurora``)."""
    try:
        from aurora_jax.train.registry import list_entries, registry_dir
    except ImportError:  # the registry module is optional for the baseline
        return []
    try:
        entries = list_entries(registry_dir(cfg))
    except Exception:  # noqa: BLE001 - an unreadable registry is not a request error
        return []
    newest = {e.asset_id: e.version for e in entries}  # oldest first, so the last one wins
    serving_engine = str(cfg.model.name) == "aurora"

    def is_active(e) -> bool:
        if active is not None:
            return e.version in active
        return serving_engine and newest[e.asset_id] == e.version

    return [{"version": e.version, "name": "aurora", "active": is_active(e),
             "source": "registry", "detail": {"asset_id": e.asset_id, "experiment": e.experiment,
                                              "created_at": e.created_at, "git_sha": e.git_sha}}
            for e in entries]


def serving_assets(cfg: DictConfig, store: MarketStore) -> list[str]:
    """``serving.assets``, else every asset in the store except the shared pseudo-assets."""
    in_store = store.assets()
    if cfg.serving.assets is not None:
        wanted = [str(a) for a in cfg.serving.assets]
        missing = [a for a in wanted if a not in in_store]
        if missing:
            raise ConfigError(f"serving.assets {missing} are not in the store at {store.root}: known {in_store}")
        return wanted
    shared = set(cfg.data.shared_assets)
    return [a for a in in_store if a not in shared]


def build_forecaster(cfg: DictConfig, store: MarketStore):
    """The forecaster named by ``model.name``: the trained engine for ``aurora`` (``model=engine``),
    else the fitted baseline (``garch_t`` | ``bootstrap``); see serving/forecaster.py."""
    assets = serving_assets(cfg, store)
    if not assets:
        raise ConfigError(f"no forecastable asset in the store at {store.root}: run `just ingest` first")
    s = cfg.serving
    if str(cfg.model.name) == "aurora":
        return EngineForecaster(cfg, store, assets, cache_size=int(s.prepare.cache_size))
    return BaselineForecaster(cfg, store, assets, cache_size=int(s.prepare.cache_size),
                              large_paths=int(s.batch.large_paths))


def create_app(cfg: DictConfig, store: MarketStore | None = None, forecaster=None,
               log: RequestLog | None = None) -> Litestar:
    from aurora_jax.forecast.api import open_store

    s = cfg.serving
    store = store or open_store(cfg)
    forecaster = forecaster or build_forecaster(cfg, store)
    metrics = ServiceMetrics(list(s.metrics.latency_buckets), list(s.batch.buckets))
    log = log or RequestLog(s.log.path)
    calibration = CalibrationService(cfg.calibration, Path(s.calibration_dir))
    service = ForecastService(cfg, forecaster, calibration, metrics, log)

    async def startup() -> None:
        await service.start()

    async def shutdown() -> None:
        await service.stop()

    from serving.scenario import ScenarioController, scenario_dependencies

    app = Litestar(
        route_handlers=[ForecastController, OpsController, ScenarioController],
        dependencies={"service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
                      **scenario_dependencies(cfg, store, calibration, forecaster)},
        exception_handlers={Exception: error_handler},
        middleware=[observe_middleware(metrics, log, frozenset(s.log.skip_routes))],
        on_startup=[startup],
        on_shutdown=[shutdown],
        request_max_body_size=int(s.max_body_bytes),
        openapi_config=OpenAPIConfig(title="aurora_jax forecast service", version="1.0.0", path="/schema"),
        debug=False,
    )
    app.state.service = service
    return app


def run(cfg: DictConfig, targets: list[str] | None = None, run_dir: Path | None = None) -> None:
    """``just serve [serving.port=8000] [experiment=btc_daily]``: uvicorn with the configured model."""
    import uvicorn

    s = cfg.serving
    app = create_app(cfg)
    print(f"serving {cfg.model.name} on http://{s.host}:{s.port} (OpenAPI at /schema)", flush=True)
    uvicorn.run(app, host=str(s.host), port=int(s.port), log_level=str(s.log_level), access_log=False)

"""``POST /scenario``: a what-if forecast with the trained engine (aurora_jax.forecast.scenario).

The body names the asset, the as-of (null = the latest data) and at least one whitelisted
override; the response holds the base cone, the scenario cone (same engine, same random key,
same as-of) and their difference, the conditioning entries the override changed, the drivers of
both cones when a surrogate is saved for the engine version, and ``conditional: true``.

When the service serves the engine (``model=engine``), both cones come from its forecaster
(:class:`serving.forecaster.EngineForecaster`): the prepared base forecast of ``/forecast`` (same
LRU), the what-if inputs of :func:`aurora_jax.forecast.api.with_overrides`, and ONE compiled call
of the warmed shapes for both cones (same key as ``/forecast``'s, so the base cone is the
``/forecast`` cone and nothing compiles on a request). Otherwise (the service serves a baseline)
the engine is loaded here and :func:`aurora_jax.forecast.scenario.run_scenario` runs it.

Both cones are calibrated like forecasts but with ``conditional=True``: the conformal layer
remembers their keys and refuses any update with them, and this service never updates or saves a
calibrator, so scenario outputs never enter the calibration buffers. Bad overrides are 422 with
the field (``scenario_overrides.<name>``) and the reason; no trained engine for the asset is 503.

Wiring (``serving/app.py``)::

    from serving.scenario import ScenarioController, scenario_dependencies
    Litestar(route_handlers=[..., ScenarioController],
             dependencies={"service": ..., **scenario_dependencies(cfg, store, calibration)})
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np
import pandas as pd
from litestar import Controller, Request, post
from litestar.di import Provide
from omegaconf import DictConfig

from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.forecast.api import validate_request
from aurora_jax.forecast.quantiles import quantile_column
from aurora_jax.forecast.scenario import (
    Cone,
    EngineHandle,
    ScenarioBase,
    ScenarioResult,
    load_engine,
    prepare_base,
    run_scenario,
)
from serving.calibration import CalibrationService
from serving.forecaster import LRU, parse_as_of
from serving.schemas import (
    MAX_LEVELS,
    MAX_OVERRIDES,
    MAX_THRESHOLDS,
    AsOf,
    AssetId,
    CalibrationBody,
    Horizon,
    Level,
    NumPaths,
    Price,
    QuantileRow,
    ThresholdProbability,
)


class ScenarioRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    asset_id: AssetId
    overrides: Annotated[dict[str, float], msgspec.Meta(
        min_length=1, max_length=MAX_OVERRIDES,
        description="whitelisted input -> value: iv_30d_atm, iv_skew, corr_btc, funding_rate, "
                    "gamma_squeeze_index, inventory_unwind_index",
        examples=[{"iv_30d_atm": 90.0}])]
    as_of: AsOf | None = None
    horizon: Horizon = 14
    quantiles: Annotated[list[Level], msgspec.Meta(min_length=1, max_length=MAX_LEVELS)] | None = None
    thresholds: Annotated[list[Price], msgspec.Meta(max_length=MAX_THRESHOLDS)] | None = None
    num_paths: NumPaths | None = None


class ConeBody(msgspec.Struct, kw_only=True):
    regime: str                               # calm | normal | volatile (of this cone's conditioning set)
    quantiles: list[QuantileRow]
    thresholds: list[ThresholdProbability]
    calibration: CalibrationBody
    drivers: dict | None                      # aurora_jax.forecast.explain.drivers_for (null: no surrogate saved)


class DifferenceRow(msgspec.Struct, kw_only=True):
    step: int
    ds: str
    quantiles: dict[str, float]               # scenario - base, calibrated
    raw: dict[str, float]                     # scenario - base, raw


class InputChange(msgspec.Struct, kw_only=True):
    input: str
    base: float | list[float]
    scenario: float | list[float]


class ScenarioResponse(msgspec.Struct, kw_only=True):
    request_id: str
    asset_id: str
    as_of: str
    horizon: int
    num_paths: int
    spot: float
    conditional: bool                         # always true: a what-if, never a forecast of record
    overrides: dict[str, float]
    model_name: str
    model_version: str
    calibration_version: str
    base: ConeBody
    scenario: ConeBody
    difference: list[DifferenceRow]
    inputs_changed: list[InputChange]
    key: str                                  # hex of the PRNG key both cones used
    latency_ms: float


class ScenarioService:
    """Engines, base conditioning sets (LRU per asset / as-of / version) and calibration."""

    def __init__(self, cfg: DictConfig, store, calibration: CalibrationService | None = None, forecaster=None):
        from aurora_jax.train.pipeline import engine_config

        self.cfg = engine_config(cfg)
        self.store = store
        self.forecaster = forecaster if getattr(forecaster, "fixed_shapes", False) else None
        s = self.cfg.serving
        self.calibration = calibration or CalibrationService(self.cfg.calibration, Path(s.calibration_dir))
        self.bases: LRU = LRU(int(s.prepare.cache_size))
        self.engines: dict[str, EngineHandle] = {}
        self.surrogates: dict[str, object] = {}
        self.default_levels = tuple(float(q) for q in self.cfg.quantiles)
        self.default_paths = int(s.default_num_paths)
        self.timeout_s = float(s.prepare.timeout_s) + float(s.batch.timeout_s)
        from types import SimpleNamespace

        self.limits = SimpleNamespace(max_horizon=int(self.cfg.forecast.max_horizon),
                                      min_paths=int(self.cfg.forecast.min_paths),
                                      max_paths=min(int(s.max_paths), int(self.cfg.forecast.max_paths)))
        self._lock = threading.Lock()

    def engine(self, asset_id: str) -> EngineHandle:
        with self._lock:
            hit = self.engines.get(asset_id)
            if hit is None:
                hit = load_engine(self.cfg, asset_id)
                self.engines[asset_id] = hit
            return hit

    def surrogate(self, engine: EngineHandle):
        """The saved surrogate of the engine version (never fitted inside a request)."""
        from aurora_jax.forecast.explain.fit import surrogate_path
        from aurora_jax.forecast.explain.surrogate import Surrogate

        if engine.version not in self.surrogates:
            p = surrogate_path(self.cfg, engine.version)
            self.surrogates[engine.version] = Surrogate.load(p) if p.exists() else None
        return self.surrogates[engine.version]

    def base(self, engine: EngineHandle, asset_id: str, as_of: pd.Timestamp | None) -> ScenarioBase:
        key = (asset_id, None if as_of is None else as_of.value, engine.version)
        hit = self.bases.get(key)
        if hit is None:
            hit = prepare_base(self.store, asset_id, as_of, self.cfg, engine.params.vol_path)
            self.bases.put(key, hit)
        return hit

    def _cone(self, res, cone: Cone, name: str, requested: tuple[float, ...], request_id: str):
        cal_q, body, version = self.calibration.apply(
            res.asset_id, cone.regime, None, res.levels, cone.quantiles, requested, True,
            f"{res.calibration_key(name, 0)}|{request_id}")
        col = {lv: j for j, lv in enumerate(res.levels)}
        names = [quantile_column(lv) for lv in requested]
        raw = cone.quantiles[:, [col[lv] for lv in requested]]
        rows = [QuantileRow(step=k + 1, ds=res.dates[k].isoformat(),
                            quantiles={n: float(cal_q[k, j]) for j, n in enumerate(names)},
                            raw={n: float(raw[k, j]) for j, n in enumerate(names)}) for k in range(res.horizon)]
        th = [ThresholdProbability(**t) for t in cone.thresholds]
        return ConeBody(regime=cone.regime, quantiles=rows, thresholds=th, calibration=body,
                        drivers=cone.drivers), cal_q, raw, version

    def run(self, req: ScenarioRequest, request_id: str) -> ScenarioResponse:
        """The whole request (blocking; :meth:`handle` runs it in a worker thread)."""
        t0 = time.perf_counter()
        num_paths = self.default_paths if req.num_paths is None else req.num_paths
        requested = self.default_levels if req.quantiles is None else tuple(req.quantiles)
        horizon, num_paths, requested, ks = validate_request(req.horizon, num_paths, requested,
                                                             req.thresholds or (), self.limits)
        self.store.require_asset(req.asset_id)
        if self.forecaster is not None:
            res = self._fixed_shape_result(req, horizon, num_paths, requested, ks)
            return self._response(res, requested, request_id, t0)
        as_of = parse_as_of(req.as_of)
        engine = self.engine(req.asset_id)
        base = self.base(engine, req.asset_id, as_of)
        levels = self.calibration.needed_levels(requested)
        res = run_scenario(engine, base, req.overrides, self.cfg, horizon=horizon, num_paths=num_paths,
                           levels=levels, thresholds=ks, surrogate=self.surrogate(engine))
        return self._response(res, requested, request_id, t0)

    def _fixed_shape_result(self, req: ScenarioRequest, horizon: int, num_paths: int,
                            requested: tuple[float, ...], ks: tuple[float, ...]) -> ScenarioResult:
        """Both cones from the service's engine forecaster (module docstring)."""
        import jax

        from aurora_jax.forecast import api
        from aurora_jax.forecast.scenario import input_changes, key_hex

        f = self.forecaster
        prep = f.prepare(req.asset_id, f.resolve_as_of(req.asset_id, req.as_of))
        if horizon > prep.engine.params.horizon_max:
            raise InvalidParameterError("horizon", horizon, f"an integer in [1, {prep.engine.params.horizon_max}]")
        scen = f.scenario(prep, dict(req.overrides))
        base_f, scen_f = prep.forecast, scen.forecast
        sims = api.simulate_engine([base_f, scen_f], [num_paths, num_paths], batch_buckets=f.batch_buckets,
                                   path_buckets=f.path_buckets)
        for s in sims:
            if isinstance(s, BaseException):
                raise s
        levels = self.calibration.needed_levels(requested)
        sur = f.surrogate(base_f.engine) if f.drivers_on else None
        cones = []
        for pf, sim in zip((base_f, scen_f), sims):
            q = sim.quantiles(horizon, levels)
            drivers = None if sur is None else api.drivers_of(pf, sim, horizon, sur, f.explain_cfg)
            cones.append(Cone(q, sim.thresholds(horizon, ks), int(np.asarray(pf.inputs.regime_id)), drivers))
        return ScenarioResult(
            asset_id=base_f.asset_id, as_of=base_f.as_of, horizon=horizon, num_paths=num_paths, spot=base_f.spot,
            model_version=base_f.model_version, levels=tuple(levels), dates=base_f.dates, overrides=dict(scen_f.overrides),
            base=cones[0], scenario=cones[1], changes=input_changes(base_f.inputs, scen_f.inputs),
            key=key_hex(jax.random.key(base_f.key_seed)),
        )

    def _response(self, res: ScenarioResult, requested: tuple[float, ...], request_id: str,
                  t0: float) -> ScenarioResponse:
        b_body, b_cal, b_raw, version = self._cone(res, res.base, "base", requested, request_id)
        s_body, s_cal, s_raw, _ = self._cone(res, res.scenario, "scenario", requested, request_id)
        names = [quantile_column(lv) for lv in requested]
        diff = [DifferenceRow(step=k + 1, ds=res.dates[k].isoformat(),
                              quantiles={n: float(s_cal[k, j] - b_cal[k, j]) for j, n in enumerate(names)},
                              raw={n: float(s_raw[k, j] - b_raw[k, j]) for j, n in enumerate(names)})
                for k in range(res.horizon)]
        return ScenarioResponse(
            request_id=request_id, asset_id=res.asset_id, as_of=res.as_of.isoformat(), horizon=res.horizon,
            num_paths=res.num_paths, spot=res.spot, conditional=res.conditional, overrides=res.overrides,
            model_name="aurora", model_version=res.model_version, calibration_version=version, base=b_body,
            scenario=s_body, difference=diff, inputs_changed=[InputChange(**c) for c in res.changes], key=res.key,
            latency_ms=round(1e3 * (time.perf_counter() - t0), 3),
        )

    async def handle(self, req: ScenarioRequest, request_id: str) -> ScenarioResponse:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.run, req, request_id), self.timeout_s)
        except TimeoutError:
            raise ModelUnavailableError(
                f"the scenario for {req.asset_id} took longer than {self.timeout_s:g} s") from None


class ScenarioController(Controller):
    path = "/scenario"
    tags = ["scenario"]  # noqa: RUF012 - Litestar reads a list

    @post("/", status_code=200, summary="What-if forecast: override whitelisted inputs",
          description="Base and scenario cones for the same as-of and random key, their difference, the "
                      "conditioning entries that changed and the drivers; labelled conditional. Overrides "
                      "outside their sanity bounds or inconsistent with each other are 422 with the reason.")
    async def scenario(self, data: ScenarioRequest, request: Request,
                       scenario_service: ScenarioService) -> ScenarioResponse:
        rid = request.scope.get("state", {}).get("request_id") or request.headers.get("x-request-id") or "scenario"
        return await scenario_service.handle(data, str(rid))


def scenario_dependencies(cfg: DictConfig, store, calibration: CalibrationService | None = None,
                          forecaster=None) -> dict:
    """``{"scenario_service": Provide(...)}`` for the app's ``dependencies`` (``forecaster``: the
    service's engine forecaster, whose prepared forecasts and compiled shapes are reused)."""
    service = ScenarioService(cfg, store, calibration, forecaster)
    return {"scenario_service": Provide(lambda: service, use_cache=True, sync_to_thread=False)}

"""The service's forecasters: the two halves of :func:`aurora_jax.forecast.api.forecast`.

* ``prepare(asset, as_of)`` -- :func:`aurora_jax.forecast.api.prepare` (snapshot, fit or engine
  inputs: the expensive part, which reads the store) plus the calibration regime, done once per
  ``(asset, as_of[, model version, EWAF state])`` and kept in a bounded LRU (a miss runs in the
  service's prepare pool, never inside a batch);
* ``simulate(jobs)`` -- the batch function: one simulation per distinct ``sim_key`` (requests
  asking the same simulation share it), then each job's own quantile levels, thresholds and,
  for the engine, drivers from the shared paths. Errors stay with their jobs.

Both call the library's own functions (no copy of the fit, the seed rule or the simulator), so a
request gives the numbers :func:`~aurora_jax.forecast.api.forecast` gives for it.

:class:`BaselineForecaster` (``model.name`` garch_t | bootstrap): numpy, nothing compiled; a
simulation has exactly the requested horizon.

:class:`EngineForecaster` (``model.name`` aurora): the latest registered engine per asset. Every
simulation has the engine's ``horizon_max`` steps and the path bucket of its ``num_paths``
(``serving.engine.path_buckets``; the horizon is a slice), and distinct simulations of one
collection window that share an engine version and a path bucket run in vmapped calls whose
sizes are batch buckets (``serving.engine.batch_buckets``, largest first, no padding while the
smallest bucket fits: :func:`aurora_jax.forecast.api.batch_pieces`), so the compiled shapes are
``len(path_buckets) x len(batch_buckets)`` per engine architecture, all compiled by
:meth:`EngineForecaster.warmup` before ``/ready``. Requests above the largest path bucket simulate
the next multiple of it, one at a time; that shape is compiled on its first use (lazily, bounded
by ``max_paths / max(path_buckets)`` shapes) unless ``serving.engine.warm_large``.
A missing engine for an asset is a :class:`~aurora_jax.errors.ModelUnavailableError` with the
reason (HTTP 503, and ``/ready`` lists it); the registry is re-read on refresh, so a newly
trained engine is picked up (loaded, warmed) without a restart.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.calibrate.vol_regime import VolRegimeClassifier
from aurora_jax.data.snapshot import price_range
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import (
    DataRangeError,
    InvalidParameterError,
    ModelUnavailableError,
    UnknownAssetError,
)
from aurora_jax.forecast import api
from aurora_jax.forecast.api import MODELS, snapshot_hash  # noqa: F401 - snapshot_hash re-exported

REGIME_NAMES = ("calm", "normal", "volatile")


@dataclass(frozen=True, eq=False)
class Prepared:
    """A prepared forecast (:class:`aurora_jax.forecast.api.Prepared`, whose fields read through)
    plus the regime the calibrator uses."""

    forecast: api.Prepared
    regime: str                          # calm | normal | volatile | unknown
    vol_z: float | None                  # log-vol z-score (dynamic alpha)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "forecast":
            raise AttributeError(name)
        return getattr(self.forecast, name)


@dataclass(frozen=True)
class ForecastJob:
    """One validated request bound to its prepared forecast."""

    prepared: Prepared
    horizon: int
    num_paths: int
    levels: tuple[float, ...]            # sorted, unique: requested + calibration levels
    thresholds: tuple[float, ...]
    seed: int

    @property
    def sim_key(self) -> tuple:
        """Jobs with equal keys are one simulation. The engine always simulates its full horizon,
        so the horizon is not part of its key."""
        p = self.prepared.forecast
        h = None if p.is_engine else self.horizon
        return (id(p), p.asset_id, p.as_of.value, p.model_version, h, self.num_paths, self.seed)


@dataclass
class SimResult:
    """Raw (uncalibrated) summaries of one job's paths."""

    quantiles: np.ndarray                # (horizon, len(job.levels)) prices
    thresholds: list[dict[str, float]]
    num_paths: int
    extras: dict = field(default_factory=dict)   # drivers (engine), drivers_note


class Forecaster(Protocol):
    """What the service needs from a model.

    ``fixed_shapes`` says the forecaster pads its own calls to compiled shapes;
    ``batch_key`` groups requests that may share one call (same compiled shapes / cost class);
    ``simulate`` is the batch function: one :class:`SimResult` or exception per job.
    """

    fixed_shapes: bool
    model_name: str
    assets: list[str]

    def require_asset(self, asset_id: str) -> None: ...
    def resolve_as_of(self, asset_id: str, as_of: str | pd.Timestamp | None) -> pd.Timestamp: ...
    def cached(self, asset_id: str, as_of: pd.Timestamp) -> Prepared | None: ...
    def prepare(self, asset_id: str, as_of: pd.Timestamp) -> Prepared: ...
    def scenario(self, prepared: Prepared, overrides: dict[str, float]) -> Prepared: ...
    def batch_key(self, job: ForecastJob) -> Hashable: ...
    def simulate(self, jobs: Sequence[ForecastJob]) -> list[SimResult | BaseException]: ...
    def nightly(self, job: ForecastJob) -> SimResult: ...
    def warmup(self, horizon: int, num_paths: int, levels: Sequence[float],
               assets: Sequence[str] | None = None) -> dict: ...
    def refresh_models(self) -> dict[str, str]: ...
    def required_assets(self) -> set[str]: ...
    def has_model(self, asset_id: str) -> str | None: ...
    def models(self) -> list[dict]: ...
    def status(self) -> dict[str, dict]: ...


class LRU:
    """A small thread-safe LRU map."""

    def __init__(self, size: int):
        self.size = max(int(size), 1)
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._d:
                return None
            self._d.move_to_end(key)
            return self._d[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def values(self) -> list:
        with self._lock:
            return list(self._d.values())

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


def parse_as_of(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    """ISO-8601 -> UTC timestamp (naive means UTC); typed error naming ``as_of`` otherwise."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidParameterError("as_of", value, "an ISO-8601 timestamp in UTC, e.g. 2024-06-30T00:00:00Z",
                                    reason=str(exc)) from None
    if ts is pd.NaT or pd.isna(ts):
        raise InvalidParameterError("as_of", value, "an ISO-8601 timestamp in UTC, e.g. 2024-06-30T00:00:00Z")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def summarize(sim: api.Simulation, job: ForecastJob) -> SimResult:
    """One job's quantiles and threshold probabilities from a (shared) simulation."""
    return SimResult(quantiles=sim.quantiles(job.horizon, job.levels),
                     thresholds=sim.thresholds(job.horizon, job.thresholds), num_paths=job.num_paths)


class _Forecaster:
    """What both forecasters share: assets, as-of resolution, the prepared LRU, regimes."""

    fixed_shapes = False

    def __init__(self, cfg: DictConfig, store: MarketStore, assets: Sequence[str], cache_size: int):
        self.cfg = cfg
        self.store = store
        self.assets = sorted(assets)
        self.model_name = str(cfg.model.name)
        self.seed = int(cfg.seed)
        self.cache = LRU(cache_size)
        self.regimes = VolRegimeClassifier.from_config(cfg.calibration.regime)
        self._locks: dict[tuple, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ranges: dict[str, tuple] = {}
        self.on_simulations = None         # callback(n): distinct simulations run (the service's metric)

    def _count(self, n: int) -> None:
        if self.on_simulations is not None and n:
            self.on_simulations(n)

    def required_assets(self) -> set[str]:
        """Assets whose missing model makes the service not ready: ``serving.assets`` when it is
        set, else every asset for a fitted baseline (it fits anything with prices)."""
        return set(self.assets)

    def has_model(self, asset_id: str) -> str | None:
        """None when ``asset_id`` can be forecast, else the reason (a baseline always can)."""
        return None

    # -- request-independent part -----------------------------------------------------------------
    def require_asset(self, asset_id: str) -> None:
        if asset_id not in self.assets:
            raise UnknownAssetError(asset_id, self.assets)

    def resolve_as_of(self, asset_id: str, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
        """The as-of time a request means (``None``: the last price), range-checked like the
        snapshot does (up to one bar after the last price)."""
        self.require_asset(asset_id)
        ts = parse_as_of(as_of)
        first, last = self.price_range(asset_id)
        if ts is None:
            return last
        if ts < first or ts > last + pd.Timedelta(days=1):
            raise DataRangeError("as_of", ts.isoformat(), first.isoformat(), last.isoformat())
        return ts

    def price_range(self, asset_id: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last price time, cached until the store's manifest changes (so resolving a
        request's as-of never waits for the store while a fit is reading it)."""
        try:
            st = self.store.manifest_path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        hit = self._ranges.get(asset_id)
        if hit is None or hit[0] != stamp:
            hit = (stamp, price_range(self.store, asset_id))
            self._ranges[asset_id] = hit
        return hit[1]

    def _cache_key(self, asset_id: str, as_of: pd.Timestamp) -> tuple | None:
        return (asset_id, as_of.value)

    def cached(self, asset_id: str, as_of: pd.Timestamp) -> Prepared | None:
        key = self._cache_key(asset_id, as_of)
        return None if key is None else self.cache.get(key)

    def prepare(self, asset_id: str, as_of: pd.Timestamp) -> Prepared:
        """Prepare (or fetch) ``(asset_id, as_of)``; concurrent callers share one preparation."""
        key = self._cache_key(asset_id, as_of)
        hit = None if key is None else self.cache.get(key)
        if hit is not None:
            return hit
        lock_key = (asset_id, as_of.value)
        with self._locks_guard:
            lock = self._locks.setdefault(lock_key, threading.Lock())
        with lock:
            key = self._cache_key(asset_id, as_of)
            hit = None if key is None else self.cache.get(key)
            if hit is None:
                hit = self._prepare(asset_id, as_of)
                self.cache.put(self._cache_key(asset_id, as_of), hit)
        with self._locks_guard:
            self._locks.pop(lock_key, None)
        return hit

    def _prepare(self, asset_id: str, as_of: pd.Timestamp) -> Prepared:
        pf = api.prepare(asset_id, as_of, store=self.store, cfg=self.cfg, **self._prepare_kwargs(asset_id))
        regime, z = self._regime(asset_id, pf.history, pf.as_of)
        return Prepared(pf, regime, z)

    def _prepare_kwargs(self, asset_id: str) -> dict:
        return {}

    def _regime(self, asset_id: str, close: pd.Series, as_of: pd.Timestamp) -> tuple[str, float | None]:
        """Vol regime at ``as_of`` (aurora_jax.calibrate.vol_regime) from the closes and, where the
        asset has it, the 30-day implied vol."""
        r = np.log(close).diff().dropna()
        iv = None
        if "iv_30d_atm" in self.store.feature_names(asset_id):
            iv = self.store.series(asset_id, "iv_30d_atm", end=as_of)
        feats = self.regimes.classify(r, iv)
        if not len(feats):
            return "unknown", None
        z = float(feats["z"].iloc[-1])
        return str(feats["label"].iloc[-1]), (z if np.isfinite(z) else None)

    def refresh_models(self) -> dict[str, str]:
        """Re-read the model source (nothing for a fitted baseline); returns what changed."""
        return {}

    def status(self) -> dict[str, dict]:
        """Per asset: what /ready should show beyond the prepared forecast."""
        return {}

    def _prepared_for_warmup(self, assets: Sequence[str]) -> tuple[dict[str, Prepared], dict[str, str]]:
        done, failed = {}, {}
        for asset in assets:
            try:
                done[asset] = self.prepare(asset, self.resolve_as_of(asset, None))
            except Exception as exc:  # noqa: BLE001 - reported per asset by /ready
                failed[asset] = f"{type(exc).__name__}: {exc}"
        return done, failed


class BaselineForecaster(_Forecaster):
    """Per-(asset, as_of) fitted baseline (see module docstring)."""

    fixed_shapes = False   # numpy: no compiled shapes

    def __init__(self, cfg: DictConfig, store: MarketStore, assets: Sequence[str], cache_size: int,
                 large_paths: int):
        if cfg.model.name not in MODELS or cfg.model.name == "aurora":
            raise ModelUnavailableError(f"model.name={cfg.model.name!r} is not served by the baseline: "
                                        f"{[m for m in MODELS if m != 'aurora']}")
        super().__init__(cfg, store, assets, cache_size)
        self.large_paths = int(large_paths)

    def scenario(self, prepared: Prepared, overrides: dict[str, float]) -> Prepared:
        """What-if forecasts need a model conditioned on features; the baseline has none."""
        raise InvalidParameterError(
            "scenario_overrides", sorted(overrides),
            f"none for model.name={self.model_name}: what-if scenarios need the aurora engine",
        )

    # -- the batch function ------------------------------------------------------------------------
    def batch_key(self, job: ForecastJob) -> Hashable:
        """Cost class: large requests never share a call with small ones."""
        return "large" if job.num_paths > self.large_paths else "small"

    def simulate(self, jobs: Sequence[ForecastJob]) -> list[SimResult | BaseException]:
        """Paths per distinct ``sim_key`` (once), summaries per job; errors stay per job."""
        sims: dict[tuple, api.Simulation | BaseException] = {}
        out: list[SimResult | BaseException] = []
        self._count(len({job.sim_key for job in jobs}))
        for job in jobs:
            key = job.sim_key
            if key not in sims:
                try:
                    sims[key] = api.simulate_baseline(job.prepared.forecast, job.horizon, job.num_paths)
                except Exception as exc:  # noqa: BLE001 - reported for this job only
                    sims[key] = exc
            got = sims[key]
            if isinstance(got, BaseException):
                out.append(got)
                continue
            try:
                out.append(summarize(got, job))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def nightly(self, job: ForecastJob) -> SimResult:
        """The nightly forecast of one asset: the batch function for one job."""
        res = self.simulate([job])[0]
        if isinstance(res, BaseException):
            raise res
        return res

    # -- operations ---------------------------------------------------------------------------------
    def warmup(self, horizon: int, num_paths: int, levels: Sequence[float],
               assets: Sequence[str] | None = None) -> dict:
        """Fit every asset at its latest as-of and run one simulation (no compilation here)."""
        done, failed = self._prepared_for_warmup(list(assets or self.assets))
        for asset, prep in list(done.items()):
            res = self.simulate([ForecastJob(prep, horizon, num_paths, tuple(levels), (), self.seed)])[0]
            if isinstance(res, BaseException):
                failed[asset] = f"{type(res).__name__}: {res}"
                done.pop(asset)
        return {"assets": sorted(done), "failed": failed, "compiled_shapes": 0}

    def models(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for prep in self.cache.values():
            entry = seen.setdefault(prep.model_version, {"version": prep.model_version, "fits": []})
            entry["fits"].append(f"{prep.asset_id}@{prep.as_of.isoformat()}")
        return list(seen.values())


class EngineForecaster(_Forecaster):
    """The trained JAX engine (see module docstring)."""

    fixed_shapes = True

    def __init__(self, cfg: DictConfig, store: MarketStore, assets: Sequence[str], cache_size: int):
        from aurora_jax.train.pipeline import engine_config

        cfg = engine_config(cfg)
        super().__init__(cfg, store, assets, cache_size)
        e = cfg.serving.engine
        self.path_buckets = api.path_buckets_of(cfg)
        self.batch_buckets = tuple(sorted({int(b) for b in e.batch_buckets}))
        if not self.batch_buckets or self.batch_buckets[0] < 1:
            raise InvalidParameterError("serving.engine.batch_buckets", list(e.batch_buckets), "integers >= 1")
        self.warm_path_buckets = tuple(int(b) for b in (e.warm_path_buckets or self.path_buckets))
        self.warm_large = bool(e.warm_large)
        self.max_paths = min(int(cfg.serving.max_paths), int(cfg.forecast.max_paths))
        self.drivers_on = bool(e.drivers)
        self.fit_surrogate = bool(e.fit_surrogate)
        self.explain_cfg = cfg.model.explain
        self.engines: dict[str, api.EngineModel] = {}
        self.unavailable: dict[str, str] = {}
        self.surrogates: dict[str, object | None] = {}
        self.surrogate_notes: dict[str, str] = {}
        self.scenario_bases = LRU(max(4, cache_size // 4))
        self._engine_lock = threading.RLock()
        self.warmed_shapes: set[tuple[str, int, int]] = set()   # (version, batch, paths)
        self._inflight: dict[tuple, Future] = {}
        self._inflight_lock = threading.Lock()
        self.shared_flights = 0            # simulations awaited from another batch (single flight)

    # -- engines and surrogates ---------------------------------------------------------------------
    def engine(self, asset_id: str, train_missing: bool = False) -> api.EngineModel:
        """The loaded engine of ``asset_id`` (loaded on first use; ModelUnavailableError with the
        reason). ``train_missing`` (warm-up only, never a request): when none is registered and
        ``forecast.train_if_missing``, the experiment's small default is trained for ``cfg.asset``."""
        hit = self.engines.get(asset_id)
        if hit is not None:
            return hit
        with self._engine_lock:
            hit = self.engines.get(asset_id)
            if hit is not None:
                return hit
            train = bool(train_missing and self.cfg.forecast.get("train_if_missing"))
            try:
                hit = api.load_engine_model(self.cfg, asset_id, train_if_missing=train)
            except ModelUnavailableError as exc:
                self.unavailable[asset_id] = str(exc)
                raise
            self.engines[asset_id] = hit
            self.unavailable.pop(asset_id, None)
            return hit

    def surrogate(self, engine: api.EngineModel, fit_missing: bool = False):
        """The driver surrogate of the engine version (loaded once; fitted only when ``fit_missing``,
        i.e. at warm-up / refresh, never inside a request)."""
        v = engine.version
        if v in self.surrogates and (self.surrogates[v] is not None or not fit_missing):
            return self.surrogates[v]
        try:
            sur = api.load_surrogate(self.cfg, engine, self.store, fit_missing=fit_missing)
            note = "" if sur is not None else (
                f"no driver surrogate saved for {v} (serving.engine.fit_surrogate=false): fit one with "
                f"`just scenario` or enable serving.engine.fit_surrogate")
        except Exception as exc:  # noqa: BLE001 - drivers degrade, forecasts go on
            sur, note = None, f"fitting the driver surrogate for {v} failed: {type(exc).__name__}: {exc}"
        self.surrogates[v] = sur
        self.surrogate_notes[v] = note
        return sur

    def refresh_models(self) -> dict[str, str]:
        """Load engines that became available and newer versions of loaded ones; a newer version
        replaces the loaded one only after every shape ran with it (and its surrogate is loaded),
        so requests never wait for a compile. Engines for assets without one are loaded and
        warmed by the caller's :meth:`warmup`."""
        from aurora_jax.train.registry import compatible_entries

        changed = {}
        for asset in self.assets:
            try:
                entries = compatible_entries(self.cfg, asset)
            except Exception as exc:  # noqa: BLE001 - an unreadable registry keeps the loaded engine
                if asset not in self.engines:
                    self.unavailable[asset] = f"the model registry could not be read: {type(exc).__name__}: {exc}"
                continue
            cur = self.engines.get(asset)
            if not entries or (cur is not None and entries[-1].version == cur.version):
                continue
            try:
                new = api.load_engine_model(self.cfg, asset)
                if cur is not None:      # warm the new version before it serves
                    pf = api.prepare(asset, self.resolve_as_of(asset, None), store=self.store, cfg=self.cfg,
                                     engine=new)
                    err = self._run_shapes(new.version, pf, self._warm_shapes())
                    if err is not None:
                        raise ModelUnavailableError(f"warming {new.version} failed: {err}")
                    if self.drivers_on:
                        self.surrogate(new, fit_missing=self.fit_surrogate)
            except Exception as exc:  # noqa: BLE001 - the loaded version keeps serving
                if cur is None:
                    self.unavailable[asset] = f"{type(exc).__name__}: {exc}"
                continue
            with self._engine_lock:
                self.engines[asset] = new
                self.unavailable.pop(asset, None)
            changed[asset] = new.version
        return changed

    def _prepare_kwargs(self, asset_id: str) -> dict:
        return {"engine": self.engine(asset_id)}

    def required_assets(self) -> set[str]:
        """``serving.assets`` when set; else only the experiment's asset (``cfg.asset``): the other
        assets of the store are served when an engine is registered for them and otherwise answer
        503 with the reason, without making the service unready."""
        if self.cfg.serving.get("assets") is not None:
            return set(self.assets)
        return {str(self.cfg.asset)} & set(self.assets)

    def has_model(self, asset_id: str) -> str | None:
        """None when an engine is (or, for ``cfg.asset`` with ``forecast.train_if_missing``, has
        just been trained and) registered for ``asset_id``, else the reason."""
        try:
            self.engine(asset_id, train_missing=asset_id == str(self.cfg.asset))
        except ModelUnavailableError as exc:
            return str(exc)
        return None

    def _cache_key(self, asset_id: str, as_of: pd.Timestamp) -> tuple | None:
        eng = self.engines.get(asset_id)
        if eng is None:
            return None
        return (asset_id, as_of.value, eng.version, eng.ewaf_stamp())

    def scenario(self, prepared: Prepared, overrides: dict[str, float]) -> Prepared:
        """The what-if forecast of ``prepared`` (same as-of, same key; labelled conditional)."""
        pf = prepared.forecast
        key = (pf.asset_id, pf.as_of.value, pf.model_version)
        base = self.scenario_bases.get(key)
        if base is None:
            base = api.scenario_base(pf, self.cfg, self.store)
            self.scenario_bases.put(key, base)
        new = api.with_overrides(pf, overrides, self.cfg, self.store, base)
        rid = int(np.clip(int(np.asarray(new.inputs.regime_id)), 0, 2))
        return Prepared(new, REGIME_NAMES[rid], prepared.vol_z)

    # -- the batch function ------------------------------------------------------------------------
    def batch_key(self, job: ForecastJob) -> Hashable:
        """Requests that can share one compiled call: same engine version, same path bucket."""
        return ("engine", job.prepared.model_version, api.path_bucket(job.num_paths, self.path_buckets))

    def simulate(self, jobs: Sequence[ForecastJob]) -> list[SimResult | BaseException]:
        """One simulation per distinct ``sim_key`` (one vmapped call per version and path bucket),
        then each job's summaries and drivers (module docstring). A simulation that another batch
        is running right now is awaited instead of run again (single flight: concurrent equal
        requests share it even when they missed its collection window)."""
        keyed: dict[tuple, ForecastJob] = {}
        for job in jobs:
            keyed.setdefault(job.sim_key, job)
        mine, theirs = [], {}
        with self._inflight_lock:
            for k in keyed:
                if k in self._inflight:
                    theirs[k] = self._inflight[k]
                else:
                    self._inflight[k] = Future()
                    mine.append(k)
        sims: dict[tuple, api.Simulation | BaseException] = {}
        self._count(len(mine))
        try:
            if mine:
                got = api.simulate_engine([keyed[k].prepared.forecast for k in mine],
                                          [keyed[k].num_paths for k in mine],
                                          batch_buckets=self.batch_buckets, path_buckets=self.path_buckets)
                sims.update(zip(mine, got))
        except Exception as exc:  # noqa: BLE001 - every simulation of this call failed
            sims.update((k, exc) for k in mine)
        finally:
            with self._inflight_lock:
                for k in mine:
                    fut = self._inflight.pop(k)
                    fut.set_result(sims.get(k, ModelUnavailableError("the simulation was interrupted")))
        for k, fut in theirs.items():
            sims[k] = fut.result()
        self.shared_flights += len(theirs)
        out: list[SimResult | BaseException] = []
        for job in jobs:
            sim = sims[job.sim_key]
            if isinstance(sim, BaseException):
                out.append(sim)
                continue
            try:
                res = summarize(sim, job)
                res.extras.update(self._drivers(job, sim))
                out.append(res)
            except Exception as exc:  # noqa: BLE001 - this job only
                out.append(exc)
        return out

    def _drivers(self, job: ForecastJob, sim: api.Simulation) -> dict:
        if not self.drivers_on:
            return {"drivers_note": "drivers disabled (serving.engine.drivers=false)"}
        pf = job.prepared.forecast
        sur = self.surrogate(pf.engine)
        if sur is None:
            return {"drivers_note": self.surrogate_notes.get(pf.model_version, "no driver surrogate")}
        return {"drivers": api.drivers_of(pf, sim, job.horizon, sur, self.explain_cfg),
                "min_fidelity": float(self.explain_cfg.min_fidelity)}

    def nightly(self, job: ForecastJob) -> SimResult:
        """The nightly (live) forecast: :func:`~aurora_jax.forecast.engine.forecast_from_snapshot`
        with ``update_ewaf=True`` -- the pending component forecasts are scored against the closes
        realised since the last live as-of, and this forecast's become the pending ones (an as-of
        not after the stored one changes nothing, so a rerun is idempotent)."""
        import jax

        from aurora_jax.forecast.engine import forecast_from_snapshot

        pf = job.prepared.forecast
        out, _ = forecast_from_snapshot(pf.engine.params, pf.engine.entry, pf.snapshot, pf.hourly, self.cfg,
                                        jax.random.key(pf.key_seed), job.horizon, job.num_paths,
                                        levels=job.levels, thresholds=job.thresholds, update_ewaf=True)
        q = np.maximum.accumulate(np.asarray(out.quantiles, np.float64), axis=1)
        if not np.all(np.isfinite(q)):
            raise ModelUnavailableError(f"the engine {pf.model_version} produced non-finite quantiles")
        ks = [{"threshold": float(k), "p_below": float(b), "p_above": float(a), "p_touch": float(t)}
              for k, b, a, t in zip(job.thresholds, np.asarray(out.p_below), np.asarray(out.p_above),
                                    np.asarray(out.p_touch))]
        return SimResult(quantiles=q, thresholds=ks, num_paths=job.num_paths)

    # -- operations ---------------------------------------------------------------------------------
    def compiled_shapes(self) -> int:
        """Entries in the jit cache of the batched engine call (every compile adds one)."""
        from aurora_jax.forecast.engine import simulate_batch

        return int(simulate_batch._cached._cache_size())

    def warmup(self, horizon: int, num_paths: int, levels: Sequence[float],
               assets: Sequence[str] | None = None) -> dict:
        """Load the engine of every asset (failures are reported per asset), prepare its latest
        as-of, load (or, with ``serving.engine.fit_surrogate``, fit) its driver surrogate, and run
        every (batch bucket x path bucket) shape once, so no request compiles."""
        t0 = time.perf_counter()
        assets = list(assets or self.assets)
        failed: dict[str, str] = {}
        for asset in assets:
            try:
                self.engine(asset, train_missing=True)
            except ModelUnavailableError as exc:
                failed[asset] = str(exc)
        done, bad = self._prepared_for_warmup([a for a in assets if a not in failed])
        failed.update(bad)
        before = self.compiled_shapes()
        by_version: dict[str, Prepared] = {}
        for prep in done.values():
            by_version.setdefault(prep.model_version, prep)
            if self.drivers_on:
                self.surrogate(prep.engine, fit_missing=self.fit_surrogate)
        shapes = self._warm_shapes()
        for version, prep in by_version.items():
            err = self._run_shapes(version, prep.forecast, shapes)
            if err is not None:
                failed.update({a: f"warm-up simulation failed: {err}"
                               for a, pr in done.items() if pr.model_version == version})
        for asset, prep in done.items():   # drivers of the default horizon, so they are memoised too
            if asset in failed:
                continue
            res = self.simulate([ForecastJob(prep, horizon, num_paths, tuple(levels), (), self.seed)])[0]
            if isinstance(res, BaseException):
                failed[asset] = f"{type(res).__name__}: {res}"
        ok = sorted(a for a in done if a not in failed)
        return {"assets": ok, "failed": failed, "compiled_shapes": self.compiled_shapes() - before,
                "shapes": [(b, p) for b, p in shapes], "seconds": round(time.perf_counter() - t0, 3)}

    def _warm_shapes(self) -> list[tuple[int, int]]:
        """(batch, paths) shapes compiled before serving (module docstring)."""
        shapes = [(b, p) for p in self.warm_path_buckets for b in self.batch_buckets]
        if self.warm_large:
            top = self.path_buckets[-1]
            shapes += [(1, m) for m in range(2 * top, api.path_bucket(self.max_paths, self.path_buckets) + 1, top)]
        return shapes

    def _run_shapes(self, version: str, pf: api.Prepared, shapes: Sequence[tuple[int, int]]) -> str | None:
        """Run every shape once with ``pf`` (compiling what is not compiled yet); the first error."""
        for b, p in shapes:
            if (version, b, p) in self.warmed_shapes:
                continue
            sims = api.simulate_engine([pf] * b, [p] * b, batch_buckets=self.batch_buckets,
                                       path_buckets=self.path_buckets)
            err = next((s for s in sims if isinstance(s, BaseException)), None)
            if err is not None:
                return f"{type(err).__name__}: {err}"
            self.warmed_shapes.add((version, b, p))
        return None

    def status(self) -> dict[str, dict]:
        out = {}
        for asset in self.assets:
            eng = self.engines.get(asset)
            if eng is None:
                out[asset] = {"engine": None, "reason": self.unavailable.get(asset, "not loaded yet")}
                continue
            sur = self.surrogates.get(eng.version)
            out[asset] = {"engine": eng.version,
                          "drivers": "disabled" if not self.drivers_on else (
                              "available" if sur is not None else self.surrogate_notes.get(eng.version, "not loaded"))}
        return out

    def models(self) -> list[dict]:
        """Loaded engine versions and the as-of dates prepared with them (registry entries are
        listed by the app)."""
        seen: dict[str, dict] = {}
        for asset, eng in sorted(self.engines.items()):
            seen.setdefault(eng.version, {"version": eng.version, "fits": []})
        for prep in self.cache.values():
            entry = seen.setdefault(prep.model_version, {"version": prep.model_version, "fits": []})
            entry["fits"].append(f"{prep.asset_id}@{prep.as_of.isoformat()}")
        return list(seen.values())

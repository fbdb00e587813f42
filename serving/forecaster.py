"""The batch function for the forecaster of ``aurora_jax.forecast.api`` (``model.name`` garch_t or
bootstrap), split into the two halves the service needs:

* :meth:`BaselineForecaster.prepare` — as-of snapshots, the model fit, the regime label: the
  expensive part, done once per ``(asset, as_of)`` and kept in an LRU cache (a fit on a cache miss
  runs in the service's prepare pool, never inside a batch);
* :meth:`BaselineForecaster.simulate` — the batch function: ``num_paths`` paths per request, the
  per-step quantiles and threshold probabilities.

The numbers equal :func:`aurora_jax.forecast.api.forecast` for the same request (same seed rule
``sha256(seed | asset | as_of)``, same fit, same simulator). Because a forecast is a deterministic
function of ``(asset, as_of, horizon, num_paths)``, requests of one batch that share those are
simulated once and summarised per request (their quantile levels and thresholds may differ).

The trained JAX engine plugs in as another class with the same methods (``prepare``,
``simulate``, ``warmup``, ``models``, ``fixed_shapes = True`` so the batcher pads to buckets).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.calibrate.vol_regime import VolRegimeClassifier
from aurora_jax.data.snapshot import price_range, snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import (
    DataRangeError,
    InvalidParameterError,
    ModelUnavailableError,
    UnknownAssetError,
)
from aurora_jax.forecast.api import MODELS, _rng, step_dates
from aurora_jax.forecast.quantiles import threshold_probabilities
from aurora_jax.models.garch import GarchSpec, fit_garch, simulate_garch
from serving.summaries import sorted_quantiles

Sampler = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Prepared:
    """Everything about one ``(asset, as_of)`` that does not depend on the request."""

    asset_id: str
    as_of: pd.Timestamp
    spot: float
    model_name: str
    model_version: str
    sampler: Sampler                     # (horizon, num_paths, rng) -> per-step log-returns
    dates: pd.DatetimeIndex              # observable time of each step's close, max horizon
    history: pd.Series                   # closes up to as_of (charts)
    feature_groups_used: list[str]
    feature_groups_missing: list[str]
    stale_groups: list[str]
    freshness_hours: dict[str, float | None]
    regime: str                          # calm | normal | volatile | unknown
    vol_z: float | None                  # log-vol z-score (dynamic alpha)
    input_hash: str                      # sha256 of the snapshot the forecast is built from


@dataclass(frozen=True)
class ForecastJob:
    """One validated request bound to its prepared model."""

    prepared: Prepared
    horizon: int
    num_paths: int
    levels: tuple[float, ...]            # sorted, unique: requested + calibration levels
    thresholds: tuple[float, ...]
    seed: int

    @property
    def sim_key(self) -> tuple:
        p = self.prepared
        return (id(p), p.asset_id, p.as_of.value, p.model_version, self.horizon, self.num_paths, self.seed)


@dataclass
class SimResult:
    """Raw (uncalibrated) summaries of one job's paths."""

    quantiles: np.ndarray                # (horizon, len(job.levels)) prices
    thresholds: list[dict[str, float]]
    num_paths: int
    extras: dict = field(default_factory=dict)


class Forecaster(Protocol):
    """What the service needs from a model (the baseline below; the JAX engine adapter next).

    ``fixed_shapes`` tells the batcher to pad batches to bucket sizes (a jit-compiled call);
    ``batch_key`` groups requests that may share one call (same static shapes / cost class);
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
    def warmup(self, horizon: int, num_paths: int, levels: Sequence[float]) -> list[str]: ...
    def models(self) -> list[dict]: ...


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


def snapshot_hash(close: pd.Series, frame: pd.DataFrame, as_of: pd.Timestamp) -> str:
    h = hashlib.sha256(str(as_of.value).encode())
    h.update(np.ascontiguousarray(close.index.asi8).tobytes())
    h.update(np.ascontiguousarray(close.to_numpy(dtype=float)).tobytes())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    h.update(",".join(frame.columns).encode())
    return h.hexdigest()[:16]


class BaselineForecaster:
    """Per-(asset, as_of) fitted baseline (see module docstring)."""

    fixed_shapes = False   # numpy: no compiled shapes, so the batcher does not pad

    def __init__(self, cfg: DictConfig, store: MarketStore, assets: Sequence[str], cache_size: int,
                 large_paths: int):
        if cfg.model.name not in MODELS:
            raise ModelUnavailableError(f"model.name={cfg.model.name!r} is not served by the baseline: {MODELS}")
        self.cfg = cfg
        self.store = store
        self.assets = sorted(assets)
        self.model_name = str(cfg.model.name)
        self.seed = int(cfg.seed)
        self.large_paths = int(large_paths)
        self.cache = LRU(cache_size)
        self.regimes = VolRegimeClassifier.from_config(cfg.calibration.regime)
        self._locks: dict[tuple, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._ranges: dict[str, tuple] = {}
        if self.model_name == "garch_t":
            g = cfg.model.garch
            self.spec = GarchSpec(p=int(g.p), o=int(g.o), q=int(g.q), dist=str(g.dist),
                                  window_days=int(g.window_days), min_days=int(g.min_days))
            self.window = self.spec.window_days
        else:
            self.spec = None
            self.window = int(cfg.model.bootstrap.window_days)

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

    def scenario(self, prepared: Prepared, overrides: dict[str, float]) -> Prepared:
        """What-if forecasts need a model conditioned on features; the baseline has none."""
        raise InvalidParameterError(
            "scenario_overrides", sorted(overrides),
            f"none for model.name={self.model_name}: what-if scenarios need the aurora engine",
        )

    def cached(self, asset_id: str, as_of: pd.Timestamp) -> Prepared | None:
        return self.cache.get((asset_id, as_of.value))

    def prepare(self, asset_id: str, as_of: pd.Timestamp) -> Prepared:
        """Fit (or fetch) the model for ``(asset_id, as_of)``; concurrent callers share one fit."""
        key = (asset_id, as_of.value)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self.cache.get(key)
            if hit is None:
                hit = self._prepare(asset_id, as_of)
                self.cache.put(key, hit)
        with self._locks_guard:
            self._locks.pop(key, None)
        return hit

    def _prepare(self, asset_id: str, as_of: pd.Timestamp) -> Prepared:
        data = self.cfg.data
        history = snapshot_from_config(self.store, asset_id, as_of, data,
                                       lookback_days=int(self.window * 1.5) + 10, groups=("price",))
        snap = snapshot_from_config(self.store, asset_id, history.as_of, data)
        close = history.close().dropna()
        if len(close) < 2:
            raise InvalidParameterError("as_of", as_of.isoformat(), "a time with price history before it")
        returns = np.diff(np.log(close.to_numpy()))
        try:
            sampler, version = self._fit(returns)
        except InvalidParameterError as exc:
            if exc.field != "log_returns":
                raise
            raise InvalidParameterError(
                "as_of", as_of.isoformat(), f"a time with more history before it ({exc.allowed})"
            ) from None
        regime, z = self._regime(asset_id, close, history.as_of)
        return Prepared(
            asset_id=asset_id, as_of=history.as_of, spot=float(close.iloc[-1]), model_name=self.model_name,
            model_version=version, sampler=sampler,
            dates=step_dates(history, int(self.cfg.forecast.max_horizon)), history=close,
            feature_groups_used=snap.used_groups, feature_groups_missing=snap.missing_groups,
            stale_groups=list(snap.stale_groups),
            freshness_hours={g: (None if a is None else a / pd.Timedelta(hours=1))
                             for g, a in snap.freshness.items()},
            regime=regime, vol_z=z, input_hash=snapshot_hash(close, snap.frame, history.as_of),
        )

    def _fit(self, returns: np.ndarray) -> tuple[Sampler, str]:
        """The same fit and version id as ``api.simulate_log_returns``."""
        if self.spec is not None:
            fit = fit_garch(returns, self.spec)
            params = np.concatenate([[fit.mu, fit.omega, fit.nu], fit.alpha, fit.gamma, fit.beta])
            version = f"{self.spec.name}-" + hashlib.sha1(np.round(params, 10).tobytes()).hexdigest()[:10]
            return (lambda h, n, rng: simulate_garch(fit, h, n, rng)), version
        window = returns[np.isfinite(returns)][-self.window:]
        if len(window) < 30:
            raise InvalidParameterError("log_returns", f"{len(window)} returns", ">= 30 returns for bootstrap")
        version = "bootstrap-" + hashlib.sha1(window.tobytes()).hexdigest()[:10]
        return (lambda h, n, rng: rng.choice(window, size=(n, h), replace=True)), version

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

    # -- the batch function ------------------------------------------------------------------------
    def batch_key(self, job: ForecastJob) -> Hashable:
        """Cost class: large requests never share a call with small ones."""
        return "large" if job.num_paths > self.large_paths else "small"

    def simulate(self, jobs: Sequence[ForecastJob]) -> list[SimResult | BaseException]:
        """Paths per distinct ``sim_key`` (once), summaries per job; errors stay per job."""
        out: list[SimResult | BaseException] = []
        paths: dict[tuple, tuple[np.ndarray, np.ndarray] | BaseException] = {}
        for job in jobs:
            key = job.sim_key
            if key not in paths:
                try:
                    paths[key] = self._paths(job)
                except Exception as exc:  # noqa: BLE001 - reported for this job only
                    paths[key] = exc
            got = paths[key]
            if isinstance(got, BaseException):
                out.append(got)
                continue
            prices, sorted_steps = got
            try:
                q = sorted_quantiles(sorted_steps, job.levels)
                ks = threshold_probabilities(prices, job.prepared.spot, job.thresholds) if job.thresholds else []
                out.append(SimResult(quantiles=q, thresholds=ks, num_paths=job.num_paths))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def _paths(self, job: ForecastJob) -> tuple[np.ndarray, np.ndarray]:
        p = job.prepared
        rng = _rng(job.seed, p.asset_id, p.as_of)
        log_r = p.sampler(job.horizon, job.num_paths, rng)
        prices = p.spot * np.exp(np.cumsum(log_r, axis=1))
        if not np.all(np.isfinite(prices)):
            raise ModelUnavailableError(f"the {p.model_version} simulation produced non-finite prices")
        return prices, np.sort(np.ascontiguousarray(prices.T), axis=1)

    # -- operations ---------------------------------------------------------------------------------
    def warmup(self, horizon: int, num_paths: int, levels: Sequence[float]) -> list[str]:
        """Fit every asset at its latest as-of and run one simulation (no compilation here)."""
        done = []
        for asset in self.assets:
            prep = self.prepare(asset, self.resolve_as_of(asset, None))
            job = ForecastJob(prep, horizon, num_paths, tuple(levels), (), self.seed)
            res = self.simulate([job])[0]
            if isinstance(res, BaseException):
                raise res
            done.append(asset)
        return done

    def models(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for prep in self.cache.values():
            entry = seen.setdefault(prep.model_version, {"version": prep.model_version, "fits": []})
            entry["fits"].append(f"{prep.asset_id}@{prep.as_of.isoformat()}")
        return list(seen.values())

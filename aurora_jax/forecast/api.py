"""The public forecast call: ``aurora_jax.forecast(asset_id, horizon, as_of, ...)``.

Two steps, shared with the HTTP service (``serving/``), so both give the same numbers:

1. :func:`prepare` -- everything about one ``(asset, as_of)`` that no request parameter changes:
   the as-of snapshot, the model (a fit of the baseline on data up to ``as_of``, or the trained
   engine's :class:`~aurora_jax.features.inputs.ModelInputs` and its point-in-time EWAF losses),
   the step dates, feature groups and the PRNG seed ``sha256(seed | asset | as_of)``;
2. :func:`simulate` -- the Monte-Carlo paths of prepared forecasts (:class:`Simulation`), from
   which :meth:`Simulation.quantiles` and :meth:`Simulation.thresholds` summarise any horizon,
   levels and thresholds.

The model is named by ``cfg.model.name``: ``aurora`` (the trained JAX engine, ``model=engine``:
the latest registered version for the asset; ``forecast.train_if_missing`` trains the
experiment's small default first when none exists), ``garch_t`` (GARCH(1,1)-t fitted on the
trailing ``model.garch.window_days`` daily log-returns) or ``bootstrap`` (i.i.d. resampling of the
last ``model.bootstrap.window_days`` daily log-returns). Same request and seed, same output.

Fixed shapes (engine): a forecast always simulates the engine's ``horizon_max`` steps and the
requested horizon is a slice (the paths of steps ``1..h`` do not depend on ``h``), with
``num_paths`` rounded up to a path bucket (:func:`path_bucket`, ``serving.engine.path_buckets``;
above the largest, the next multiple of it) of which the first ``num_paths`` paths are the
forecast. So every request shape maps to one of a few compiled shapes, and the service can
coalesce requests of different horizons into one simulation. The kept paths are sorted per step
once (numpy); quantiles are read from the sorted log-paths with numpy's ``linear`` rule
(:func:`sorted_quantiles`, float64) and made non-decreasing across levels; prices are
``spot exp(q)``. Equal requests give equal numbers in the API and the service; a simulation that
the service batches with others (one vmapped call) can differ from the API's in the last float32
bits of the paths.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.data.snapshot import Snapshot, snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.forecast.quantiles import (
    check_quantile_levels,
    check_thresholds,
    quantile_column,
    threshold_probabilities,
)
from aurora_jax.models.garch import GarchSpec, fit_garch, simulate_garch

MODELS = ("garch_t", "bootstrap", "aurora")
DEFAULT_PATH_BUCKETS = (1000, 2000, 5000, 10000, 20000, 50000)
Sampler = Callable[[int, int, np.random.Generator], np.ndarray]

__all__ = ["MODELS", "EngineModel", "ForecastResult", "Prepared", "Simulation", "forecast", "open_store",
           "path_bucket", "prepare", "simulate", "simulate_engine", "sorted_quantiles", "step_dates",
           "threshold_probabilities", "validate_request"]


@dataclass
class ForecastResult:
    asset_id: str
    as_of: pd.Timestamp
    horizon: int
    model_name: str
    model_version: str
    spot: float
    table: pd.DataFrame                       # asset_id, as_of, ds, step, q.. columns
    thresholds: list[dict[str, float]]        # threshold, p_below, p_above, p_touch
    paths: np.ndarray                         # (num_paths, horizon) simulated prices
    history: pd.Series                        # closes up to as_of (for charts)
    feature_groups_used: list[str] = field(default_factory=list)
    feature_groups_missing: list[str] = field(default_factory=list)
    data_range: tuple[str, str] = ("", "")
    snapshot_report: dict = field(default_factory=dict)
    drivers: dict | None = None               # engine: aurora_jax.forecast.explain.drivers_for (None: no surrogate)
    conditional: bool = False                 # True for what-if (scenario override) forecasts
    overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        table = self.table.copy()
        for col in ("as_of", "ds"):
            table[col] = table[col].map(lambda t: t.isoformat())
        return {
            "asset_id": self.asset_id, "as_of": self.as_of.isoformat(), "horizon": self.horizon,
            "model_name": self.model_name, "model_version": self.model_version, "spot": self.spot,
            "num_paths": int(self.paths.shape[0]), "quantiles": table.to_dict(orient="records"),
            "thresholds": self.thresholds, "feature_groups_used": self.feature_groups_used,
            "feature_groups_missing": self.feature_groups_missing,
            "data_range": list(self.data_range), "snapshot": self.snapshot_report, "drivers": self.drivers,
            "conditional": self.conditional, "overrides": self.overrides,
        }


def validate_request(
    horizon: int, num_paths: int, quantiles: Sequence[float], thresholds: Sequence[float], limits
) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
    """Typed errors for every out-of-range field; returns the normalized values."""
    max_h = int(limits.max_horizon)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or not 1 <= horizon <= max_h:
        raise InvalidParameterError("horizon", horizon, f"an integer in [1, {max_h}] (days)")
    lo, hi = int(limits.min_paths), int(limits.max_paths)
    if isinstance(num_paths, bool) or not isinstance(num_paths, (int, np.integer)) or not lo <= num_paths <= hi:
        raise InvalidParameterError("num_paths", num_paths, f"an integer in [{lo}, {hi}]")
    return int(horizon), int(num_paths), check_quantile_levels(quantiles), check_thresholds(thresholds)


def step_dates(snap: Snapshot, horizon: int) -> pd.DatetimeIndex:
    """When each step's close becomes observable (the store's convention: a daily bar is stamped
    at the end of its day). Business days for assets that trade on business days, else calendar."""
    grid = snap.frame.index
    day = pd.Timedelta(days=1)
    trading_days = len(grid) > 5 and bool((grid[1:] - grid[:-1] > day).any())
    last_day = grid[-1] - day
    if trading_days:
        return pd.DatetimeIndex([last_day + pd.offsets.BDay(k) + day for k in range(1, horizon + 1)])
    return pd.DatetimeIndex([grid[-1] + k * day for k in range(1, horizon + 1)])


def _rng(seed: int, asset_id: str, as_of: pd.Timestamp) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{asset_id}|{as_of.value}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def engine_seed(seed: int, asset_id: str, as_of: pd.Timestamp) -> int:
    """The engine's ``jax.random.key`` seed of one ``(asset, as_of)``: the first draw of :func:`_rng`."""
    return int(_rng(int(seed), asset_id, as_of).integers(2**31 - 1))


def path_bucket(num_paths: int, buckets: Sequence[int] = DEFAULT_PATH_BUCKETS) -> int:
    """The simulated path count of a request: the smallest bucket ``>= num_paths``; above the
    largest bucket ``B``, the next multiple of ``B`` (so at most ``max_paths / B`` extra shapes)."""
    bs = sorted({int(b) for b in buckets})
    i = bisect.bisect_left(bs, int(num_paths))
    if i < len(bs):
        return bs[i]
    return -(-int(num_paths) // bs[-1]) * bs[-1]


def path_buckets_of(cfg: DictConfig) -> tuple[int, ...]:
    """``serving.engine.path_buckets`` (the API and the service must use the same ones)."""
    eng = cfg.serving.get("engine") if "serving" in cfg else None
    got = None if eng is None else eng.get("path_buckets")
    buckets = tuple(sorted({int(b) for b in (got or DEFAULT_PATH_BUCKETS)}))
    if buckets[0] < 2:
        raise InvalidParameterError("serving.engine.path_buckets", list(buckets), "path counts >= 2")
    return buckets


def simulate_log_returns(
    model_cfg: DictConfig, returns: np.ndarray, horizon: int, num_paths: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Per-step log-return paths from the configured baseline, and a version id of the fit."""
    sampler, version = fit_baseline(model_cfg, returns)
    return sampler(horizon, num_paths, rng), version


def fit_baseline(model_cfg: DictConfig, returns: np.ndarray) -> tuple[Sampler, str]:
    """The baseline fitted on ``returns``: ``sampler(horizon, num_paths, rng)`` of per-step
    log-returns and a version id of the fit (a hash of the fitted parameters / window)."""
    name = model_cfg.name
    if name == "garch_t":
        g = model_cfg.garch
        spec = GarchSpec(p=int(g.p), o=int(g.o), q=int(g.q), dist=str(g.dist),
                         window_days=int(g.window_days), min_days=int(g.min_days))
        fit = fit_garch(returns, spec)
        params = np.concatenate([[fit.mu, fit.omega, fit.nu], fit.alpha, fit.gamma, fit.beta])
        version = f"{spec.name}-" + hashlib.sha1(np.round(params, 10).tobytes()).hexdigest()[:10]
        return (lambda h, n, rng: simulate_garch(fit, h, n, rng)), version
    if name == "bootstrap":
        window = returns[np.isfinite(returns)][-int(model_cfg.bootstrap.window_days):]
        if len(window) < 30:
            raise InvalidParameterError("log_returns", f"{len(window)} returns", ">= 30 returns for bootstrap")
        version = "bootstrap-" + hashlib.sha1(window.tobytes()).hexdigest()[:10]
        return (lambda h, n, rng: rng.choice(window, size=(n, h), replace=True)), version
    raise InvalidParameterError("model.name", name, f"one of {MODELS}")


def open_store(cfg: DictConfig) -> MarketStore:
    """The configured store; an empty one is filled with the embedded default first."""
    store = MarketStore(cfg.data.root)
    if store.is_empty() and cfg.data.auto_ingest_default:
        from aurora_jax.data.ingest import ingest_default

        ingest_default(store, cfg.data)
    return store


def snapshot_hash(close: pd.Series, frame: pd.DataFrame, as_of: pd.Timestamp) -> str:
    """sha256 (16 hex digits) of the data a forecast is built from."""
    h = hashlib.sha256(str(as_of.value).encode())
    h.update(np.ascontiguousarray(close.index.asi8).tobytes())
    h.update(np.ascontiguousarray(close.to_numpy(dtype=float)).tobytes())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    h.update(",".join(frame.columns).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# step 1: prepare
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineModel:
    """A registered engine version (``aurora_jax.train.registry``) loaded for one asset."""

    params: object                    # aurora_jax.forecast.engine.EngineParams
    entry: object                     # aurora_jax.train.registry.RegistryEntry
    asset_id: str

    @property
    def version(self) -> str:
        return str(self.entry.version)

    @property
    def ewaf_path(self):
        return self.entry.ewaf_path(self.asset_id)

    def ewaf_stamp(self) -> tuple[int, int] | None:
        """(mtime, size) of the persisted EWAF state: a change means new point-in-time losses."""
        try:
            st = self.ewaf_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def ewaf_losses_at(self, as_of: pd.Timestamp, discount: float) -> np.ndarray:
        """The EWAF losses known at ``as_of`` (zeros before the state's history: pure meta-weights)."""
        from aurora_jax.models.trend_ensemble import EwafTracker

        return EwafTracker(self.ewaf_path, float(discount)).load().losses_at(as_of)


def load_engine_model(cfg: DictConfig, asset_id: str, train_if_missing: bool = False) -> EngineModel:
    """The newest registered engine for ``asset_id`` (ModelUnavailableError with the reason when
    none fits the current config); with ``train_if_missing`` and ``cfg.asset == asset_id`` the
    experiment's small default engine (:func:`aurora_jax.train.pipeline.quick_config`) is
    trained first."""
    from aurora_jax.train.registry import load_latest

    try:
        params, entry = load_latest(cfg, asset_id)
    except ModelUnavailableError:
        if not (train_if_missing and cfg.asset == asset_id):
            raise
        from aurora_jax.train.pipeline import quick_config, train_experiment

        train_experiment(quick_config(cfg), progress=bool(cfg.progress))
        params, entry = load_latest(cfg, asset_id)
    return EngineModel(params, entry, asset_id)


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything about one ``(asset, as_of)`` that does not depend on the request."""

    asset_id: str
    as_of: pd.Timestamp
    spot: float
    model_name: str
    model_version: str
    history: pd.Series                   # closes up to as_of (charts, realised outcomes)
    dates: pd.DatetimeIndex              # observable time of each step's close, max horizon
    feature_groups_used: list[str]
    feature_groups_missing: list[str]
    stale_groups: list[str]
    freshness_hours: dict[str, float | None]
    data_range: tuple[str, str]
    snapshot_report: dict
    input_hash: str                      # sha256 of the snapshot the forecast is built from
    seed: int                            # cfg.seed; the PRNG is sha256(seed | asset | as_of)
    sampler: Sampler | None = None       # baseline: (horizon, num_paths, rng) -> per-step log-returns
    engine: EngineModel | None = None    # engine: the registered version
    inputs: object | None = None         # engine: ModelInputs (numpy leaves)
    inputs_info: object | None = None    # engine: InputsInfo
    ewaf_losses: np.ndarray | None = None  # engine: point-in-time EWAF losses (3,)
    ewaf_stamp: tuple | None = None      # engine: EWAF state file stamp these losses were read at
    snapshot: Snapshot | None = None     # engine: the daily snapshot (scenarios rebuild from it)
    hourly: Snapshot | None = None       # engine: the hourly price snapshot, when used
    overrides: dict = field(default_factory=dict)   # scenario overrides (conditional forecast)
    memo: dict = field(default_factory=dict, repr=False)   # per-horizon drivers etc. (request-independent)

    @property
    def conditional(self) -> bool:
        return bool(self.overrides)

    @property
    def is_engine(self) -> bool:
        return self.engine is not None

    @property
    def key_seed(self) -> int:
        """The engine's ``jax.random.key`` seed (scenarios keep the base forecast's key)."""
        return engine_seed(self.seed, self.asset_id, self.as_of)


def prepare(asset_id: str, as_of: str | pd.Timestamp | None, *, store: MarketStore, cfg: DictConfig,
            engine: EngineModel | None = None) -> Prepared:
    """Step 1 (module docstring) for ``cfg.model.name``; ``engine`` skips the registry lookup."""
    store.require_asset(asset_id)
    if cfg.model.name == "aurora":
        return _prepare_engine(asset_id, as_of, store, cfg, engine)
    return _prepare_baseline(asset_id, as_of, store, cfg)


def _freshness(snap: Snapshot) -> dict[str, float | None]:
    return {g: (None if a is None else a / pd.Timedelta(hours=1)) for g, a in snap.freshness.items()}


def _prepare_baseline(asset_id, as_of, store, cfg) -> Prepared:
    name = str(cfg.model.name)
    if name not in MODELS:
        raise InvalidParameterError("model.name", name, f"one of {MODELS}")
    window = int(cfg.model.garch.window_days) if name == "garch_t" else int(cfg.model.bootstrap.window_days)
    history = snapshot_from_config(store, asset_id, as_of, cfg.data, lookback_days=int(window * 1.5) + 10,
                                   groups=("price",))
    snap = snapshot_from_config(store, asset_id, history.as_of, cfg.data)
    close = history.close().dropna()
    if len(close) < 2:
        raise InvalidParameterError("as_of", history.as_of.isoformat(), "a time with price history before it")
    returns = np.diff(np.log(close.to_numpy()))
    try:
        sampler, version = fit_baseline(cfg.model, returns)
    except InvalidParameterError as exc:
        if exc.field != "log_returns":
            raise
        raise InvalidParameterError(
            "as_of", history.as_of.isoformat(), f"a time with more history before it ({exc.allowed})"
        ) from None
    return Prepared(
        asset_id=asset_id, as_of=history.as_of, spot=float(close.iloc[-1]), model_name=name,
        model_version=version, history=close, dates=step_dates(history, int(cfg.forecast.max_horizon)),
        feature_groups_used=snap.used_groups, feature_groups_missing=snap.missing_groups,
        stale_groups=list(snap.stale_groups), freshness_hours=_freshness(snap),
        data_range=(close.index[0].isoformat(), close.index[-1].isoformat()), snapshot_report=snap.report(),
        input_hash=snapshot_hash(close, snap.frame, history.as_of), seed=int(cfg.seed), sampler=sampler,
    )


def _numpy_inputs(x):
    """ModelInputs with numpy leaves (stacking many of them for one batched call is then cheap)."""
    return type(x)(**{k: np.asarray(getattr(x, k)) for k in x.__dataclass_fields__})


def _prepare_engine(asset_id, as_of, store, cfg, engine: EngineModel | None) -> Prepared:
    from aurora_jax.features.inputs import build_inputs, snapshot_for_inputs
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    if engine is None:
        engine = load_engine_model(cfg, asset_id, bool(cfg.forecast.get("train_if_missing")))
    stamp = engine.ewaf_stamp()
    snap, hourly = snapshot_for_inputs(store, asset_id, as_of, cfg)
    try:
        x, info = build_inputs(snap, cfg, vol_params=engine.params.vol_path, hourly=hourly)
    except InvalidParameterError as exc:
        if exc.field != "snapshot":
            raise
        raise InvalidParameterError("as_of", snap.as_of.isoformat(),
                                    f"a time with more history before it ({exc.allowed})") from None
    close = snap.close().dropna()
    losses = engine.ewaf_losses_at(snap.as_of, float(cfg.model.trend.ewaf.discount))
    return Prepared(
        asset_id=asset_id, as_of=snap.as_of, spot=float(x.spot), model_name="aurora",
        model_version=engine.version, history=close,
        dates=step_dates(snap, max(int(cfg.forecast.max_horizon), int(engine.params.horizon_max))),
        feature_groups_used=list(info.groups_used), feature_groups_missing=list(info.groups_missing),
        stale_groups=list(snap.stale_groups), freshness_hours=_freshness(snap),
        data_range=(close.index[0].isoformat(), close.index[-1].isoformat()),
        snapshot_report={**snap.report(), "inputs": info.as_dict()},
        input_hash=snapshot_hash(close, snap.frame, snap.as_of), seed=int(cfg.seed), engine=engine,
        inputs=_numpy_inputs(x), inputs_info=info, ewaf_losses=np.asarray(losses, np.float32), ewaf_stamp=stamp,
        snapshot=snap, hourly=hourly,
    )


def with_overrides(prep: Prepared, overrides: dict, cfg: DictConfig, store: MarketStore | None = None,
                   base=None) -> Prepared:
    """The what-if version of an engine forecast (:mod:`aurora_jax.forecast.scenario`): the
    whitelisted inputs replaced for the same as-of, the same PRNG key (so the difference to
    the base forecast is the override's effect), labelled conditional. ``base``: the
    :class:`~aurora_jax.forecast.scenario.ScenarioBase` of ``prep`` when the caller keeps one."""
    if not prep.is_engine:
        raise InvalidParameterError(
            "scenario_overrides", sorted(overrides),
            f"none for model.name={prep.model_name}: what-if scenarios need the aurora engine (model=engine)")
    from aurora_jax.forecast.scenario import scenario_inputs, validate_overrides
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    base = base if base is not None else scenario_base(prep, cfg, store)
    checked = validate_overrides(overrides, base, cfg)
    x, info = scenario_inputs(base, checked, cfg)
    return replace(prep, inputs=_numpy_inputs(x), inputs_info=info, overrides=dict(checked), memo={},
                   snapshot_report={**prep.snapshot_report, "inputs": info.as_dict()})


def scenario_base(prep: Prepared, cfg: DictConfig, store: MarketStore | None = None):
    """The :class:`~aurora_jax.forecast.scenario.ScenarioBase` (sanity-check histories) of an engine forecast."""
    from aurora_jax.forecast.scenario import base_from_snapshot
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    return base_from_snapshot(prep.snapshot, prep.hourly, cfg, prep.engine.params.vol_path, store,
                              len(prep.dates))


# ---------------------------------------------------------------------------------------------
# step 2: simulate, then summarise per request
# ---------------------------------------------------------------------------------------------
def sorted_quantiles(sorted_steps: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Per-step quantiles at ``levels`` from rows sorted ascending: numpy's ``linear`` rule,

        v = (n - 1) tau,  i = floor(v),  g = v - i,  d = x_(i+1) - x_(i)
        Q = x_(i) + d g  (g < 0.5),   Q = x_(i+1) - d (1 - g)  (g >= 0.5)

    bit for bit equal to ``numpy.quantile`` (float64), then a cumulative max across levels."""
    n = sorted_steps.shape[1]
    v = (n - 1) * np.asarray(levels, dtype=float)
    lo = np.floor(v).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    g = v - lo
    a = sorted_steps[:, lo].astype(np.float64)
    b = sorted_steps[:, hi].astype(np.float64)
    d = b - a
    q = np.where(g >= 0.5, b - d * (1.0 - g), a + d * g)
    return np.maximum.accumulate(q, axis=1)


@dataclass
class Simulation:
    """The paths of one prepared forecast; any horizon up to ``steps`` is summarised from it.

    ``paths`` are ``log(P / spot)`` (engine, float32) or prices (baseline, float64), ``(num_paths,
    steps)``; ``sorted_steps[k, :num_paths]`` are step ``k``'s values in increasing order."""

    paths: np.ndarray
    sorted_steps: np.ndarray
    num_paths: int
    spot: float
    log_space: bool
    trend_paths: np.ndarray | None = None     # engine: (4, steps) combined, SSM, AR, TCN normalized means

    @property
    def steps(self) -> int:
        return int(self.paths.shape[1])

    def _check(self, horizon: int) -> None:
        if not 1 <= int(horizon) <= self.steps:
            raise InvalidParameterError("horizon", horizon, f"an integer in [1, {self.steps}]")

    def quantiles(self, horizon: int, levels: Sequence[float]) -> np.ndarray:
        """``(horizon, len(levels))`` price quantiles, non-decreasing across levels."""
        self._check(horizon)
        q = sorted_quantiles(self.sorted_steps[:horizon, : self.num_paths], levels)
        return self.spot * np.exp(q) if self.log_space else q

    def prices(self, horizon: int) -> np.ndarray:
        """``(num_paths, horizon)`` simulated prices (float64)."""
        self._check(horizon)
        p = self.paths[:, :horizon]
        return self.spot * np.exp(p.astype(np.float64)) if self.log_space else p

    def thresholds(self, horizon: int, ks: Sequence[float]) -> list[dict[str, float]]:
        return threshold_probabilities(self.prices(horizon), self.spot, ks) if len(ks) else []


def simulate_baseline(prep: Prepared, horizon: int, num_paths: int) -> Simulation:
    """``num_paths`` baseline paths of ``horizon`` steps (numpy, nothing compiled)."""
    rng = _rng(prep.seed, prep.asset_id, prep.as_of)
    log_r = prep.sampler(horizon, num_paths, rng)
    prices = prep.spot * np.exp(np.cumsum(log_r, axis=1))
    if not np.all(np.isfinite(prices)):
        raise ModelUnavailableError(f"the {prep.model_version} simulation produced non-finite prices")
    return Simulation(prices, np.sort(np.ascontiguousarray(prices.T), axis=1), int(num_paths), prep.spot, False)


def _stack(trees: Sequence) -> object:
    import jax

    return jax.tree_util.tree_map(lambda *a: np.stack(a), *trees)


def batch_pieces(items: Sequence, buckets: Sequence[int]) -> list[tuple[list, int]]:
    """``items`` cut into ``(piece, call size)`` pairs: each piece takes the largest bucket that
    the remaining items fill, so call size == len(piece) except for a remainder smaller than the
    smallest bucket (its call is padded up to that bucket)."""
    bs = sorted({int(b) for b in buckets})
    out, s = [], 0
    while s < len(items):
        rest = len(items) - s
        size = max((b for b in bs if b <= rest), default=bs[0])
        out.append((list(items[s:s + size]), size))
        s += size
    return out


def simulate_engine(preps: Sequence[Prepared], num_paths: Sequence[int], *,
                    batch_buckets: Sequence[int] = (1,), path_buckets: Sequence[int] = DEFAULT_PATH_BUCKETS
                    ) -> list[Simulation | BaseException]:
    """Engine simulations of many prepared forecasts (module docstring: fixed shapes).

    Forecasts that share an engine version and a path bucket run in vmapped, jit-compiled calls
    (:func:`aurora_jax.forecast.engine.simulate_batch`) whose sizes are batch buckets, largest
    first (:func:`batch_pieces`: 7 with buckets 1/4/16 is one call of 4 and three of 1, so no
    simulation is wasted on padding; only a remainder below the smallest bucket is padded by
    repeating the last forecast); path counts above the largest path bucket run one at a time. Each forecast keeps the first ``num_paths`` paths of
    its bucket, sorted per step (numpy). A forecast whose paths are not finite gets its own
    :class:`ModelUnavailableError`; the others are unaffected."""
    from aurora_jax.forecast.engine import simulate_batch
    from aurora_jax.forecast.explain.blocks import trend_paths_of

    bbs = sorted({int(b) for b in batch_buckets})
    pbs = sorted({int(b) for b in path_buckets})
    out: list[Simulation | BaseException | None] = [None] * len(preps)
    groups: dict[tuple, list[int]] = {}
    for i, (p, n) in enumerate(zip(preps, num_paths)):
        if not p.is_engine:
            out[i] = InvalidParameterError("model.name", p.model_name, "aurora (the engine)")
            continue
        groups.setdefault((p.model_version, path_bucket(int(n), pbs)), []).append(i)
    for (_, bucket), idx in groups.items():
        for chunk, size in batch_pieces(idx, bbs if bucket <= pbs[-1] else (1,)):
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            ps = [preps[i] for i in padded]
            try:
                res = simulate_batch(
                    ps[0].engine.params, _stack([p.inputs for p in ps]),
                    np.asarray([p.key_seed for p in ps], np.int32),
                    np.stack([p.ewaf_losses for p in ps]).astype(np.float32), int(bucket))
                log_paths = np.asarray(res.log_paths)
                trend = trend_paths_of(res)
            except Exception as exc:  # noqa: BLE001 - the chunk's forecasts fail, nobody else's
                for i in chunk:
                    out[i] = exc
                continue
            for j, i in enumerate(chunk):
                n = int(num_paths[i])
                lp = log_paths[j, :n]
                if not np.all(np.isfinite(lp)):
                    out[i] = ModelUnavailableError(
                        f"the engine {preps[i].model_version} produced non-finite paths for {preps[i].asset_id} "
                        f"as of {preps[i].as_of.isoformat()}")
                    continue
                out[i] = Simulation(lp, np.sort(np.ascontiguousarray(lp.T), axis=1), n, preps[i].spot, True, trend[j])
    return out  # type: ignore[return-value]


def simulate(prep: Prepared, horizon: int, num_paths: int, cfg: DictConfig | None = None) -> Simulation:
    """Step 2 for one forecast (raises the simulation's error). The engine simulates its
    ``horizon_max`` steps at the path bucket of ``num_paths`` (``cfg``'s buckets)."""
    if not prep.is_engine:
        return simulate_baseline(prep, horizon, num_paths)
    buckets = path_buckets_of(cfg) if cfg is not None else DEFAULT_PATH_BUCKETS
    sim = simulate_engine([prep], [num_paths], path_buckets=buckets)[0]
    if isinstance(sim, BaseException):
        raise sim
    return sim


def drivers_of(prep: Prepared, sim: Simulation, horizon: int, surrogate, explain_cfg) -> dict:
    """Top drivers of upside risk, downside risk and trend (:func:`aurora_jax.forecast.explain.
    drivers_from_config`) of an engine forecast at ``horizon``; memoised per prepared forecast
    and horizon (the trend paths do not depend on the random key)."""
    key = ("drivers", int(horizon), None if surrogate is None else id(surrogate))
    hit = prep.memo.get(key)
    if hit is None:
        from aurora_jax.forecast.explain.drivers import Explainable, drivers_from_config

        trend = None if sim.trend_paths is None else sim.trend_paths[:, :horizon]
        hit = drivers_from_config(Explainable(prep.inputs, trend), surrogate, explain_cfg, horizon)
        prep.memo[key] = hit
    return hit


def load_surrogate(cfg: DictConfig, engine: EngineModel, store: MarketStore, fit_missing: bool = False,
                   progress: bool = False):
    """The driver surrogate saved for the engine version (fitted and saved first when missing and
    ``fit_missing``); None when there is none."""
    from aurora_jax.forecast.explain.fit import load_or_fit_surrogate
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    return load_or_fit_surrogate(cfg, engine.params, engine.entry, store, fit_missing=fit_missing,
                                 ewaf_losses=None, progress=progress)


def result_of(prep: Prepared, sim: Simulation, horizon: int, levels: Sequence[float], ks: Sequence[float],
              drivers: dict | None = None) -> ForecastResult:
    """The tidy :class:`ForecastResult` of one simulation at ``horizon``."""
    q = sim.quantiles(horizon, levels)
    table = pd.DataFrame({"asset_id": prep.asset_id, "as_of": prep.as_of, "ds": prep.dates[:horizon],
                          "step": np.arange(1, horizon + 1)})
    for j, level in enumerate(levels):
        table[quantile_column(level)] = q[:, j]
    return ForecastResult(
        asset_id=prep.asset_id, as_of=prep.as_of, horizon=horizon, model_name=prep.model_name,
        model_version=prep.model_version, spot=prep.spot, table=table, thresholds=sim.thresholds(horizon, ks),
        paths=sim.prices(horizon), history=prep.history, feature_groups_used=list(prep.feature_groups_used),
        feature_groups_missing=list(prep.feature_groups_missing), data_range=prep.data_range,
        snapshot_report=prep.snapshot_report, drivers=drivers, conditional=prep.conditional,
        overrides=dict(prep.overrides),
    )


def forecast(
    asset_id: str,
    horizon: int,
    as_of: str | pd.Timestamp | None = None,
    quantiles: Sequence[float] = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95),
    thresholds: Sequence[float] = (),
    num_paths: int = 10_000,
    overrides: dict | None = None,
    *,
    store: MarketStore | None = None,
    cfg: DictConfig | None = None,
    drivers: bool = True,
    fit_surrogate: bool = False,
) -> ForecastResult:
    """Forecast the price distribution of ``asset_id`` over ``horizon`` days (see module doc).

    ``overrides``: what-if inputs (engine only, :mod:`aurora_jax.forecast.scenario`); the result
    is then ``conditional``. ``drivers``: attach the engine forecast's drivers when a surrogate is
    saved for the engine version (``fit_surrogate``: fit and save a missing one first)."""
    if cfg is None:
        from aurora_jax.config import load_config

        cfg = load_config()
    horizon, num_paths, levels, ks = validate_request(horizon, num_paths, quantiles, thresholds, cfg.forecast)
    if overrides and cfg.model.name != "aurora":
        raise InvalidParameterError(
            "overrides", sorted(overrides), "none: scenario overrides need the forecast engine (model=engine)")
    store = store or open_store(cfg)
    store.require_asset(asset_id)
    prep = prepare(asset_id, as_of, store=store, cfg=cfg)
    if overrides:
        prep = with_overrides(prep, dict(overrides), cfg, store)
    if prep.is_engine and horizon > prep.engine.params.horizon_max:
        raise InvalidParameterError("horizon", horizon, f"an integer in [1, {prep.engine.params.horizon_max}]")
    sim = simulate(prep, horizon, num_paths, cfg)
    found = None
    if prep.is_engine and drivers:
        sur = load_surrogate(cfg, prep.engine, store, fit_missing=fit_surrogate, progress=bool(cfg.get("progress")))
        if sur is not None:
            from aurora_jax.train.pipeline import engine_config

            found = drivers_of(prep, sim, horizon, sur, engine_config(cfg).model.explain)
    return result_of(prep, sim, horizon, levels, ks, found)

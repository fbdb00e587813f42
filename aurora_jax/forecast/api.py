"""The public forecast call: ``aurora_jax.forecast(asset_id, horizon, as_of, ...)``.

Steps: validate the request -> as-of snapshot -> fit the configured model on data up to
``as_of`` -> simulate ``num_paths`` price paths -> quantiles per step (monotone across levels)
and threshold probabilities -> a tidy table ``asset_id, as_of, ds, step, q05 .. q95``.

The model is named by ``cfg.model.name``: ``aurora`` (the trained JAX engine, ``model=engine``:
the latest registered version for the asset; ``forecast.train_if_missing`` trains the
experiment's small default first when none exists), ``garch_t`` (GARCH(1,1)-t fitted on the
trailing ``model.garch.window_days`` daily log-returns) or ``bootstrap`` (i.i.d. resampling of the
last ``model.bootstrap.window_days`` daily log-returns). Same request and seed, same output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.data.snapshot import Snapshot, snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import InvalidParameterError
from aurora_jax.forecast.quantiles import (
    check_quantile_levels, check_thresholds, path_quantiles, quantile_column, threshold_probabilities,
)
from aurora_jax.models.garch import GarchSpec, fit_garch, simulate_garch

MODELS = ("garch_t", "bootstrap", "aurora")


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
            "data_range": list(self.data_range), "snapshot": self.snapshot_report,
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


def simulate_log_returns(
    model_cfg: DictConfig, returns: np.ndarray, horizon: int, num_paths: int, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Per-step log-return paths from the configured model, and a version id of the fit."""
    name = model_cfg.name
    if name == "garch_t":
        g = model_cfg.garch
        spec = GarchSpec(p=int(g.p), o=int(g.o), q=int(g.q), dist=str(g.dist),
                         window_days=int(g.window_days), min_days=int(g.min_days))
        fit = fit_garch(returns, spec)
        params = np.concatenate([[fit.mu, fit.omega, fit.nu], fit.alpha, fit.gamma, fit.beta])
        version = f"{spec.name}-" + hashlib.sha1(np.round(params, 10).tobytes()).hexdigest()[:10]
        return simulate_garch(fit, horizon, num_paths, rng), version
    if name == "bootstrap":
        window = returns[np.isfinite(returns)][-int(model_cfg.bootstrap.window_days):]
        if len(window) < 30:
            raise InvalidParameterError("log_returns", f"{len(window)} returns", ">= 30 returns for bootstrap")
        version = "bootstrap-" + hashlib.sha1(window.tobytes()).hexdigest()[:10]
        return rng.choice(window, size=(num_paths, horizon), replace=True), version
    raise InvalidParameterError("model.name", name, f"one of {MODELS}")


def open_store(cfg: DictConfig) -> MarketStore:
    """The configured store; an empty one is filled with the embedded default first."""
    store = MarketStore(cfg.data.root)
    if store.is_empty() and cfg.data.auto_ingest_default:
        from aurora_jax.data.ingest import ingest_default

        ingest_default(store, cfg.data)
    return store


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
) -> ForecastResult:
    """Forecast the price distribution of ``asset_id`` over ``horizon`` days (see module doc)."""
    if cfg is None:
        from aurora_jax.config import load_config

        cfg = load_config()
    if overrides:
        raise InvalidParameterError(
            "overrides", sorted(overrides), "none: scenario overrides need the forecast engine"
        )
    horizon, num_paths, levels, ks = validate_request(horizon, num_paths, quantiles, thresholds, cfg.forecast)
    store = store or open_store(cfg)
    store.require_asset(asset_id)
    if cfg.model.name == "aurora":
        return _engine_forecast(asset_id, horizon, as_of, levels, ks, num_paths, store, cfg)
    window = int(cfg.model.garch.window_days) if cfg.model.name == "garch_t" else int(cfg.model.bootstrap.window_days)
    history = snapshot_from_config(store, asset_id, as_of, cfg.data, lookback_days=int(window * 1.5) + 10,
                                   groups=("price",))
    snap = snapshot_from_config(store, asset_id, history.as_of, cfg.data)
    close = history.close().dropna()
    returns = np.diff(np.log(close.to_numpy()))
    rng = _rng(int(cfg.seed), asset_id, history.as_of)
    log_r, version = simulate_log_returns(cfg.model, returns, horizon, num_paths, rng)
    spot = float(close.iloc[-1])
    prices = spot * np.exp(np.cumsum(log_r, axis=1))
    q = path_quantiles(prices, levels)
    dates = step_dates(history, horizon)
    table = pd.DataFrame({
        "asset_id": asset_id, "as_of": history.as_of, "ds": dates, "step": np.arange(1, horizon + 1),
    })
    for j, level in enumerate(levels):
        table[quantile_column(level)] = q[:, j]
    return ForecastResult(
        asset_id=asset_id, as_of=history.as_of, horizon=horizon, model_name=cfg.model.name,
        model_version=version, spot=spot, table=table,
        thresholds=threshold_probabilities(prices, spot, ks), paths=prices,
        history=close, feature_groups_used=snap.used_groups,
        feature_groups_missing=snap.missing_groups,
        data_range=(close.index[0].isoformat(), close.index[-1].isoformat()),
        snapshot_report=snap.report(),
    )


def _load_engine(cfg: DictConfig, asset_id: str):
    from aurora_jax.errors import ModelUnavailableError
    from aurora_jax.train.registry import load_latest

    try:
        return load_latest(cfg, asset_id)
    except ModelUnavailableError:
        if not (cfg.forecast.get("train_if_missing") and cfg.asset == asset_id):
            raise
    from aurora_jax.train.pipeline import train_experiment

    train_experiment(cfg, progress=bool(cfg.progress))
    return load_latest(cfg, asset_id)


def _engine_forecast(asset_id, horizon, as_of, levels, ks, num_paths, store, cfg) -> ForecastResult:
    """The trained JAX engine (steps 3-9 in one jit-compiled call, :mod:`aurora_jax.forecast.engine`)."""
    import jax

    from aurora_jax.features.inputs import snapshot_for_inputs
    from aurora_jax.forecast.engine import forecast_from_snapshot

    params, entry = _load_engine(cfg, asset_id)
    snap, hourly = snapshot_for_inputs(store, asset_id, as_of, cfg)
    seed = int(_rng(int(cfg.seed), asset_id, snap.as_of).integers(2**31 - 1))
    out, info = forecast_from_snapshot(params, entry, snap, hourly, cfg, jax.random.key(seed), horizon,
                                       num_paths, levels=levels, thresholds=ks, update_ewaf=False)
    close = snap.close().dropna()
    spot = float(close.iloc[-1])
    prices = spot * np.exp(np.asarray(out.log_paths, dtype=np.float64))
    q = np.maximum.accumulate(np.asarray(out.quantiles, dtype=np.float64), axis=1)
    table = pd.DataFrame({"asset_id": asset_id, "as_of": snap.as_of, "ds": step_dates(snap, horizon),
                          "step": np.arange(1, horizon + 1)})
    for j, level in enumerate(levels):
        table[quantile_column(level)] = q[:, j]
    return ForecastResult(
        asset_id=asset_id, as_of=snap.as_of, horizon=horizon, model_name="aurora",
        model_version=entry.version, spot=spot, table=table,
        thresholds=threshold_probabilities(prices, spot, ks), paths=prices, history=close,
        feature_groups_used=info.groups_used, feature_groups_missing=info.groups_missing,
        data_range=(close.index[0].isoformat(), close.index[-1].isoformat()),
        snapshot_report={**snap.report(), "inputs": info.as_dict()},
    )

"""Fit the driver surrogate on the engine's own forecasts, and keep one per engine version.

For ``explain.fit.dates`` as-of dates evenly spaced over the last ``explain.fit.days`` of the
asset's history (every stage past-only per date, :func:`aurora_jax.features.inputs.inputs_at`),
the engine forecasts ``explain.fit.paths`` paths (one jit-compiled vmapped call per chunk of
``explain.fit.chunk`` dates, the last chunk padded so that nothing recompiles); the targets are
the P5 / P50 / P95 log-returns at ``explain.horizons`` and the inputs the block aggregates of
each date's ModelInputs and trend paths. Dates stay in time order, so the surrogate's fidelity is
measured on the most recent forecasts it never saw (:func:`~.surrogate.fit_surrogate`).

Surrogates are saved as ``<explain.dir>/<engine version>.json`` (atomic JSON).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Float
from rich.progress import Progress

from aurora_jax.config import REPO_ROOT
from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.inputs import ModelInputs, inputs_at
from aurora_jax.forecast.engine import EngineParams, forecast_batch
from aurora_jax.forecast.explain.blocks import block_features, feature_spec, trend_paths_of
from aurora_jax.forecast.explain.surrogate import (
    Surrogate,
    SurrogateConfig,
    fit_surrogate,
    forecast_targets,
)


def explain_dir(cfg) -> Path:
    base = Path(str(cfg.model.explain.dir))
    return base if base.is_absolute() else REPO_ROOT / base


def surrogate_path(cfg, engine_version: str) -> Path:
    return explain_dir(cfg) / f"{engine_version}.json"


def surrogate_config(cfg, horizon_max: int) -> SurrogateConfig:
    """``model.explain`` with the horizons the engine can forecast (``<= horizon_max``)."""
    scfg = SurrogateConfig.from_config(cfg.model.explain)
    hs = tuple(h for h in scfg.horizons if h <= int(horizon_max))
    if not hs:
        raise InvalidParameterError("explain.horizons", list(scfg.horizons), f"at least one horizon <= {horizon_max}")
    return SurrogateConfig(**{**scfg.__dict__, "horizons": hs})


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def engine_quantiles(params: EngineParams, inputs: ModelInputs, key, levels, horizon: int, num_paths: int,
                     chunk: int, ewaf_losses=None, progress: bool = False
                     ) -> tuple[Float[np.ndarray, "n horizon levels"], Float[np.ndarray, "n 4 horizon"]]:
    """``log(Q / spot)`` of shape ``(n, horizon, len(levels))`` and trend paths ``(n, 4, horizon)``
    for stacked ``inputs`` (one key per date, split from ``key``)."""
    n = int(np.asarray(inputs.spot).shape[0])
    chunk = max(1, min(int(chunk), n))
    keys = jax.random.split(key, n)
    lv = jnp.asarray(levels, jnp.float32)
    none = jnp.zeros((0,), jnp.float32)
    losses = None if ewaf_losses is None else jnp.asarray(ewaf_losses, jnp.float32)
    log_q, trend = [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("engine forecasts for the driver surrogate", total=n)
        for s in range(0, n, chunk):
            idx = np.arange(s, s + chunk)
            idx = np.minimum(idx, n - 1)                          # pad the last chunk (one compiled shape)
            x = _take(inputs, jnp.asarray(idx))
            out = forecast_batch(params, x, keys[idx], lv, none, int(horizon), int(num_paths), losses)
            k = min(chunk, n - s)
            q = np.asarray(out.quantiles)[:k] / np.asarray(x.spot)[:k, None, None]
            log_q.append(np.log(q))
            trend.append(trend_paths_of(out)[:k])
            bar.advance(task, k)
    return np.concatenate(log_q), np.concatenate(trend)


def fit_rows(hist, min_returns: int, days: float, dates: int, end: pd.Timestamp | None = None) -> np.ndarray:
    """Up to ``dates`` evenly spaced valid rows of ``hist`` in ``(end - days, end]``."""
    rows = hist.valid_rows(int(min_returns))
    t = hist.index[rows]
    end = t[-1] if end is None else pd.Timestamp(end)
    rows = rows[(t > end - pd.Timedelta(days=float(days))) & (t <= end)]
    if len(rows) > int(dates):
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, int(dates)).round().astype(int))]
    return rows


def fit_engine_surrogate(cfg, params: EngineParams, store, asset_id: str, *, engine_version: str = "",
                         end=None, ewaf_losses=None, progress: bool = False) -> Surrogate:
    """Surrogate of ``params`` for ``asset_id`` (module docstring). ``cfg``: root config with the
    engine sections in ``cfg.model`` (:func:`aurora_jax.train.pipeline.engine_config`)."""
    from aurora_jax.train.dataset import load_history

    e, ex = cfg.model, cfg.model.explain
    f = ex.fit
    scfg = surrogate_config(cfg, params.horizon_max)
    end_ts = None if end is None else pd.Timestamp(end)
    start = None if end_ts is None else end_ts - pd.Timedelta(days=float(f.days))
    if start is None:
        from aurora_jax.data.snapshot import price_range

        last = price_range(store, asset_id)[1]
        start = last - pd.Timedelta(days=float(f.days))
    hist, _ = load_history(store, asset_id, cfg, start, end_ts)
    rows = fit_rows(hist, int(e.inputs.min_returns), float(f.days), int(f.dates), end_ts)
    if len(rows) < int(f.min_train) * 2:
        raise InvalidParameterError("explain.fit.days", float(f.days),
                                    f"a window with >= {2 * int(f.min_train)} usable as-of dates for {asset_id} "
                                    f"(found {len(rows)})")
    inputs = inputs_at(hist, rows, params.vol_path, e)
    H = max(scfg.horizons)
    log_q, trend = engine_quantiles(params, inputs, jax.random.PRNGKey(int(f.seed)), scfg.levels, H, int(f.paths),
                                    int(f.chunk), ewaf_losses, progress)
    X = block_features(inputs, trend, scfg.trend_steps)
    Y = forecast_targets(log_q, scfg.horizons, scfg.log_widths)
    meta = {"engine_version": engine_version, "asset_id": asset_id,
            "fitted_at": dt.datetime.now(dt.UTC).isoformat(), "dates": len(rows),
            "as_of_range": [hist.index[rows[0]].isoformat(), hist.index[rows[-1]].isoformat()],
            "paths": int(f.paths), "levels": list(scfg.levels)}
    return fit_surrogate(X, Y, feature_spec(int(e.inputs.regime_dim)), scfg, meta)


def load_or_fit_surrogate(cfg, params: EngineParams, entry, store, *, fit_missing: bool = True,
                          ewaf_losses=None, progress: bool = False) -> Surrogate | None:
    """The saved surrogate of ``entry.version``; fitted and saved when missing and ``fit_missing``."""
    path = surrogate_path(cfg, entry.version)
    if path.exists():
        return Surrogate.load(path)
    if not fit_missing:
        return None
    sur = fit_engine_surrogate(cfg, params, store, entry.asset_id, engine_version=entry.version,
                               ewaf_losses=ewaf_losses, progress=progress)
    sur.save(path)
    return sur

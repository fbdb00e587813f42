"""``just bench explain``: the cost of the per-forecast drivers and the surrogate's fidelity.

For the experiment's asset (``asset=``, the newest registered engine), at ``as_of`` (null =
latest data):

* ours -- :func:`aurora_jax.forecast.explain.drivers_for` (closed-form additive Shapley values of
  the surrogate), called ``REPEATS`` times on the forecast's inputs and trend paths;
* peer -- the same block effects estimated per forecast by permutation against background rows
  (for each block, the mean surrogate change when the block is replaced by ``K`` training rows:
  ``B x K`` surrogate evaluations), the textbook model-agnostic way;
* context -- the engine forecast itself (``horizon`` days, ``num_paths`` paths, jitted, warm),
  so the drivers' overhead can be read as a share of a forecast. Budget: <= 5 ms per forecast.

Also prints the surrogate's held-out fidelity (R^2) and permutation importance per target, writes
``bench_explain.md`` and ``drivers.png`` (the bar chart of the benchmarked forecast).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_text

REPEATS = 2000
ENGINE_REPEATS = 20
BACKGROUND = 64
BUDGET_MS = 5.0


def _times(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e3


def permutation_drivers(x_row: np.ndarray, sur, background: np.ndarray, cols: list[int]) -> np.ndarray:
    """Peer: block effects ``f(x) - mean_k f(x with block <- background_k)`` for the target columns."""
    from aurora_jax.forecast.explain.blocks import BLOCKS

    fx = sur.predict(x_row[None, :])[0, cols]
    out = np.empty((len(BLOCKS), len(cols)))
    for j, b in enumerate(BLOCKS):
        idx = [i for i, fb in enumerate(sur.feature_blocks) if fb == b]
        X = np.repeat(x_row[None, :], len(background), axis=0)
        X[:, idx] = background[:, idx]
        out[j] = fx - sur.predict(X)[:, cols].mean(axis=0)
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict:
    from aurora_jax.forecast.api import open_store
    from aurora_jax.forecast.engine import engine_forecast
    from aurora_jax.forecast.explain.blocks import block_features, trend_paths_of
    from aurora_jax.forecast.explain.charts import plot_drivers
    from aurora_jax.forecast.explain.drivers import Explainable, drivers_for
    from aurora_jax.forecast.explain.fit import load_or_fit_surrogate
    from aurora_jax.forecast.explain.surrogate import TARGET_KINDS
    from aurora_jax.forecast.scenario import load_engine, prepare_base, scenario_key
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    console = Console(width=max(Console().width, 120))
    asset = str(cfg.asset)
    store = open_store(cfg)
    engine = load_engine(cfg, asset)
    t0 = time.perf_counter()
    sur = load_or_fit_surrogate(cfg, engine.params, engine.entry, store, fit_missing=True,
                                ewaf_losses=engine.ewaf_losses, progress=bool(cfg.get("progress", True)))
    surrogate_s = time.perf_counter() - t0
    base = prepare_base(store, asset, cfg.as_of, cfg, engine.params.vol_path)
    horizon, paths = int(cfg.horizon), int(cfg.num_paths)
    levels = jnp.asarray([0.05, 0.5, 0.95], jnp.float32)
    key = scenario_key(int(cfg.seed), asset, base.as_of)
    losses = None if engine.ewaf_losses is None else jnp.asarray(engine.ewaf_losses, jnp.float32)
    none = jnp.zeros((0,), jnp.float32)

    def forecast():
        out = engine_forecast(engine.params, base.inputs, key, levels, none, horizon, paths, losses)
        jax.block_until_ready(out.quantiles)
        return out

    out = forecast()                                             # compile
    t_engine = _times(forecast, ENGINE_REPEATS)
    ex = Explainable(base.inputs, trend_paths_of(out))
    k, mf = int(cfg.model.explain.top_k), float(cfg.model.explain.min_fidelity)
    drivers = drivers_for(ex, sur, horizon, top_k=k, min_fidelity=mf)
    t_ours = _times(lambda: drivers_for(ex, sur, horizon, top_k=k, min_fidelity=mf), REPEATS)
    t_inputs_only = _times(lambda: drivers_for(base.inputs, sur, horizon, top_k=k, min_fidelity=mf), REPEATS // 4)
    # peer: per-forecast permutation against background rows drawn from the surrogate's training range
    rng = np.random.default_rng(0)
    x_row = block_features(base.inputs, ex.trend_paths, sur.trend_steps)
    z = rng.standard_normal((BACKGROUND, len(sur.feature_names)))
    background = sur.x_mean + z * np.where(sur.x_sd > 0, sur.x_sd, 0.0)
    h = sur.horizon_for(horizon)
    cols = [sur.target_index(h, kk) for kk in TARGET_KINDS]
    t_peer = _times(lambda: permutation_drivers(x_row, sur, background, cols), REPEATS // 10)
    exact = sur.contributions(x_row[None, :])[0][:, cols]
    perm = permutation_drivers(x_row, sur, background, cols)

    def stats(t):
        return {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "n": len(t)}

    res = {
        "asset_id": asset, "as_of": base.as_of.isoformat(), "engine_version": engine.version,
        "horizon": horizon, "num_paths": paths, "budget_ms": BUDGET_MS,
        "drivers_for": stats(t_ours), "drivers_for_inputs_only": stats(t_inputs_only),
        "peer_permutation": {**stats(t_peer), "background_rows": BACKGROUND,
                             "max_abs_gap_to_exact": float(np.abs(perm - exact).max())},
        "engine_forecast": stats(t_engine),
        "overhead_share_of_forecast": float(np.median(t_ours) / np.median(t_engine)),
        "speedup_vs_permutation": float(np.median(t_peer) / np.median(t_ours)),
        "within_budget": bool(np.median(t_ours) <= BUDGET_MS and np.percentile(t_ours, 99) <= BUDGET_MS),
        "surrogate_seconds": round(surrogate_s, 2), "surrogate": sur.report(), "drivers": drivers,
    }
    table = Table(title=f"drivers per forecast — {asset} as of {base.as_of:%Y-%m-%d}, {engine.version}")
    for c in ("method", "median ms", "p99 ms", "calls", "vs ours"):
        table.add_column(c, justify="right" if c != "method" else "left")
    mo = np.median(t_ours)
    for name, t in (("ours: drivers_for (closed-form Shapley)", t_ours),
                    ("ours: drivers_for, ModelInputs only", t_inputs_only),
                    (f"peer: permutation, {BACKGROUND} background rows", t_peer),
                    (f"engine forecast {horizon}d x {paths:,} paths", t_engine)):
        table.add_row(name, f"{np.median(t):.3f}", f"{np.percentile(t, 99):.3f}", str(len(t)),
                      f"{np.median(t) / mo:.1f}x")
    console.print(table)
    console.print(f"budget {BUDGET_MS} ms: {'met' if res['within_budget'] else '[red]NOT met[/]'}; drivers add "
                  f"{100 * res['overhead_share_of_forecast']:.2f}% to a forecast")
    fid = Table(title="surrogate fidelity (held-out R^2) and permutation importance (R^2 drop)")
    for c in ("target", "test R^2", "cv R^2", "top blocks"):
        fid.add_column(c)
    for name, r in res["surrogate"]["targets"].items():
        top = ", ".join(f"{b} {v:.2f}" for b, v in list(r["permutation_importance"].items())[:3] if v is not None)
        fid.add_row(name, "-" if r["test_r2"] is None else f"{r['test_r2']:.3f}",
                    "-" if r["cv_r2"] is None else f"{r['cv_r2']:.3f}", top)
    console.print(fid)
    run_dir = Path(run_dir)
    plot_drivers(drivers, run_dir / "drivers.png", f"{asset} drivers as of {base.as_of:%Y-%m-%d} (h={drivers['horizon']})")
    lines = [f"# bench explain — {asset}", "", f"engine `{engine.version}`, as of {base.as_of.isoformat()}", "",
             "| method | median ms | p99 ms |", "|---|---|---|"]
    for name, key_ in (("drivers_for", "drivers_for"), ("drivers_for (inputs only)", "drivers_for_inputs_only"),
                       ("peer permutation", "peer_permutation"), ("engine forecast", "engine_forecast")):
        lines.append(f"| {name} | {res[key_]['median_ms']:.3f} | {res[key_]['p99_ms']:.3f} |")
    lines += ["", f"budget {BUDGET_MS} ms met: {res['within_budget']}", "", "![drivers](drivers.png)", ""]
    atomic_write_text(run_dir / "bench_explain.md", "\n".join(lines))
    return res

"""``just bench forecast``: raw CRPS of the engine next to GARCH(1,1)-t, and forecast latency.

Accuracy. The engine benchmarked is trained on data up to ``model.train.bench.train_end``
(2020-12-31): the newest registered version for the asset whose data ends by then, else one is
trained now (``train_experiment`` with ``model.train.end = train_end``). At weekly as-of dates in
``[eval_start, eval_end - 14 days]`` (2021-01 .. 2024-06) it forecasts 10,000 paths from the
as-of's own inputs (features past-only, the model frozen); GARCH(1,1)-t
(:mod:`aurora_jax.models.garch`, ``model.garch`` settings) is refitted at every as-of on the
trailing daily log-returns up to it and simulates the same number of paths. Score: raw
(uncalibrated) sample CRPS of the h-day log-return ``log(P_{t+h} / P_t)``, h = 1, 7, 14
(:func:`aurora_jax.eval.scoring.crps_sample`); lower is better. Also the P10-P90 and P5-P95
coverage of both.

Latency. ``engine_forecast`` (steps 3-9: trend, jumps, flow, reconstruction, quantiles,
thresholds) for 10,000 paths x 14 steps, one asset, after warm-up: median and p90 over
``latency_repeats`` calls with fresh keys, plus the same for each stage alone (where the time
goes), and the peer: ``arch`` fitting GARCH(1,1)-t + simulating the same paths.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_text
from aurora_jax.errors import ConfigError
from aurora_jax.eval.scoring import crps_sample
from aurora_jax.features.inputs import inputs_at
from aurora_jax.forecast.engine import engine_forecast, flow_condition
from aurora_jax.models.garch import GarchSpec, fit_garch, simulate_garch
from aurora_jax.models.jump_model import sample_jumps
from aurora_jax.train.dataset import load_history
from aurora_jax.train.pipeline import engine_config, open_store, train_experiment
from aurora_jax.train.registry import compatible_entries, load_params

LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def _ts(x) -> pd.Timestamp:
    t = pd.Timestamp(x)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def benchmark_model(cfg: DictConfig, asset: str, train_end: pd.Timestamp, console: Console):
    """``(params, entry)``: the newest registered engine for ``asset`` whose data ends by
    ``train_end`` (+1 day for the close stamp), else one trained now with ``train.end = train_end``."""
    limit = train_end + pd.Timedelta(days=1)
    ok = [e for e in compatible_entries(cfg, asset)
          if pd.Timestamp(e.data_ranges["history"][1]) <= limit]
    if ok:
        return load_params(ok[-1]), ok[-1]
    console.print(f"no registered {asset} engine with data ending by {train_end.date()}: training one")
    tcfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    tcfg.asset = asset
    tcfg.model.train.end = str(train_end.date())
    entry = train_experiment(tcfg, progress=bool(cfg.get("progress", True)))
    return load_params(entry), entry


def _timeit(fn, repeats: int) -> dict:
    jax.block_until_ready(fn(0))                      # warm-up (compile)
    ts = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(i + 1))
        ts.append(time.perf_counter() - t0)
    ts = np.asarray(ts) * 1e3
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)), "n": int(repeats)}


def latency(params, x, b: DictConfig, garch_returns: np.ndarray, garch_spec: GarchSpec) -> dict:
    n, H = int(b.num_paths), params.horizon_max
    levels = jnp.asarray(LEVELS)
    ks = jnp.log(jnp.asarray([0.9, 1.1], jnp.float32))
    key = jax.random.key(int(b.seed))
    keys = lambda i: jax.random.fold_in(key, i)
    reps = int(b.latency_repeats)
    trend_fn = jax.jit(lambda p, x: p.trend(x).mean)
    flow_fn = jax.jit(lambda p, x, k: p.flow.sample(flow_condition(x, p.trend(x)), k, n, p.flow_steps,
                                                 solver=p.flow_solver))
    jump_fn = jax.jit(lambda p, x, k: sample_jumps(p.jumps, x, k, H, n))
    out = {
        "engine_forecast": _timeit(lambda i: engine_forecast(params, x, keys(i), levels, ks, H, n), reps),
        "stage_trend": _timeit(lambda i: trend_fn(params, x), reps),
        "stage_flow_residuals": _timeit(lambda i: flow_fn(params, x, keys(i)), reps),
        "stage_jumps": _timeit(lambda i: jump_fn(params, x, keys(i)), reps),
    }
    paths = np.asarray(engine_forecast(params, x, keys(0), levels, ks, H, n).log_paths)
    from aurora_jax.forecast.engine import quantiles_no_crossing

    q_fn = jax.jit(quantiles_no_crossing)
    out["stage_quantiles"] = _timeit(lambda i: q_fn(jnp.asarray(paths), levels), reps)
    rng = np.random.default_rng(int(b.seed))

    def garch(i):
        fit = fit_garch(garch_returns, garch_spec)
        return simulate_garch(fit, H, n, rng)

    out["peer_arch_garch_t_fit_and_simulate"] = _timeit(garch, max(5, reps // 5))
    return out


def run(cfg: DictConfig, run_dir: Path) -> dict:
    cfg = engine_config(cfg)
    b = cfg.model.train.bench
    console = Console()
    asset = str(b.asset)
    store = open_store(cfg)
    if asset not in store.assets():
        raise ConfigError(f"{asset} is not in the store at {store.root}: run "
                          "`just ingest data.source_dir=../shared/data` first")
    train_end, start, end = _ts(b.train_end), _ts(b.eval_start), _ts(b.eval_end)
    params, entry = benchmark_model(cfg, asset, train_end, console)
    hist, _ = load_history(store, asset, cfg, None, end)
    H = params.horizon_max
    horizons = [int(h) for h in b.horizons if int(h) <= H]
    idx = hist.index
    grid = pd.date_range(start, end - pd.Timedelta(days=H), freq=f"{int(b.every_days)}D", tz="UTC")
    rows = np.unique(np.searchsorted(idx, grid, side="right") - 1)
    rows = rows[(rows >= 0) & (rows + H < len(idx)) & (idx[rows] >= start)]
    log_close = np.log(hist.close)
    inputs = inputs_at(hist, rows, params.vol_path, cfg.model)
    spec = GarchSpec(p=int(cfg.model.garch.p), o=0, q=int(cfg.model.garch.q), dist="t",
                     window_days=int(cfg.model.garch.window_days), min_days=int(cfg.model.garch.min_days))
    n = int(b.num_paths)
    levels = jnp.asarray(LEVELS)
    key = jax.random.key(int(b.seed))
    rng = np.random.default_rng(int(b.seed))
    rec = []
    console.print(f"scoring {len(rows)} weekly as-of dates {idx[rows[0]].date()} .. {idx[rows[-1]].date()}")
    for j, row in enumerate(rows):
        x = jax.tree_util.tree_map(lambda a, j=j: a[j], inputs)
        ours = np.asarray(engine_forecast(params, x, jax.random.fold_in(key, j), levels, jnp.zeros((0,)), H, n).log_paths)
        r_past = hist.returns[: row + 1]
        r_past = r_past[np.isfinite(r_past)]
        g = np.cumsum(simulate_garch(fit_garch(r_past, spec), H, n, rng), axis=1)
        for h in horizons:
            y = float(log_close[row + h] - log_close[row])
            rec_h = {"as_of": idx[row], "h": h, "y": y}
            for name, paths in (("aurora", ours[:, h - 1]), ("garch_t", g[:, h - 1])):
                q = np.quantile(paths, [0.05, 0.10, 0.90, 0.95])
                rec_h[f"crps_{name}"] = crps_sample(paths, y)
                rec_h[f"cov80_{name}"] = float(q[1] <= y <= q[2])
                rec_h[f"cov90_{name}"] = float(q[0] <= y <= q[3])
            rec.append(rec_h)
    df = pd.DataFrame(rec)
    summary = {}
    table = Table(title=f"bench forecast: raw CRPS of the h-day log-return, {asset}, {len(rows)} weekly as-of dates "
                        f"{idx[rows[0]].date()}..{idx[rows[-1]].date()} (model trained to {train_end.date()})")
    for col in ("h", "aurora CRPS", "GARCH(1,1)-t CRPS", "ratio", "aurora P10-P90 / P5-P95", "GARCH P10-P90 / P5-P95"):
        table.add_column(col, justify="right")
    for h in horizons:
        d = df[df.h == h]
        s = {k: float(d[k].mean()) for k in d.columns if k.startswith(("crps_", "cov"))}
        s["ratio_aurora_over_garch"] = s["crps_aurora"] / s["crps_garch_t"]
        s["aurora_wins_share"] = float((d.crps_aurora < d.crps_garch_t).mean())
        summary[str(h)] = s
        table.add_row(str(h), f"{s['crps_aurora']:.5f}", f"{s['crps_garch_t']:.5f}", f"{s['ratio_aurora_over_garch']:.3f}",
                      f"{s['cov80_aurora']:.2f} / {s['cov90_aurora']:.2f}", f"{s['cov80_garch_t']:.2f} / {s['cov90_garch_t']:.2f}")
    console.print(table)
    x_last = jax.tree_util.tree_map(lambda a: a[-1], inputs)
    r_last = hist.returns[: rows[-1] + 1]
    lat = latency(params, x_last, b, r_last[np.isfinite(r_last)], spec)
    lt = Table(title=f"latency: {n} paths x {H} steps, one asset, after warm-up (device: {jax.devices()[0].platform})")
    for col in ("what", "median ms", "p90 ms", "n"):
        lt.add_column(col, justify="right")
    for k, v in lat.items():
        lt.add_row(k, f"{v['median_ms']:.1f}", f"{v['p90_ms']:.1f}", str(v["n"]))
    ratio = lat["peer_arch_garch_t_fit_and_simulate"]["median_ms"] / lat["engine_forecast"]["median_ms"]
    lt.caption = (f"arch GARCH-t fit + simulate / engine = {ratio:.2f} (> 1: the engine is faster); "
                  "target for the compiled engine function: <= 30 ms")
    console.print(lt)
    result = {"asset": asset, "model_version": entry.version, "model_data": entry.data_ranges, "teacher": entry.teacher,
              "eval_dates": len(rows), "eval_range": [str(idx[rows[0]].date()), str(idx[rows[-1]].date())],
              "num_paths": n, "crps": summary, "latency": lat, "arch_garch_time_over_engine_time": ratio,
              "crps_function": "aurora_jax.eval.scoring.crps_sample"}
    if run_dir is not None:
        _report(Path(run_dir), df, result, horizons)
    return result


def _report(run_dir: Path, df: pd.DataFrame, result: dict, horizons: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df.to_csv(run_dir / "bench_forecast_scores.csv", index=False)
    fig, axes = plt.subplots(1, len(horizons), figsize=(5 * len(horizons), 3.6), squeeze=False)
    for ax, h in zip(axes[0], horizons):
        d = df[df.h == h].set_index("as_of")
        for name, label in (("aurora", "aurora (raw)"), ("garch_t", "GARCH(1,1)-t")):
            ax.plot(d.index, d[f"crps_{name}"].rolling(13, min_periods=4).mean(), label=label)
        ax.set_title(f"h = {h}: CRPS, 13-week rolling mean")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "bench_forecast_crps.png", dpi=110)
    plt.close(fig)
    lines = [f"# bench forecast: {result['asset']}", "",
             (f"Model `{result['model_version']}` (teacher: {result['teacher']}), data {result['model_data']['history']}; "
              f"{result['eval_dates']} weekly as-of dates {result['eval_range'][0]}..{result['eval_range'][1]}, "
              f"{result['num_paths']} paths. Raw (uncalibrated) CRPS of the h-day log-return; lower is better."), "",
             "| h | aurora | GARCH(1,1)-t | ratio | aurora wins | aurora P10-P90 / P5-P95 | GARCH P10-P90 / P5-P95 |",
             "|---|---|---|---|---|---|---|"]
    for h, s in result["crps"].items():
        lines.append(f"| {h} | {s['crps_aurora']:.5f} | {s['crps_garch_t']:.5f} | {s['ratio_aurora_over_garch']:.3f} | "
                     f"{s['aurora_wins_share']:.2f} | {s['cov80_aurora']:.2f} / {s['cov90_aurora']:.2f} | "
                     f"{s['cov80_garch_t']:.2f} / {s['cov90_garch_t']:.2f} |")
    lines += ["", "| latency | median ms | p90 ms |", "|---|---|---|"]
    for k, v in result["latency"].items():
        lines.append(f"| {k} | {v['median_ms']:.1f} | {v['p90_ms']:.1f} |")
    lines += ["", "![CRPS](bench_forecast_crps.png)", ""]
    atomic_write_text(run_dir / "bench_forecast.md", "\n".join(lines))

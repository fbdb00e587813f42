"""``just nightly``: forecast every configured asset for every horizon as of the latest data.

For each run (``D`` = the as-of date, ``serving.nightly.as_of`` or the latest data):

1. **Outcomes first.** Every earlier nightly forecast (``<out_dir>/*/parts/*.parquet``) whose
   target time is now observable gets its realised close: the step-``k`` raw quantiles at the
   calibration levels go into the asset's conformal buffer (``ConformalCalibrator.update``, key
   ``asset|as_of|k|model_version``), and a row is added to ``<out_dir>/scores.parquet``
   (issued P5/P10/P90/P95, band hits, CRPS of the ``k``-day log-return from the stored quantile
   grid ``(i - 0.5) / K``, regime). Both are keyed, so a second run adds nothing twice.
2. **Forecasts.** Per asset: one ``horizon``-step forecast (step ``k`` is the ``k``-day
   forecast; with the engine, ``model=engine``, the live call
   :func:`~aurora_jax.forecast.engine.forecast_from_snapshot` with ``update_ewaf=True``: the trend
   ensemble's EWAF state kept next to the model version first scores its pending forecasts
   against the closes realised since, then stores this night's; an as-of not after the stored
   one changes nothing, so a rerun or a resumed run updates it once), calibrated with the
   updated buffers, written to
   ``<out_dir>/<D>/parts/<asset>.parquet`` and ``fan_<asset>.png``. An asset whose part already
   exists is not redone, so a crashed run resumes where it stopped.
3. ``<out_dir>/<D>/quantiles.parquet`` (all assets), ``summary.json`` and the printed summary
   table: asset, P5/P50/P95 at the last step, regime, P10–P90 coverage to date.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aurora_jax.atomic import atomic_write, atomic_write_json
from aurora_jax.errors import ConfigError, ModelUnavailableError
from aurora_jax.eval.scoring import crps_sample
from aurora_jax.forecast.api import open_store
from aurora_jax.forecast.fan_chart import plot_fan_chart
from aurora_jax.forecast.quantiles import quantile_column
from serving.app import build_forecaster
from serving.calibration import CalibrationService
from serving.forecaster import Forecaster, ForecastJob

SCORE_COLUMNS = ["key", "asset_id", "as_of", "horizon", "target_ds", "spot", "realized", "q05", "q10", "q90",
                 "q95", "covered_80", "covered_90", "crps", "regime", "model_version"]


def grid_levels(k: int) -> tuple[float, ...]:
    return tuple((i - 0.5) / k for i in range(1, k + 1))


def _write_parquet(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def forecast_asset(forecaster: Forecaster, calib: CalibrationService, asset: str, as_of,
                   ncfg: DictConfig, display: tuple[float, ...], seed: int) -> tuple[pd.DataFrame, object]:
    """The nightly rows of one asset (one per step) and its prepared model."""
    prep = forecaster.prepare(asset, forecaster.resolve_as_of(asset, as_of))
    horizon = int(ncfg.horizon)
    grid = grid_levels(int(ncfg.crps_levels))
    cal_levels = calib.levels
    requested = tuple(sorted({*display, *cal_levels}))
    levels = tuple(sorted({*requested, *grid}))
    job = ForecastJob(prep, horizon, int(ncfg.num_paths), levels, (), seed)
    sim = forecaster.nightly(job)
    key = f"{asset}|{prep.as_of.isoformat()}|nightly"
    issued, body, version = calib.apply(asset, prep.regime, prep.vol_z, levels, sim.quantiles, requested, False, key)
    col = {lv: j for j, lv in enumerate(levels)}
    req_col = {lv: j for j, lv in enumerate(requested)}
    rows = []
    for k in range(horizon):
        row = {"asset_id": asset, "as_of": prep.as_of, "ds": prep.dates[k], "horizon": k + 1, "spot": prep.spot,
               "regime": prep.regime, "model_version": prep.model_version, "calibration_version": version,
               "calibration_buffer": body.buffer, "num_paths": int(ncfg.num_paths)}
        for lv in display:
            row[quantile_column(lv)] = float(issued[k, req_col[lv]])
        row["cal_levels"] = list(cal_levels)
        row["raw_cal"] = [float(sim.quantiles[k, col[lv]]) for lv in cal_levels]
        row["issued_cal"] = [float(issued[k, req_col[lv]]) for lv in cal_levels]
        row["grid"] = [float(sim.quantiles[k, col[lv]]) for lv in grid]
        rows.append(row)
    return pd.DataFrame(rows), prep


def realized_close(close: pd.Series, ds: pd.Timestamp) -> float | None:
    """The close stamped at ``ds`` (the step's observable time), if it exists."""
    if ds in close.index:
        v = close.loc[ds]
        v = float(v.iloc[-1] if isinstance(v, pd.Series) else v)
        return v if np.isfinite(v) else None
    return None


def update_outcomes(out_root: Path, forecaster: Forecaster, calib: CalibrationService,
                    assets: list[str], as_of, console: Console) -> dict[str, int]:
    """Step 1 of the module docstring; returns the number of new outcomes per asset."""
    parts = sorted(out_root.glob("*/parts/*.parquet"))
    if not parts:
        return {a: 0 for a in assets}
    past = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    scores_path = out_root / "scores.parquet"
    scores = pd.read_parquet(scores_path) if scores_path.exists() else pd.DataFrame(columns=SCORE_COLUMNS)
    have = set(scores["key"])
    added: dict[str, int] = {}
    new_rows = []
    for asset in assets:
        added[asset] = 0
        mine = past[past["asset_id"] == asset]
        if mine.empty:
            continue
        now = forecaster.resolve_as_of(asset, as_of)
        close = forecaster.prepare(asset, now).history
        cal, _ = calib.get(asset)
        changed = False
        for r in mine.itertuples(index=False):
            ds = pd.Timestamp(r.ds)
            if ds > now:
                continue
            y = realized_close(close, ds)
            if y is None:
                continue
            key = f"{asset}|{pd.Timestamp(r.as_of).isoformat()}|{int(r.horizon)}|{r.model_version}"
            levels = [float(x) for x in r.cal_levels]
            raw = dict(zip(levels, map(float, r.raw_cal)))
            issued = dict(zip(levels, map(float, r.issued_cal)))
            regime = r.regime if r.regime in calib.config.regimes else "normal"
            res = cal.update(raw, y, regime, int(r.horizon), key, calibrated_quantiles=issued)
            changed |= res.applied
            if key in have:
                continue
            grid = np.log(np.asarray(r.grid, dtype=float) / r.spot)
            q = {lv: issued[lv] for lv in (0.05, 0.10, 0.90, 0.95) if lv in issued}
            new_rows.append({
                "key": key, "asset_id": asset, "as_of": pd.Timestamp(r.as_of), "horizon": int(r.horizon),
                "target_ds": ds, "spot": float(r.spot), "realized": y,
                "q05": q.get(0.05, np.nan), "q10": q.get(0.10, np.nan), "q90": q.get(0.90, np.nan),
                "q95": q.get(0.95, np.nan),
                "covered_80": bool(q.get(0.10, np.inf) <= y <= q.get(0.90, -np.inf)),
                "covered_90": bool(q.get(0.05, np.inf) <= y <= q.get(0.95, -np.inf)),
                "crps": crps_sample(grid, float(np.log(y / r.spot))), "regime": r.regime,
                "model_version": r.model_version,
            })
            have.add(key)
            added[asset] += 1
        if changed:
            cal.save(calib.path(asset))
    if new_rows:
        scores = pd.concat([scores, pd.DataFrame(new_rows)], ignore_index=True) if len(scores) else pd.DataFrame(new_rows)
        _write_parquet(scores_path, scores[SCORE_COLUMNS])
    console.print(f"outcomes added to the calibration buffers: {added}")
    return added


def coverage_to_date(out_root: Path) -> dict[str, tuple[float, int]]:
    path = out_root / "scores.parquet"
    if not path.exists():
        return {}
    s = pd.read_parquet(path)
    return {a: (float(g["covered_80"].mean()), len(g)) for a, g in s.groupby("asset_id")}


def run(cfg: DictConfig, targets: list[str] | None = None, run_dir: Path | None = None) -> dict:
    ncfg = cfg.serving.nightly
    console = Console()
    store = open_store(cfg)
    forecaster = build_forecaster(cfg, store)
    assets = [str(a) for a in (ncfg.assets or forecaster.assets)]
    unknown = [a for a in assets if a not in forecaster.assets]
    if unknown:
        raise ConfigError(f"serving.nightly.assets {unknown} are not served: known {forecaster.assets}")
    required = set(assets) if ncfg.assets is not None else forecaster.required_assets()
    skipped = {a: why for a in assets if (why := forecaster.has_model(a)) is not None}
    bad = {a: why for a, why in skipped.items() if a in required}
    if bad or len(skipped) == len(assets):
        raise ModelUnavailableError("nightly: no model for " + "; ".join(f"{a}: {w}" for a, w in skipped.items()))
    assets = [a for a in assets if a not in skipped]
    for a, why in skipped.items():
        console.print(f"skipped {a}: {why}")
    if int(ncfg.horizon) > int(cfg.forecast.max_horizon) or int(ncfg.horizon) < 1:
        raise ConfigError(f"serving.nightly.horizon={ncfg.horizon}: allowed 1 .. {cfg.forecast.max_horizon}")
    calib = CalibrationService(cfg.calibration, Path(cfg.serving.calibration_dir))
    out_root = Path(ncfg.out_dir)
    as_of = ncfg.as_of
    stamp = max(forecaster.resolve_as_of(a, as_of) for a in assets)
    night = out_root / stamp.strftime("%Y-%m-%d")
    (night / "parts").mkdir(parents=True, exist_ok=True)

    added = update_outcomes(out_root, forecaster, calib, assets, as_of, console)

    display = tuple(float(q) for q in cfg.quantiles)
    done, resumed = [], []
    with Progress(console=console, disable=not bool(cfg.progress), transient=True) as bar:
        task = bar.add_task(f"nightly {night.name}", total=len(assets))
        for asset in assets:
            part = night / "parts" / f"{asset}.parquet"
            chart = night / f"fan_{asset}.png"
            if part.exists() and chart.exists():
                resumed.append(asset)
            else:
                table, prep = forecast_asset(forecaster, calib, asset, as_of, ncfg, display, int(cfg.seed))
                shown = table[["asset_id", "as_of", "ds", "horizon",
                               *[quantile_column(q) for q in display]]].rename(columns={"horizon": "step"})
                plot_fan_chart(prep.history, shown, chart, f"{asset} {int(ncfg.horizon)}-day cone as of "
                               f"{prep.as_of:%Y-%m-%d} ({prep.model_version})", int(ncfg.chart_history_days))
                _write_parquet(part, table)  # last: its presence marks the asset as finished
            done.append(asset)
            bar.advance(task)

    table = pd.concat([pd.read_parquet(night / "parts" / f"{a}.parquet") for a in assets], ignore_index=True)
    _write_parquet(night / "quantiles.parquet", table)
    cov = coverage_to_date(out_root)
    summary = []
    last = int(ncfg.horizon)
    for asset in assets:
        row = table[(table["asset_id"] == asset) & (table["horizon"] == last)].iloc[0]
        c, n = cov.get(asset, (float("nan"), 0))
        summary.append({"asset_id": asset, "as_of": pd.Timestamp(row["as_of"]).isoformat(), "horizon": last,
                        "p05": float(row["q05"]), "p50": float(row["q50"]), "p95": float(row["q95"]),
                        "regime": str(row["regime"]), "coverage_p10_p90_to_date": None if n == 0 else c,
                        "scored_outcomes": n, "model_version": str(row["model_version"]),
                        "calibration_buffer": str(row["calibration_buffer"])})
    t = Table(title=f"nightly {night.name}: P5/P50/P95 at h = {last}")
    for col in ("asset", "P5", "P50", "P95", "regime", "P10–P90 coverage to date", "buffer"):
        t.add_column(col, justify="right")
    for s in summary:
        cov_s = "—" if s["scored_outcomes"] == 0 else f"{s['coverage_p10_p90_to_date']:.3f} (n={s['scored_outcomes']})"
        t.add_row(s["asset_id"], f"{s['p05']:,.2f}", f"{s['p50']:,.2f}", f"{s['p95']:,.2f}", s["regime"], cov_s,
                  s["calibration_buffer"])
    console.print(t)
    if resumed:
        console.print(f"resumed: {resumed} were already finished and not redone")
    result = {"night": night.name, "out_dir": str(night), "assets": done, "resumed": resumed, "skipped": skipped,
              "outcomes_added": added, "summary": summary}
    atomic_write_json(night / "summary.json", result)
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "nightly.json", result)
    print(night)
    return result

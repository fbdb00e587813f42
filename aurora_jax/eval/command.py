"""``just eval``: walk-forward evaluation of ``eval.methods`` against each other on one asset.

Writes ``metrics.json`` (atomic), ``scores.csv``, ``signals.csv``, ``report.md`` and PNG charts
into the run folder, prints the headline table, and prints the metrics.json path last.
Bad input (fewer than ``eval.min_asof_dates`` as-of dates, a start without enough history for
the lookback and warm-up, an unknown method) fails before any computation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write, atomic_write_json, atomic_write_text
from aurora_jax.calibrate.arma import MODELS
from aurora_jax.calibrate.router import evaluate_router
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.eval import metrics as M
from aurora_jax.eval.data import SeriesCache
from aurora_jax.eval.peers.registry import PEERS, build_forecaster
from aurora_jax.eval.report import write_report
from aurora_jax.eval.transfer import transfer_check
from aurora_jax.eval.walkforward import (
    CAL_SUFFIX,
    WalkForward,
    WalkForwardResult,
    WalkForwardSettings,
    _ts,
)


def resolve_methods(cfg: DictConfig) -> tuple[list, dict[str, str]]:
    """Forecasters for ``eval.methods`` (unknown names raise; missing modules are skipped and
    reported when ``eval.skip_unavailable``)."""
    names = [str(m) for m in cfg.eval.methods]
    if not names:
        raise InvalidParameterError("eval.methods", [], "a non-empty list of methods")
    if len(set(names)) != len(names):
        raise InvalidParameterError("eval.methods", names, "distinct names")
    allowed = list(PEERS) + [str(k) for k in cfg.eval.forecasters]
    for n in names:
        if n not in allowed:
            raise InvalidParameterError("eval.methods", n, f"one of {allowed}")
    out, unavailable = [], {}
    for n in names:
        try:
            out.append(build_forecaster(n, cfg))
        except ModelUnavailableError as exc:
            if not bool(cfg.eval.skip_unavailable):
                raise
            unavailable[n] = str(exc)
    if not out:
        raise ModelUnavailableError(f"none of eval.methods={names} is available: {unavailable}")
    return out, unavailable


def _router_summary(signals: pd.DataFrame, fits: list[dict], cal: DictConfig) -> dict:
    s = signals[~signals["warmup"]]
    probs = np.asarray(s["router_probs"].tolist(), dtype=float)
    labels = np.asarray([MODELS.index(x) for x in s["window_label"]])
    oos = evaluate_router(probs, labels, int(cal.router.ece_bins))
    return {"oos": oos, "ece_target": float(cal.router.ece_target),
            "ece_pass": bool(oos["ece"] <= float(cal.router.ece_target)), "fits": fits,
            "training": "real BTC windows + windows simulated from fitted AR/ARMA/GARCH (BIC-labelled);"
                        " teacher windows: " + ("on" if int(cal.router.teacher_windows) > 0 else "not wired")}


def _flips(labels: pd.Series, years: float) -> float:
    lab = labels.dropna()
    return float((lab != lab.shift()).iloc[1:].sum() / years) if len(lab) > 1 and years > 0 else float("nan")


def _regime_summary(signals: pd.DataFrame, change_points: dict) -> dict:
    s = signals[~signals["warmup"]]
    years = (s.index[-1] - s.index[0]).days / 365.25 if len(s) > 1 else 0.0
    out = {
        "shares": {k: round(float(v), 3) for k, v in s["regime"].value_counts(normalize=True).items()},
        "flips_per_year": _flips(s["regime"], years),
        "trans_share": float(s["trans"].mean()),
        "alarms": {k: len(v) for k, v in change_points.items()},
    }
    hm = s["hmm_regime"].dropna()
    if len(hm):
        out["hmm_agreement"] = float((s.loc[hm.index, "regime"] == hm).mean())
        out["hmm_shares"] = {k: round(float(v), 3) for k, v in hm.value_counts(normalize=True).items()}
        out["hmm_flips_per_year"] = _flips(hm, years)
    return out


def build_metrics(cfg: DictConfig, result: WalkForwardResult, peers: list[str]) -> dict:
    s: WalkForwardSettings = result.settings
    ev = cfg.eval
    sc = result.scores
    best = M.best_peers(sc, peers, float(ev.targets.full_coverage_share))
    headline = [int(h) for h in ev.headline_horizons]
    ours = str(ev.ours)
    cands = [ours + CAL_SUFFIX, ours] + [p + CAL_SUFFIX for p in peers]
    present = set(sc["method"].unique()) if len(sc) else set()
    targets = {"ours": ours, "crps_improvement": float(ev.targets.crps_improvement),
               "candidates": [M.check_targets(sc, c, best, ev.targets, headline)
                                            for c in cands if c in present or c.startswith(ours)]}
    if "garch_t" in present and "garch_t" + CAL_SUFFIX in present:
        raw = sc[sc["method"] == "garch_t"]
        cal = sc[sc["method"] == "garch_t" + CAL_SUFFIX]
        tol = float(ev.targets.coverage_tolerance)
        g = {"raw_cov80": float(raw["cov80"].mean()), "raw_cov90": float(raw["cov90"].mean()),
             "cal_cov80": float(cal["cov80"].mean()), "cal_cov90": float(cal["cov90"].mean()),
             "tolerance": tol}
        g["pass"] = bool(abs(g["cal_cov80"] - 0.8) <= tol and abs(g["cal_cov90"] - 0.9) <= tol)
        targets["garch_conformal_nominal"] = g
    recal = None
    if result.grids is not None and len(sc):
        recal = M.recalibration(sc, result.grids, s.recal_min_n)
        targets["recalibration_reach"] = M.recalibration_reach(
            recal, best, [ours + CAL_SUFFIX, ours], float(ev.targets.crps_improvement), headline)
    out = {
        "asset": s.asset,
        "period": {"start": str(s.start.date()), "end": str(s.end.date()), "step_days": s.step_days,
                   "warmup_days": s.warmup_days, "horizon": s.horizon, "num_paths": s.num_paths,
                   "refit_every_days": s.refit_every_days, "data_root": str(cfg.data.root)},
        "n_asof": int(sc["as_of"].nunique()) if len(sc) else 0,
        "methods": sorted(present),
        "unavailable": result.unavailable,
        "skipped_dates": result.skipped,
        "unscored": result.unscored,
        "headline_horizons": headline,
        "metrics": M.by_horizon(sc, int(ev.report.pit_bins)),
        "per_regime": M.per_regime(sc),
        "best_peer": best,
        "dm": M.dm_table(sc, best, s.step_days, "raw"),
        "dm_vs_best_any": M.dm_table(sc, best, s.step_days, "any"),
        "targets": targets,
        "router": _router_summary(result.signals, result.router_fits, cfg.calibration),
        "regimes": _regime_summary(result.signals, result.change_points),
        "change_points": result.change_points,
        "calibrator_state": {m: {"sizes": c.sizes(), "counters": c.counters}
                             for m, c in result.calibrators.items()},
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
    }
    if recal is not None:
        out["recalibration"] = recal
    return out


def print_table(console: Console, metrics: dict) -> None:
    hs = [str(h) for h in metrics["headline_horizons"]]
    t = Table(title=f"walk-forward {metrics['asset']} {metrics['period']['start']}..{metrics['period']['end']}")
    t.add_column("method")
    for h in hs:
        t.add_column(f"CRPS h{h}", justify="right")
    t.add_column("cov80", justify="right")
    t.add_column("cov90", justify="right")
    t.add_column("width90", justify="right")
    t.add_column("n", justify="right")
    for m, d in metrics["metrics"].items():
        t.add_row(m, *[f"{d[h]['crps']:.3f}" if h in d else "—" for h in hs],
                  f"{d['all']['cov80']:.3f}", f"{d['all']['cov90']:.3f}", f"{d['all']['width']:.2f}",
                  str(d["all"]["n"]))
    console.print(t)


def run(cfg: DictConfig, targets: list[str] | None = None, run_dir: Path | None = None) -> dict:
    from aurora_jax.data.store import MarketStore

    console = Console()
    run_dir = Path(run_dir or ".")
    settings = WalkForwardSettings.from_config(cfg)
    forecasters, unavailable = resolve_methods(cfg)
    store = MarketStore(cfg.data.root)
    cache = SeriesCache(store)
    settings.validate(cache.asset(settings.asset))
    tc = cfg.eval.transfer
    transfer_fc = None
    if bool(tc.enabled):
        cache.asset(str(tc.target))  # unknown target asset: error now, not after the run
        transfer_fc = build_forecaster(str(tc.method), cfg)
    t0 = time.perf_counter()
    wf = WalkForward(cfg, cache, forecasters, unavailable,
                     snapshot_at=_ts(tc.start) if transfer_fc is not None else None)
    result = wf.run()
    peers = [f.name for f in forecasters if f.name in PEERS]
    metrics = build_metrics(cfg, result, peers)
    if transfer_fc is not None:
        try:
            metrics["transfer"] = transfer_check(cfg, cache, transfer_fc, result.snapshot)
        except (ModelUnavailableError, InvalidParameterError) as exc:
            metrics["transfer"] = {"error": str(exc)}
    metrics["forecasters"] = {f.name: f.describe() for f in forecasters if callable(getattr(f, "describe", None))}
    metrics["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    metrics["config"] = {"eval": OmegaConf.to_container(cfg.eval, resolve=True),
                         "calibration": OmegaConf.to_container(cfg.calibration, resolve=True)}
    atomic_write(run_dir / "scores.csv", lambda p: result.scores.to_csv(p, index=False))
    atomic_write_text(run_dir / "signals.csv", result.signals.to_csv())
    for name, cal in result.calibrators.items():
        cal.save(run_dir / "conformal" / f"{name}.json")
    write_report(result, metrics, cache.asset(settings.asset).close, run_dir,
                 int(cfg.eval.report.fan_dates), int(cfg.eval.report.rolling_days),
                 int(cfg.eval.report.pit_bins))
    path = atomic_write_json(run_dir / "metrics.json", metrics)
    print_table(console, metrics)
    console.print(str(path.resolve()), soft_wrap=True, highlight=False)
    return metrics

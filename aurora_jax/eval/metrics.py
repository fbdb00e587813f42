"""Aggregate walk-forward scores into the machine-readable metrics and the target checks.

``by_horizon``: method -> horizon (and ``"all"``) -> {crps, cov80, cov90, width, width80,
tail_miss, n, pinball, pit_hist}. ``per_regime``: method -> regime -> horizon bucket (and
``"all"``) -> {crps, cov80, cov90, width, n}. The best peer at a horizon is the raw peer with the
lowest mean CRPS among those scored on at least ``full_coverage_share`` of the dates (a peer
that only exists on part of the period, like the DVOL Gaussian, is compared on its own dates
in the DM table). Diebold–Mariano tests compare every method with that best peer on their
common dates (Newey–West lag ``ceil(h / step_days) - 1``). ``recalibration``: method -> horizon
-> the CRPS after a hindsight PIT recalibration per horizon and per horizon x regime
(:mod:`aurora_jax.eval.recalibration`), and ``recalibration_reach`` asks whether even that would
bring a method to the CRPS target.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.dm import diebold_mariano
from aurora_jax.eval.recalibration import recalibrated_crps
from aurora_jax.eval.scoring import crps_rows
from aurora_jax.eval.walkforward import CAL_SUFFIX

NOMINAL = {"cov80": 0.80, "cov90": 0.90}


def _summary(df: pd.DataFrame, pin_cols: list[str], pit_bins: int, full: bool) -> dict:
    out = {
        "crps": float(df["crps"].mean()),
        "cov80": float(df["cov80"].mean()),
        "cov90": float(df["cov90"].mean()),
        "width": float(df["width90"].mean()),
        "width80": float(df["width80"].mean()),
        "tail_miss": float(df["tail_miss"].mean()),
        "n": len(df),
    }
    if full:
        out["pinball"] = {c[4:]: float(df[c].mean()) for c in pin_cols}
        hist, _ = np.histogram(df["pit"].to_numpy(), bins=pit_bins, range=(0.0, 1.0))
        out["pit_hist"] = [int(v) for v in hist]
        if "kappa" in df:
            out["kappa"] = float(df["kappa"].mean())
            out["kappa_plus"] = float(df["kappa_plus"].mean())
    return out


def by_horizon(scores: pd.DataFrame, pit_bins: int = 10) -> dict:
    pin_cols = [c for c in scores.columns if c.startswith("pin_")]
    out: dict = {}
    for m, dm in scores.groupby("method", sort=True):
        d = {str(h): _summary(dh, pin_cols, pit_bins, True) for h, dh in dm.groupby("h")}
        d["all"] = _summary(dm, pin_cols, pit_bins, True)
        out[str(m)] = d
    return out


def per_regime(scores: pd.DataFrame) -> dict:
    out: dict = {}
    for m, dm in scores.groupby("method", sort=True):
        reg: dict = {}
        for r, dr in dm.groupby("regime"):
            cell = {str(b): _summary(db, [], 0, False) for b, db in dr.groupby("bucket")}
            cell["all"] = _summary(dr, [], 0, False)
            reg[str(r)] = cell
        out[str(m)] = reg
    return out


def best_peers(scores: pd.DataFrame, peers: list[str], share: float) -> dict:
    """Per horizon: best raw peer and best peer over raw and conformal variants."""
    out: dict = {}
    n_dates = scores.groupby("h")["as_of"].nunique()
    for h, dh in scores.groupby("h"):
        crps = dh.groupby("method")["crps"].mean()
        cnt = dh.groupby("method")["as_of"].nunique()
        full = [m for m in crps.index if cnt[m] >= share * n_dates[h]]
        raw = [m for m in full if m in peers]
        anyv = [m for m in full if m in peers or (m.endswith(CAL_SUFFIX) and m[: -len(CAL_SUFFIX)] in peers)]
        entry = {}
        if raw:
            b = min(raw, key=lambda m: crps[m])
            entry["raw"] = {"method": b, "crps": float(crps[b])}
        if anyv:
            b = min(anyv, key=lambda m: crps[m])
            entry["any"] = {"method": b, "crps": float(crps[b])}
        out[str(h)] = entry
    return out


def dm_table(scores: pd.DataFrame, best: dict, step_days: int, key: str = "raw") -> dict:
    out: dict = {}
    for h, dh in scores.groupby("h"):
        b = best.get(str(h), {}).get(key)
        if not b:
            continue
        piv = dh.pivot_table(index="as_of", columns="method", values="crps")
        lag = max(math.ceil(int(h) / step_days) - 1, 0)
        for m in piv.columns:
            if m == b["method"]:
                continue
            both = piv[[m, b["method"]]].dropna()
            r = diebold_mariano(both[m].to_numpy(), both[b["method"]].to_numpy(), lag)
            d = r.as_dict()
            d["vs"] = b["method"]
            d["crps"] = float(both[m].mean())
            d["crps_best"] = float(both[b["method"]].mean())
            d["rel_diff"] = float(d["crps"] / d["crps_best"] - 1.0) if d["crps_best"] else float("nan")
            out.setdefault(str(m), {})[str(h)] = d
    return out


def check_targets(scores: pd.DataFrame, candidate: str, best: dict, tcfg: DictConfig,
                  headline: list[int]) -> dict:
    """The issue's bar for one method: CRPS vs the best raw peer at the headline horizons
    (on common dates), overall coverage, and coverage per regime x horizon bucket and per
    regime (cells with >= regime_min_n points)."""
    dm = scores[scores["method"] == candidate]
    res: dict = {"method": candidate, "n": len(dm)}
    if dm.empty:
        res["available"] = False
        return res
    res["available"] = True
    crps = {}
    ok_crps = True
    for h in headline:
        b = best.get(str(h), {}).get("raw")
        if not b:
            continue
        dh = scores[scores["h"] == h].pivot_table(index="as_of", columns="method", values="crps")
        if candidate not in dh:
            continue
        both = dh[[candidate, b["method"]]].dropna()
        imp = 1.0 - both[candidate].mean() / both[b["method"]].mean()
        passed = bool(imp >= float(tcfg.crps_improvement))
        ok_crps &= passed
        crps[str(h)] = {"best_peer": b["method"], "crps": float(both[candidate].mean()),
                        "crps_best_peer": float(both[b["method"]].mean()),
                        "improvement": float(imp), "pass": passed}
    res["crps_vs_best_peer"] = crps
    res["crps_pass"] = bool(ok_crps and crps)
    tol = float(tcfg.coverage_tolerance)
    overall = {k: float(dm[k].mean()) for k in NOMINAL}
    res["coverage_overall"] = overall
    res["coverage_pass"] = bool(all(abs(overall[k] - NOMINAL[k]) <= tol for k in NOMINAL))
    rtol, rmin = float(tcfg.regime_tolerance), int(tcfg.regime_min_n)
    cells = []
    for (r, b), dc in dm.groupby(["regime", "bucket"]):
        if len(dc) < rmin:
            continue
        c80, c90 = float(dc["cov80"].mean()), float(dc["cov90"].mean())
        cells.append({"regime": r, "bucket": b, "n": len(dc), "cov80": c80, "cov90": c90,
                      "pass": bool(abs(c80 - 0.8) <= rtol and abs(c90 - 0.9) <= rtol)})
    regs = []
    for r, dc in dm.groupby("regime"):
        if len(dc) < rmin:
            continue
        c80, c90 = float(dc["cov80"].mean()), float(dc["cov90"].mean())
        regs.append({"regime": r, "n": len(dc), "cov80": c80, "cov90": c90,
                     "pass": bool(abs(c80 - 0.8) <= rtol and abs(c90 - 0.9) <= rtol)})
    res["coverage_regime_bucket"] = cells
    res["coverage_regime_bucket_pass"] = bool(all(c["pass"] for c in cells))
    res["coverage_regime"] = regs
    res["coverage_regime_pass"] = bool(all(c["pass"] for c in regs))
    res["all_pass"] = bool(res["crps_pass"] and res["coverage_pass"] and res["coverage_regime_bucket_pass"])
    return res


def rolling_coverage(scores: pd.DataFrame, method: str, days: int, band: str = "cov80",
                     min_dates: int = 4) -> pd.Series:
    """Coverage over the trailing ``days`` of as-of dates (all horizons pooled), from the
    ``min_dates``-th date on."""
    d = scores[scores["method"] == method].groupby("as_of")[band].mean().sort_index()
    if d.empty:
        return d
    d.index = pd.DatetimeIndex(d.index)
    return d.rolling(f"{days}D", min_periods=min(min_dates, len(d))).mean().dropna()


def recalibration(scores: pd.DataFrame, grids: np.ndarray, min_n: int) -> dict:
    """method -> horizon -> {crps, crps_recal, crps_recal_regime, n}: the mean sample CRPS and what
    it becomes after PIT recalibration with hindsight within the horizon (``_regime``: within each
    horizon x regime), computed on the kept quantile grids (row ``i`` of ``grids`` is row ``i`` of
    ``scores``)."""
    if grids is None or len(grids) != len(scores):
        raise InvalidParameterError("grids", None if grids is None else len(grids),
                                    f"one quantile grid per score row ({len(scores)})")
    out: dict = {}
    for (m, h), d in scores.reset_index(drop=True).groupby(["method", "h"], sort=True):
        i = d.index.to_numpy()
        g, u, y = grids[i], d["pit"].to_numpy(float), d["y"].to_numpy(float)
        before = crps_rows(g, y)
        glob = recalibrated_crps(g, u, y, None, min_n)
        reg = recalibrated_crps(g, u, y, d["regime"].to_numpy(), min_n)
        crps = float(d["crps"].mean())
        out.setdefault(str(m), {})[str(h)] = {
            "crps": crps, "crps_recal": crps - float(np.mean(before - glob)),
            "crps_recal_regime": crps - float(np.mean(before - reg)), "n": len(d)}
    return out


def recalibration_reach(recal: dict, best: dict, candidates: list[str], target: float,
                        headline: list[int]) -> dict:
    """Per candidate and headline horizon: its per-regime recalibrated CRPS against the best raw
    peer as scored, and against that peer recalibrated the same way; ``reachable`` is whether the
    first would meet the improvement target."""
    out: dict = {}
    for c in candidates:
        if c not in recal:
            continue
        rows = {}
        for h in headline:
            b = best.get(str(h), {}).get("raw")
            if not b or str(h) not in recal[c] or str(h) not in recal.get(b["method"], {}):
                continue
            ours = recal[c][str(h)]["crps_recal_regime"]
            imp = 1.0 - ours / b["crps"]
            rows[str(h)] = {"best_peer": b["method"], "crps_recal_regime": ours, "improvement_vs_peer": imp,
                            "improvement_vs_peer_recal": 1.0 - ours / recal[b["method"]][str(h)]["crps_recal_regime"],
                            "reachable": bool(imp >= target)}
        out[c] = rows
    return out

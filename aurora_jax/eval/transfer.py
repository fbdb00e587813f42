"""TVF transfer check (AURORA "portability"): a model fitted on the source asset, run on the target.

The method's fitted state and its conformal buffers are frozen at ``transfer.start`` (taken
from the source walk-forward at that date). Over ``start .. end`` the frozen model is run on
both assets with ``refit=False`` — it only conditions on each asset's returns — and its
calibrated P10–P90 / P5–P95 coverage is measured on each (no buffer updates). Then

    CTR = coverage_target / coverage_source          (P10–P90 band; P5–P95 reported too)
    dxi = xi_target - xi_source                      (Hill index of |daily returns|)
    dH  = H_target - H_source                        (Hurst of log daily realized variance
                                                      from hourly closes; of log |r| without them)

and the domain is READY when ``CTR >= ctr_min``, ``|dxi| < dxi_max`` and ``|dH| < dh_max``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.calibrate.conformal import ConformalCalibrator
from aurora_jax.calibrate.vol_regime import VolRegimeClassifier
from aurora_jax.errors import DataRangeError, ModelUnavailableError
from aurora_jax.eval.data import AssetSeries, SeriesCache
from aurora_jax.eval.forecaster import AsOfView, ForecastContext, Forecaster, check_paths
from aurora_jax.eval.walkforward import _ts, method_rng
from aurora_jax.sim.estimators.hurst import estimate_hurst
from aurora_jax.sim.estimators.tails import hill_tail_index


def _daily_log_rv(series: AssetSeries, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series | None:
    h = series.hourly_close
    if h is None:
        return None
    h = h[(h.index > start) & (h.index <= end)]
    r = np.log(h).diff().dropna()
    rv = (r**2).resample("1D", label="right", closed="right").agg(["sum", "count"])
    rv = rv[rv["count"] >= 20]["sum"]
    return np.log(rv[rv > 0])


def domain_stats(series: AssetSeries, start: pd.Timestamp, end: pd.Timestamp, tcfg: DictConfig,
                 use_rv: bool) -> dict:
    r = series.returns[(series.returns.index > start) & (series.returns.index <= end)]
    xi, k = hill_tail_index(np.abs(r.to_numpy()), threshold_rule="fraction",
                            fraction=float(tcfg.hill_fraction))
    path = _daily_log_rv(series, start, end) if use_rv else None
    kind = "log_rv_hourly"
    if path is None or len(path) < 200:
        path = np.log(np.abs(r) + 1e-8)
        kind = "log_abs_return"
    H = estimate_hurst(np.asarray(path, dtype=float), method=str(tcfg.hurst_method))
    return {"xi": float(xi), "hill_k": int(k), "hurst": float(H), "hurst_series": kind,
            "n_returns": len(r)}


def frozen_coverage(forecaster: Forecaster, state, cal_dict: dict, cache: SeriesCache, asset: str,
                    dates: pd.DatetimeIndex, horizon: int, num_paths: int, seed: int,
                    classifier: VolRegimeClassifier) -> dict:
    """Coverage of the frozen model (raw and calibrated) on ``asset`` over ``dates``."""
    series = cache.asset(asset)
    cal = ConformalCalibrator.from_dict(cal_dict)
    levels = np.asarray(cal.config.levels)
    i = {v: int(np.argmin(np.abs(levels - v))) for v in (0.05, 0.10, 0.90, 0.95)}
    close = series.close
    lookup = dict(zip(close.index, close.to_numpy(dtype=float)))
    regimes = classifier.classify(series.returns, series.iv)["label"]
    hits = {"raw80": [], "raw90": [], "cal80": [], "cal90": []}
    for k, as_of in enumerate(dates):
        rets = series.returns[series.returns.index <= as_of]
        ctx = ForecastContext(as_of, asset, AsOfView(cache, as_of), refit=False, previous_state=state)
        try:
            st = forecaster.fit(rets, ctx)
            paths = check_paths(forecaster.sample(st, horizon, num_paths, method_rng(seed, f"tvf|{asset}", k)),
                                num_paths, horizon, forecaster.name)
        except ModelUnavailableError:
            continue
        cum = 100.0 * np.cumsum(paths, axis=1)
        raw_q = np.quantile(cum, levels, axis=0).T
        base_t = close.index[close.index <= as_of][-1]
        reg = regimes[regimes.index <= as_of]
        regime = str(reg.iloc[-1]) if len(reg) and reg.iloc[-1] != "unknown" else "normal"
        for h in range(1, horizon + 1):
            yc = lookup.get(base_t + pd.Timedelta(days=h))
            if yc is None:
                continue
            y = 100.0 * (math.log(yc) - math.log(lookup[base_t]))
            cq = cal.calibrate(dict(zip(cal.config.levels, raw_q[h - 1])), regime, h).values()
            for name, q in (("raw", raw_q[h - 1]), ("cal", cq)):
                hits[name + "80"].append(q[i[0.10]] <= y <= q[i[0.90]])
                hits[name + "90"].append(q[i[0.05]] <= y <= q[i[0.95]])
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()} | {"n": len(hits["cal80"])}


def transfer_check(cfg: DictConfig, cache: SeriesCache, forecaster: Forecaster, snapshot: dict) -> dict:
    """The READY / NOT READY verdict and its figures."""
    tc = cfg.eval.transfer
    source, target = str(cfg.asset), str(tc.target)
    start, end = _ts(tc.start), _ts(tc.end)
    if forecaster.name not in snapshot or snapshot[forecaster.name][0] is None:
        raise ModelUnavailableError(f"transfer: no fitted {forecaster.name} state at {start.date()}")
    state, cal_dict = snapshot[forecaster.name]
    tgt = cache.asset(target)
    need = start - pd.Timedelta(days=int(tc.min_target_history))
    if tgt.first > need:
        raise DataRangeError("eval.transfer.start", start.date(),
                             (tgt.first + pd.Timedelta(days=int(tc.min_target_history))).date(), tgt.last.date())
    src = cache.asset(source)
    last = min(end, src.last, tgt.last)
    dates = pd.date_range(start, last, freq=f"{int(tc.step_days)}D")
    classifier = VolRegimeClassifier.from_config(cfg.calibration.regime)
    H, paths, seed = int(cfg.eval.horizon), int(cfg.eval.num_paths), int(cfg.seed)
    cov_s = frozen_coverage(forecaster, state, cal_dict, cache, source, dates, H, paths, seed, classifier)
    cov_t = frozen_coverage(forecaster, state, cal_dict, cache, target, dates, H, paths, seed, classifier)
    use_rv = src.hourly_close is not None and tgt.hourly_close is not None
    st_s = domain_stats(src, start, last, tc, use_rv)
    st_t = domain_stats(tgt, start, last, tc, use_rv)
    ctr80 = cov_t["cal80"] / cov_s["cal80"] if cov_s["cal80"] else float("nan")
    ctr90 = cov_t["cal90"] / cov_s["cal90"] if cov_s["cal90"] else float("nan")
    dxi = st_t["xi"] - st_s["xi"]
    dh = st_t["hurst"] - st_s["hurst"]
    checks = {"ctr": bool(ctr80 >= float(tc.ctr_min)), "dxi": bool(abs(dxi) < float(tc.dxi_max)),
              "dh": bool(abs(dh) < float(tc.dh_max))}
    return {
        "source": source, "target": target, "method": forecaster.name,
        "frozen_at": str(snapshot["__as_of__"][0]), "period": [str(dates[0]), str(dates[-1])],
        "n_dates": len(dates),
        "coverage_source": cov_s, "coverage_target": cov_t,
        "ctr": float(ctr80), "ctr90": float(ctr90),
        "domain_source": st_s, "domain_target": st_t,
        "delta_xi": float(dxi), "delta_hurst": float(dh),
        "thresholds": {"ctr_min": float(tc.ctr_min), "dxi_max": float(tc.dxi_max), "dh_max": float(tc.dh_max)},
        "checks": checks,
        "status": "READY" if all(checks.values()) else "NOT READY",
    }

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from aurora_jax.eval import metrics as M

TCFG = OmegaConf.create({"crps_improvement": 0.03, "coverage_tolerance": 0.03, "regime_tolerance": 0.05,
                         "regime_min_n": 30, "full_coverage_share": 0.9})


def _scores(rng, n_dates=120):
    dates = pd.date_range("2020-01-05", periods=n_dates, freq="7D", tz="UTC")
    rows = []
    for m, crps, cov80 in (("garch_t", 1.0, 0.75), ("ewma", 1.1, 0.80), ("ours+conformal", 0.95, 0.80),
                           ("dvol_gaussian", 0.5, 0.8)):
        for i, d in enumerate(dates):
            if m == "dvol_gaussian" and i < n_dates // 2:
                continue  # a peer that only exists on the second half
            for h in (1, 7, 14):
                rows.append({"method": m, "as_of": d, "h": h, "regime": ["calm", "normal", "volatile"][i % 3],
                             "bucket": "short" if h == 1 else ("mid" if h == 7 else "long"),
                             "crps": crps * (1 + 0.01 * rng.standard_normal()) * np.sqrt(h),
                             "cov80": rng.random() < cov80, "cov90": rng.random() < 0.9,
                             "width90": 1.0, "width80": 0.8, "tail_miss": False, "pit": rng.random(),
                             "pin_0.5": 0.1})
    return pd.DataFrame(rows)


def test_best_peer_ignores_partial_peers_and_targets():
    sc = _scores(np.random.default_rng(0))
    best = M.best_peers(sc, ["garch_t", "ewma", "dvol_gaussian"], 0.9)
    assert best["1"]["raw"]["method"] == "garch_t"  # dvol is better but covers half the dates
    res = M.check_targets(sc, "ours+conformal", best, TCFG, [1, 7, 14])
    assert res["crps_vs_best_peer"]["7"]["improvement"] > 0.03 and res["crps_pass"]
    assert abs(res["coverage_overall"]["cov80"] - 0.8) < 0.05
    assert {c["regime"] for c in res["coverage_regime"]} == {"calm", "normal", "volatile"}
    assert M.check_targets(sc, "missing", best, TCFG, [1])["available"] is False
    dm = M.dm_table(sc, best, 7)
    assert dm["ours+conformal"]["1"]["stat"] < -3  # 5% better with 1% noise: decisive
    assert dm["dvol_gaussian"]["1"]["n"] == 60


def test_tables_and_rolling_coverage():
    sc = _scores(np.random.default_rng(1))
    bh = M.by_horizon(sc, 10)
    assert set(bh["ewma"]) == {"1", "7", "14", "all"}
    assert bh["ewma"]["1"]["n"] == 120 and sum(bh["ewma"]["1"]["pit_hist"]) == 120
    pr = M.per_regime(sc)
    assert pr["garch_t"]["calm"]["short"]["n"] == 40
    rc = M.rolling_coverage(sc, "garch_t", 90)
    assert rc.index.is_monotonic_increasing and rc.between(0, 1).all()

"""Hurst estimators on exact synthetic fBM, BNS jump test size/power, p-variation."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.estimators.bns import bns_test, intraday_matrix
from aurora_jax.sim.estimators.hurst import (
    estimate_hurst,
    hurst_dfa,
    hurst_variogram,
    hurst_wavelet,
)
from aurora_jax.sim.estimators.pvariation import p_variation, pvariation_slope
from aurora_jax.sim.fgn import sample_fgn

N_PATHS, N = 30, 1024


@pytest.fixture(scope="module")
def fbm_paths():
    return {
        h: np.cumsum(
            np.asarray(sample_fgn(jax.random.key(100 + i), h, N, N_PATHS), np.float64), axis=1
        )
        for i, h in enumerate((0.1, 0.3, 0.5, 0.7))
    }


# allowed |mean estimate - H|: 4 standard errors of the mean over the paths plus a stated
# finite-sample bias allowance per estimator (DFA is known to overestimate small H slightly)
BIAS = {"variogram": 0.02, "dfa": 0.04, "wavelet": 0.03}


@pytest.mark.parametrize("h", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("method", ["variogram", "dfa", "wavelet"])
def test_hurst_estimators_recover_h(fbm_paths, h, method):
    est = np.array([estimate_hurst(p, method) for p in fbm_paths[h]])
    se = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - h) < 4 * se + BIAS[method], (method, h, est.mean(), se)


def test_hurst_estimators_separate_rough_from_brownian(fbm_paths):
    for fn in (hurst_variogram, hurst_dfa, hurst_wavelet):
        rough = np.mean([fn(p) for p in fbm_paths[0.1][:10]])
        bm = np.mean([fn(p) for p in fbm_paths[0.5][:10]])
        assert bm - rough > 0.3
    with pytest.raises(InvalidParameterError, match="method"):
        estimate_hurst(fbm_paths[0.5][0], "magic")


def test_bns_size_under_no_jumps_and_power_with_jumps():
    rng = np.random.default_rng(0)
    days, m, alpha = 3000, 24, 0.05
    # stochastic volatility, no jumps: each day has its own vol level
    vol = np.exp(rng.normal(-4.5, 0.5, size=(days, 1)))
    r = vol * rng.normal(size=(days, m)) / np.sqrt(m)
    res = bns_test(r, alpha=alpha)
    # the rejection count is Binomial(days, alpha) under H0 (asymptotically); allow the
    # two-sided 99.9% binomial interval widened by 1 percentage point for m = 24 size distortion
    lo, hi = stats.binom.ppf([0.0005, 0.9995], days, alpha) / days
    assert lo - 0.01 <= res.jump_frequency <= hi + 0.01
    # a jump of 5 intraday standard deviations in every day is detected most of the time
    rj = r.copy()
    rj[:, 10] += 5 * vol[:, 0] * np.sign(rng.normal(size=days))
    assert bns_test(rj, alpha=alpha).jump_frequency > 0.7
    assert np.all(res.bv > 0) and np.allclose(res.rv, np.sum(r**2, 1))


def test_intraday_matrix_complete_days_only():
    idx = pd.date_range("2021-01-01", periods=24 * 3 + 1, freq="h", tz="UTC")
    price = pd.Series(np.exp(np.linspace(0, 1, idx.size)), index=idx)
    price = price.drop(idx[30])  # day 2 loses an hour
    mat = intraday_matrix(price)
    assert mat.shape[1] == 24
    assert pd.Timestamp("2021-01-02", tz="UTC") not in mat.index


def test_p_variation_exact_against_brute_force():
    rng = np.random.default_rng(4)
    x = rng.normal(size=9).cumsum()
    for p in (1.0, 2.0, 3.0):
        best = 0.0
        inner = range(1, len(x) - 1)
        for r in range(len(x) - 1):
            for cut in itertools.combinations(inner, r):
                pts = [0, *cut, len(x) - 1]
                best = max(best, sum(abs(x[b] - x[a]) ** p for a, b in itertools.pairwise(pts)))
        assert p_variation(x, p) == pytest.approx(best, rel=1e-12)
    assert p_variation(np.arange(10.0), 2.0) == pytest.approx(81.0)
    with pytest.raises(InvalidParameterError, match="p"):
        p_variation(x, 0.5)


def test_pvariation_slope_is_pH_minus_one(fbm_paths):
    for h in (0.3, 0.5, 0.7):
        slopes = [pvariation_slope(p, 2.0) for p in fbm_paths[h]]
        assert abs(np.mean(slopes) - (2 * h - 1)) < 0.05

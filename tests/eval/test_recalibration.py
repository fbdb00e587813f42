"""Hindsight PIT recalibration: it leaves calibrated forecasts alone, undoes a wrong spread, and
works per group."""

import numpy as np
import pytest
from scipy.stats import norm

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.recalibration import grid_levels, recalibrate, recalibrated_crps
from aurora_jax.eval.scoring import crps_gaussian, crps_rows, crps_sample


def _normal_forecasts(sigma_forecast, sigma_true, seed=0, m=200):
    """Gaussian forecasts N(0, s_t) on the midpoint grid; outcomes y_t ~ N(0, sigma_true * s_t / sigma_forecast)."""
    rng = np.random.default_rng(seed)
    n = len(sigma_forecast)
    taus = grid_levels(m)
    grids = sigma_forecast[:, None] * norm.ppf(taus)[None, :]
    y = rng.normal(size=n) * sigma_true
    pits = norm.cdf(y / sigma_forecast)
    return grids, pits, y


def test_crps_rows_is_the_sample_crps_of_each_row():
    rng = np.random.default_rng(1)
    g = rng.standard_t(4, size=(5, 300))
    y = rng.normal(size=5)
    np.testing.assert_allclose(crps_rows(g, y), [crps_sample(r, v) for r, v in zip(g, y)], rtol=1e-12)


def test_calibrated_forecasts_gain_almost_nothing():
    s = np.exp(np.random.default_rng(2).normal(0, 0.5, 3000))
    grids, pits, y = _normal_forecasts(s, s)
    before, after = crps_rows(grids, y), recalibrated_crps(grids, pits, y)
    assert abs(after.mean() / before.mean() - 1) < 0.005


def test_a_doubled_spread_is_undone():
    s = np.exp(np.random.default_rng(3).normal(0, 0.5, 4000))
    grids, pits, y = _normal_forecasts(2 * s, s)
    before, after = crps_rows(grids, y), recalibrated_crps(grids, pits, y)
    ideal = np.mean([crps_gaussian(0.0, si, yi) for si, yi in zip(s, y)])
    assert before.mean() > 1.15 * ideal
    assert after.mean() == pytest.approx(ideal, rel=0.01)
    # the recalibrated quantiles are the true ones: half the forecast's, at P10 and P90 alike
    r = recalibrate(grids, pits)
    assert np.all(np.diff(r, axis=1) >= 0)
    for j in (19, 179):
        assert np.median(r[:, j] / grids[:, j]) == pytest.approx(0.5, rel=0.05)


def test_groups_are_recalibrated_separately_and_small_groups_left_alone():
    rng = np.random.default_rng(4)
    s = np.exp(rng.normal(0, 0.3, 2000))
    wide = _normal_forecasts(1.5 * s[:1000], s[:1000], seed=5)
    narrow = _normal_forecasts(0.8 * s[1000:], s[1000:], seed=6)
    grids, pits, y = (np.concatenate(p) for p in zip(wide, narrow))
    groups = np.repeat(["wide", "narrow"], 1000)
    before, pooled = crps_rows(grids, y), recalibrated_crps(grids, pits, y)
    split = recalibrated_crps(grids, pits, y, groups)
    # pooled, the two errors partly cancel in the PIT histogram; split, each is undone
    assert split.mean() < 0.99 * min(pooled.mean(), before.mean())
    untouched = recalibrated_crps(grids, pits, y, groups, min_n=1001)
    np.testing.assert_array_equal(untouched, before)


def test_bad_input_is_refused_with_the_field_named():
    g = np.zeros((3, 10))
    with pytest.raises(InvalidParameterError, match="pits"):
        recalibrated_crps(g, np.array([0.1, 1.5, 0.2]), np.zeros(3))
    with pytest.raises(InvalidParameterError, match="grids"):
        recalibrated_crps(g, np.array([0.1, 0.2]), np.zeros(3))
    with pytest.raises(InvalidParameterError, match="eval.recalibration.grid"):
        grid_levels(1)

"""Hawkes counts against the closed-form moments of the grid scheme and the continuous process."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.hawkes import (
    Hawkes,
    HawkesParams,
    ingarch_moments,
    window_count_variance,
)
from aurora_jax.sim.jumps import DoubleExponentialMarks

ALPHA = 1e-3
DT = 1 / 24


@pytest.fixture(scope="module")
def counts():
    params = HawkesParams(0.3, 0.6, 2.0)
    hk = Hawkes(params, DoubleExponentialMarks(0.5, 0.02, 0.02), cap=6)
    ji = hk.sample(jax.random.key(0), 1500, 2400, DT)
    return params, np.asarray(ji.counts, np.float64)[:, 240:]  # drop 10 days of burn-in


def test_mean_variance_acf_match_ingarch_closed_form(counts):
    params, c = counts
    m = ingarch_moments(params, DT, 3)
    zcrit = stats.norm.isf(ALPHA / (2 * 5))
    # per-path statistics are independent across paths -> z-tests on their means
    per_mean = c.mean(axis=1)
    z = (per_mean.mean() - m["mean"]) / (per_mean.std(ddof=1) / np.sqrt(c.shape[0]))
    assert abs(z) < zcrit
    mu = m["mean"]
    per_var = np.mean((c - mu) ** 2, axis=1)
    z = (per_var.mean() - m["var"]) / (per_var.std(ddof=1) / np.sqrt(c.shape[0]))
    assert abs(z) < zcrit
    for lag in (1, 2, 3):
        per_cov = np.mean((c[:, :-lag] - mu) * (c[:, lag:] - mu), axis=1)
        target = m["acf"][lag - 1] * m["var"]
        z = (per_cov.mean() - target) / (per_cov.std(ddof=1) / np.sqrt(c.shape[0]))
        assert abs(z) < zcrit, lag


def test_window_counts_match_continuous_hawkes(counts):
    params, c = counts
    w = c.reshape(c.shape[0], -1, 48).sum(axis=2)  # 2-day windows
    target = window_count_variance(params, 2.0)
    mean_target = float(params.stationary_rate()) * 2.0
    assert w.mean() == pytest.approx(mean_target, rel=0.03)
    # grid discretisation bias is O(beta dt) ~ 8%; sampling error of the variance ~ 2%
    assert w.var() == pytest.approx(target, rel=0.12)
    # clustering: window counts are clearly over-dispersed relative to Poisson (ratio 1)
    assert w.var() / w.mean() > 1.5 and target / mean_target > 1.5


def test_branching_ratio_constraint_and_bad_input():
    with pytest.raises(InvalidParameterError, match="branching") as e:
        HawkesParams(0.3, 1.0, 2.0)
    assert "0.0 <= branching < 1" in str(e.value) or "< 1" in str(e.value)
    with pytest.raises(InvalidParameterError, match="branching"):
        HawkesParams(0.3, 1.2, 2.0)
    with pytest.raises(InvalidParameterError, match="baseline"):
        HawkesParams(-0.1, 0.5, 2.0)
    with pytest.raises(InvalidParameterError, match="decay"):
        HawkesParams(0.1, 0.5, 0.0)
    with pytest.raises(InvalidParameterError, match="baseline"):
        HawkesParams(float("nan"), 0.5, 1.0)
    with pytest.raises(InvalidParameterError, match="branching_max"):
        HawkesParams.from_unconstrained(0.0, 0.0, 0.0, 1.0)
    p = HawkesParams.from_unconstrained(
        jnp.asarray(3.0), jnp.asarray(50.0), jnp.asarray(-9.0), 0.95
    )
    assert float(p.branching) < 0.95 + 1e-6 and float(p.decay) > 0
    hk = Hawkes(HawkesParams(0.1, 0.5, 1.0), DoubleExponentialMarks(0.5, 0.01, 0.01))
    with pytest.raises(InvalidParameterError, match="dt"):
        hk.sample(jax.random.key(0), 2, 2, -1.0)

"""Compound Poisson jumps: counts, marks and compensated sums against closed-form moments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.jumps import (
    CompoundPoisson,
    DoubleExponentialMarks,
    RegimeCompoundPoisson,
    StudentTMarks,
    max_rate_for_cap,
    poisson_tail,
)

ALPHA = 1e-3


def test_counts_are_poisson():
    lam, dt = 2.0, 0.1
    cp = CompoundPoisson(lam, DoubleExponentialMarks(0.4, 0.03, 0.05), cap=6)
    ji = cp.sample(jax.random.key(0), 2000, 100, dt)
    c = np.asarray(ji.counts).ravel()
    # chi-square goodness of fit of the per-step counts against Poisson(lam dt)
    ks = np.arange(0, 4)
    obs = np.array([np.sum(c == k) for k in ks] + [np.sum(c >= 4)])
    p = np.append(stats.poisson.pmf(ks, lam * dt), stats.poisson.sf(3, lam * dt))
    chi2 = np.sum((obs - c.size * p) ** 2 / (c.size * p))
    assert chi2 < stats.chi2.isf(ALPHA, len(obs) - 1)
    # total count per path over T = 10: Poisson(20): mean and dispersion z-tests
    tot = np.asarray(ji.counts).sum(axis=1)
    assert abs(tot.mean() - 20.0) < stats.norm.isf(ALPHA / 2) * np.sqrt(20.0 / tot.size)
    disp = (tot.size - 1) * tot.var(ddof=1) / 20.0
    assert stats.chi2.ppf(ALPHA / 2, tot.size - 1) < disp < stats.chi2.isf(ALPHA / 2, tot.size - 1)


def test_double_exponential_marks_moments():
    mk = DoubleExponentialMarks(0.35, 0.04, 0.06)
    u = np.asarray(mk.sample(jax.random.key(1), (200_000,)), np.float64)
    mean = 0.35 * 0.04 - 0.65 * 0.06
    m2 = 2 * 0.35 * 0.04**2 + 2 * 0.65 * 0.06**2
    assert float(mk.mean()) == pytest.approx(mean)
    assert float(mk.second_moment()) == pytest.approx(m2)
    z = (u.mean() - mean) / (u.std() / np.sqrt(u.size))
    assert abs(z) < stats.norm.isf(ALPHA / 2)
    assert np.mean(u > 0) == pytest.approx(0.35, abs=4 * np.sqrt(0.35 * 0.65 / u.size))
    # up-moves are Exp(mean 0.04): KS test
    assert stats.kstest(u[u > 0], stats.expon(scale=0.04).cdf).pvalue > ALPHA


def test_student_t_marks_distribution():
    mk = StudentTMarks(3.0, 0.02)
    u = np.asarray(mk.sample(jax.random.key(2), (50_000,)), np.float64)
    assert stats.kstest(u, stats.t(df=3, scale=0.02).cdf).pvalue > ALPHA


def test_compound_sum_moments_and_compensator():
    lam, dt, steps = 0.5, 1 / 24, 240  # T = 10 days
    mk = DoubleExponentialMarks(0.4, 0.05, 0.07)
    ji = CompoundPoisson(lam, mk, cap=3).sample(jax.random.key(3), 4000, steps, dt)
    total = np.asarray(ji.sums, np.float64).sum(axis=1)
    comp = np.asarray(ji.compensated, np.float64).sum(axis=1)
    T = steps * dt
    # E sum = lam T E u, Var = lam T E u^2 (compound Poisson)
    eu, eu2 = float(mk.mean()), float(mk.second_moment())
    se = np.sqrt(lam * T * eu2 / total.size)
    zcrit = stats.norm.isf(ALPHA / 2)
    assert abs(total.mean() - lam * T * eu) < zcrit * se
    assert abs(comp.mean()) < zcrit * se  # compensated sum is a martingale increment
    ratio = total.var(ddof=1) / (lam * T * eu2)
    assert abs(ratio - 1) < 0.12  # sd of the sample variance ratio ~ sqrt(kurt/n) ~ 0.04


def test_regime_dependent_intensity():
    w = jnp.zeros((4, 2)).at[0, 0].set(1.0)
    b = jnp.asarray([0.0, 0.0, -3.0, -3.0])
    reg = RegimeCompoundPoisson(w, b)
    lo, hi = reg(jnp.asarray([-1.0, 0.0])), reg(jnp.asarray([1.0, 0.0]))
    assert float(hi.intensity) > float(lo.intensity) > 0
    c_lo = np.asarray(lo.sample(jax.random.key(4), 500, 100, 0.1).counts).mean()
    c_hi = np.asarray(hi.sample(jax.random.key(4), 500, 100, 0.1).counts).mean()
    assert c_lo == pytest.approx(float(lo.intensity) * 0.1, rel=0.1)
    assert c_hi == pytest.approx(float(hi.intensity) * 0.1, rel=0.1)


def test_cap_rate_and_bad_input():
    r = max_rate_for_cap(3, 1 / 24, 1e-6)
    assert poisson_tail(r / 24, 3) == pytest.approx(1e-6, rel=1e-3)
    mk = DoubleExponentialMarks(0.5, 0.01, 0.01)
    with pytest.raises(InvalidParameterError, match="intensity"):
        CompoundPoisson(-0.1, mk)
    with pytest.raises(InvalidParameterError, match="intensity"):
        CompoundPoisson(float("nan"), mk)
    with pytest.raises(InvalidParameterError, match="intensity"):
        CompoundPoisson(1000.0, mk, cap=3).sample(jax.random.key(0), 2, 2, 1.0)
    with pytest.raises(InvalidParameterError, match="dt"):
        CompoundPoisson(1.0, mk).sample(jax.random.key(0), 2, 2, 0.0)
    with pytest.raises(InvalidParameterError, match="p_up"):
        DoubleExponentialMarks(1.5, 0.01, 0.01)
    with pytest.raises(InvalidParameterError, match="mean_down"):
        DoubleExponentialMarks(0.5, 0.01, -0.01)
    with pytest.raises(InvalidParameterError, match="df"):
        StudentTMarks(1.0, 0.01)

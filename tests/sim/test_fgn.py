"""Davies–Harte fGn: exact autocovariance, variance scaling n^{2H}, piecewise H, compile-once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.fgn import (
    FGNSampler,
    HurstSchedule,
    circulant_eigenvalues,
    fgn_autocovariance,
    sample_fgn,
    sample_fgn_piecewise,
)

HS = [0.1, 0.3, 0.5, 0.7]
N_PATHS = 4000
N = 128
ALPHA = 1e-3


@pytest.fixture(scope="module")
def samples():
    return {h: np.asarray(sample_fgn(jax.random.key(11), h, N, N_PATHS), np.float64) for h in HS}


@pytest.mark.parametrize("h", HS)
def test_autocovariance_matches_theory(samples, h):
    # per-path mean of x_t x_{t+k} over t; paths are independent -> z-test across paths,
    # Bonferroni over 6 lags x 4 values of H at overall level ALPHA
    x = samples[h]
    gamma = np.asarray(fgn_autocovariance(h, 6), np.float64)
    zcrit = stats.norm.isf(ALPHA / (2 * 6 * len(HS)))
    for k in range(6):
        per_path = np.mean(x[:, : N - k] * x[:, k:], axis=1)
        z = (per_path.mean() - gamma[k]) / (per_path.std(ddof=1) / np.sqrt(N_PATHS))
        assert abs(z) < zcrit, (h, k, per_path.mean(), gamma[k])


@pytest.mark.parametrize("h", HS)
def test_variance_scaling_n_2h(samples, h):
    # Var(sum_{i<n} dW_i) = n^{2H} exactly: chi-square test for each n, then the log-log slope
    x = samples[h]
    ns = np.array([1, 2, 4, 8, 16, 32, 64, 128])
    variances = []
    crit_lo = stats.chi2.ppf(ALPHA / (2 * len(ns) * len(HS)), N_PATHS - 1)
    crit_hi = stats.chi2.isf(ALPHA / (2 * len(ns) * len(HS)), N_PATHS - 1)
    for n in ns:
        s = x[:, :n].sum(axis=1)
        v = s.var(ddof=1)
        stat = (N_PATHS - 1) * v / n ** (2 * h)
        assert crit_lo < stat < crit_hi, (h, n, v, n ** (2 * h))
        variances.append(v)
    slope = np.polyfit(np.log(ns), np.log(variances), 1)[0]
    # each log-variance has sd ~ sqrt(2/N_PATHS) = 0.022; the slope's sd is < 0.01
    assert abs(slope - 2 * h) < 0.05


def test_eigenvalues_nonnegative_and_scaling_with_dt():
    for h in (0.02, 0.1, 0.5, 0.9, 0.98):
        assert float(jnp.min(circulant_eigenvalues(h, 300))) >= 0.0
    x = np.asarray(sample_fgn(jax.random.key(2), 0.3, 64, 3000, 0.25), np.float64)
    v = x.var(ddof=1)
    # Var = dt^{2H}; chi-square on 3000*64 correlated values -> use per-column variance z-test
    per_col = x.var(axis=0, ddof=1)
    assert abs(per_col.mean() - 0.25**0.6) < 4 * per_col.std(ddof=1) / np.sqrt(64) + 0.01
    assert v == pytest.approx(0.25**0.6, rel=0.05)


def test_piecewise_blocks_have_exact_covariance():
    hb = jnp.asarray([0.2, 0.25, 0.3, 0.35])
    sched = HurstSchedule(hb, 32, 0.05)
    x = np.asarray(FGNSampler(sched, 128)(jax.random.key(5), 4000), np.float64)
    zcrit = stats.norm.isf(ALPHA / (2 * 4 * 2))
    for b, h in enumerate(np.asarray(hb)):
        seg = x[:, 32 * b : 32 * (b + 1)]
        gamma = np.asarray(fgn_autocovariance(float(h), 2), np.float64)
        for k in range(2):
            per_path = np.mean(seg[:, : 32 - k] * seg[:, k:], axis=1)
            z = (per_path.mean() - gamma[k]) / (per_path.std(ddof=1) / np.sqrt(4000))
            assert abs(z) < zcrit, (b, k)
    # continuity across a boundary: the increments either side stay strongly dependent
    c = np.corrcoef(x[:, 31], x[:, 32])[0, 1]
    gamma_mid = float(fgn_autocovariance(0.225, 2)[1])
    assert abs(c - gamma_mid) < 0.05


def test_piecewise_with_constant_h_equals_plain_sampler():
    k = jax.random.key(9)
    a = sample_fgn_piecewise(k, jnp.full((4,), 0.3), 16, 10)
    b = sample_fgn(k, 0.3, 64, 10)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_compiles_once_per_shape():
    # traced arguments (hurst, dt) change; the shapes (n, n_paths) do not
    key = jax.random.key(0)
    sample_fgn(key, 0.3, 32, 8, 1.0)
    size = sample_fgn._cache_size()
    for h in (0.1, 0.45, 0.8):
        sample_fgn(jax.random.key(int(h * 10)), h, 32, 8, 0.5)
    assert sample_fgn._cache_size() == size


@pytest.mark.parametrize("h", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_invalid_hurst_typed_error(h):
    with pytest.raises(InvalidParameterError, match="hurst") as exc:
        FGNSampler(h, 16)
    assert "0.0 < hurst < 1.0" in str(exc.value) or "finite" in str(exc.value)


def test_invalid_step_and_schedule():
    with pytest.raises(InvalidParameterError, match="dt"):
        FGNSampler(0.3, 16, dt=0.0)
    with pytest.raises(InvalidParameterError, match="dt"):
        FGNSampler(0.3, 16, dt=-1.0)
    with pytest.raises(InvalidParameterError, match=r"\|H\[b\+1\] - H\[b\]\| <= eps_h"):
        HurstSchedule(jnp.asarray([0.2, 0.4]), 8, 0.05)
    with pytest.raises(InvalidParameterError, match="n"):
        FGNSampler(HurstSchedule(jnp.asarray([0.2, 0.22]), 8, 0.05), 15)
    sched = HurstSchedule.from_unconstrained(
        jnp.asarray([0.0, 5.0, -5.0, 3.0]), 8, 0.05, 0.02, 0.98
    )
    assert np.all(np.abs(np.diff(np.asarray(sched.values))) <= 0.05 + 1e-6)

"""EWMA, Ledoit–Wolf, PSD repair (against a cvxpy reference), and robust estimators under
5% contamination."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.covariance import ewma_covariance, is_psd, ledoit_wolf, nearest_psd
from aurora_jax.risk.robust import catoni_mean, mcd, median_of_means, mom_covariance


def true_cov(p: int, rng) -> np.ndarray:
    a = rng.standard_normal((p, p))
    return a @ a.T / p + 0.5 * np.eye(p)


def test_ewma_equals_recursion(risk_cfg):
    lam = risk_cfg.covariance.ewma_lambda
    r = np.random.default_rng(0).standard_normal((300, 3)) * 0.01
    S = np.outer(r[0], r[0])
    for t in range(1, 300):
        S = lam * S + (1 - lam) * np.outer(r[t], r[t])
    # the recursion's weights differ from the normalised ones only by O(lam^300) ~ 1e-8
    np.testing.assert_allclose(ewma_covariance(r, lam), S, rtol=1e-6)
    # recent returns dominate: a shock in the last row moves the estimate, the same in the first does not
    shocked_last, shocked_first = r.copy(), r.copy()
    shocked_last[-1] *= 10
    shocked_first[0] *= 10
    base = ewma_covariance(r, lam)
    assert np.linalg.norm(ewma_covariance(shocked_last, lam) - base) > 1e3 * np.linalg.norm(
        ewma_covariance(shocked_first, lam) - base)


def test_ledoit_wolf_reduces_error_when_p_is_large_relative_to_n():
    rng = np.random.default_rng(1)
    p, n = 30, 40
    errs_s, errs_lw, shrinks = [], [], []
    for _ in range(20):
        C = true_cov(p, rng)
        x = rng.multivariate_normal(np.zeros(p), C, size=n)
        lw, s = ledoit_wolf(x)
        S = np.cov(x, rowvar=False, bias=True)
        errs_s.append(np.linalg.norm(S - C))
        errs_lw.append(np.linalg.norm(lw - C))
        shrinks.append(s)
        assert 0 <= s <= 1 and is_psd(lw) and np.linalg.eigvalsh(lw)[0] > 0
    assert np.mean(errs_lw) < 0.8 * np.mean(errs_s)
    # with n >> p the optimal shrinkage vanishes
    C = np.diag(np.linspace(0.5, 5, 5))
    _, s_big = ledoit_wolf(rng.multivariate_normal(np.zeros(5), C, size=20000))
    assert s_big < 0.01 < np.mean(shrinks)


def test_nearest_psd_matches_cvxpy_reference():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((5, 5))
    A = (A + A.T) / 2  # indefinite
    assert not is_psd(A)
    ours = nearest_psd(A, 0.0)
    X = cp.Variable((5, 5), symmetric=True)
    cp.Problem(cp.Minimize(cp.norm(X - A, "fro")), [X >> 0]).solve(solver="CLARABEL")
    np.testing.assert_allclose(ours, X.value, atol=2e-4)  # the SDP solver's accuracy
    assert np.linalg.norm(ours - A) <= np.linalg.norm(X.value - A) + 1e-9  # ours is the exact optimum
    assert is_psd(ours, tol=1e-12)
    B = true_cov(4, rng)
    np.testing.assert_array_equal(nearest_psd(B, 1e-10), B)  # a PSD input is untouched
    floored = nearest_psd(A, 1e-3)
    assert np.linalg.eigvalsh(floored)[0] >= 1e-3 * np.linalg.eigvalsh(floored)[-1] - 1e-12


def contaminated(rng, n=1000, p=4, frac=0.05, at=8.0):
    C = true_cov(p, rng)
    x = rng.multivariate_normal(np.zeros(p), C, size=n)
    k = int(frac * n)
    idx = rng.choice(n, k, replace=False)
    x_bad = x.copy()
    x_bad[idx] = rng.multivariate_normal(np.full(p, at), 0.1 * np.eye(p), size=k)  # a 5% cluster far away
    return x, x_bad, C


@pytest.mark.parametrize("at", [8.0, 80.0])
def test_robust_location_moves_far_less_than_the_mean(risk_cfg, at):
    rb = risk_cfg.robust
    rng = np.random.default_rng(3)
    x, x_bad, _ = contaminated(rng, at=at)
    shift = lambda f: np.linalg.norm(f(x_bad) - f(x))
    classical = shift(lambda a: a.mean(axis=0))
    k = len(x) // rb.mom_block_size
    mom = shift(lambda a: median_of_means(a, k, np.random.default_rng(0)))
    cat = shift(lambda a: catoni_mean(a, rb.catoni_delta))
    mcd_loc = shift(lambda a: mcd(a, rb.mcd_support_fraction, 10, rb.mcd_csteps, rb.mcd_reweight_quantile,
                                  np.random.default_rng(0)).location)
    assert classical > 0.09 * at  # 5% at distance 2 * at: the mean moves ~0.1 * at
    assert mcd_loc < 0.05
    # MoM tolerates < k/2 spoiled blocks: 50 outliers touch at most 50 of k = 200 blocks; its
    # shift is bounded (a quantile of the clean block means), whatever the outlier distance
    assert mom < 0.5
    assert mom < (0.5 if at < 10 else 0.06) * classical
    # Catoni's influence psi(z) ~ log(z^2) is unbounded: with the theory's scale a ~ 1/sqrt(n)
    # it is built for heavy tails (next test), not for far outliers -- it only moves less
    assert cat < classical


def test_robust_scatter_moves_far_less_than_the_sample_covariance(risk_cfg):
    rb = risk_cfg.robust
    rng = np.random.default_rng(4)
    x, x_bad, C = contaminated(rng)
    err = lambda S: np.linalg.norm(S - C) / np.linalg.norm(C)
    sample = err(np.cov(x_bad, rowvar=False))
    res = mcd(x_bad, rb.mcd_support_fraction, 10, rb.mcd_csteps, rb.mcd_reweight_quantile, np.random.default_rng(0))
    assert sample > 1.0  # the outliers dominate the classical estimate
    assert err(res.covariance) < 0.15
    assert err(res.covariance) < 0.1 * sample
    # the reweighting step drops the outliers and keeps almost all clean rows
    bad_rows = np.linalg.norm(x_bad - x, axis=1) > 0
    assert not res.support[bad_rows].any() and res.support[~bad_rows].mean() > 0.95
    # MoM with more blocks than outliers' reach: 200 blocks, outliers hit at most 50 of them
    S_mom = mom_covariance(x_bad, len(x) // rb.mom_block_size, np.random.default_rng(0), risk_cfg.covariance.psd_floor)
    assert err(S_mom) < 0.5 * sample and is_psd(S_mom)


def test_mcd_is_consistent_on_clean_gaussian_data(risk_cfg):
    rb = risk_cfg.robust
    rng = np.random.default_rng(5)
    C = true_cov(3, rng)
    x = rng.multivariate_normal(np.zeros(3), C, size=4000)
    res = mcd(x, rb.mcd_support_fraction, 5, rb.mcd_csteps, rb.mcd_reweight_quantile, rng)
    # consistency factors make the clean-data estimate unbiased (raw h-subset is too small)
    np.testing.assert_allclose(res.covariance, C, atol=0.1 * np.abs(C).max())
    np.testing.assert_allclose(np.diag(res.raw_covariance), np.diag(C), rtol=0.15)


def test_catoni_on_clean_and_heavy_tailed_data(risk_cfg):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(5000) + 3.0
    assert catoni_mean(x, risk_cfg.robust.catoni_delta) == pytest.approx(x.mean(), abs=0.02)
    # Pareto(2.2) samples: the Catoni estimate deviates less from the true mean across repeats
    true = 2.2 / 1.2
    errs_mean, errs_cat = [], []
    for _ in range(200):
        y = rng.pareto(2.2, 200) + 1
        errs_mean.append(abs(y.mean() - true))
        errs_cat.append(abs(catoni_mean(y, risk_cfg.robust.catoni_delta) - true))
    assert np.quantile(errs_cat, 0.99) < np.quantile(errs_mean, 0.99)


def test_bad_input(risk_cfg):
    with pytest.raises(InvalidParameterError, match="ewma_lambda"):
        ewma_covariance(np.ones((5, 2)), 1.2)
    with pytest.raises(InvalidParameterError, match="returns"):
        ledoit_wolf(np.ones(5))
    with pytest.raises(InvalidParameterError, match="mom_blocks"):
        median_of_means(np.ones((10, 2)), 8, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="mcd_support_fraction"):
        mcd(np.random.default_rng(0).standard_normal((50, 2)), 0.3, 5, 5, 0.975, np.random.default_rng(0))

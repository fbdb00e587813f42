"""POT / GPD: the MLE against scipy, tail quantiles against truth, CIs, and real BTC tails."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.evt import (
    anderson_darling,
    fit_gpd,
    gpd_loglik,
    pot_bootstrap,
    pot_fit,
    tail_summary,
)


@pytest.mark.parametrize("xi", [-0.3, 0.0, 0.25, 0.7])
def test_gpd_mle_matches_scipy(xi):
    y = stats.genpareto.rvs(xi, scale=1.5, size=800, random_state=np.random.default_rng(3))
    ours = fit_gpd(y)
    c, _, s = stats.genpareto.fit(y, floc=0)
    # ours is the maximiser: never a worse likelihood than scipy's optimiser
    assert ours.loglik >= gpd_loglik(y, c, s) - 1e-6
    assert ours.xi == pytest.approx(c, abs=0.02)
    assert ours.beta == pytest.approx(s, rel=0.03)
    assert abs(ours.xi - xi) < 0.15  # and near the truth (se ~ 0.05 at n = 800)


def test_pot_student_t_tail_and_bootstrap_cover_truth(risk_cfg):
    e = risk_cfg.evt
    x = stats.t.rvs(4, size=6000, random_state=np.random.default_rng(11))
    res = pot_fit(x, e.threshold_quantiles, e.min_exceedances, e.levels)
    for lv in e.levels:
        true_var = stats.t.ppf(lv, 4)
        assert res.var[lv] == pytest.approx(true_var, rel=0.08)
        assert res.es[lv] > res.var[lv]
    boot = pot_bootstrap(x, res, 100, 0.90, np.random.default_rng(0))
    assert boot.xi[0] < 0.25 < boot.xi[1]                 # Student-t(4): xi = 1/4
    assert boot.xi[0] < res.fit.xi < boot.xi[1]
    lo, hi = boot.var[0.99]
    assert lo < stats.t.ppf(0.99, 4) < hi
    # threshold diagnostics: the chosen row has the smallest A^2
    d = res.diagnostics.dropna()
    assert d.loc[d["ad"].idxmin(), "quantile"] == res.threshold_quantile


def test_threshold_rule_avoids_a_non_gpd_body():
    """Body: uniform on [0, 1]; tail above 1: exact GPD. The rule must pick u >= ~1."""
    rng = np.random.default_rng(5)
    body = rng.uniform(0, 1, 7000)
    tail = 1 + stats.genpareto.rvs(0.3, scale=0.5, size=3000, random_state=rng)
    x = np.concatenate([body, tail])  # P(X > 1) = 0.3
    grid = [0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    res = pot_fit(x, grid, 50, [0.99])
    assert res.threshold_quantile >= 0.7
    assert res.fit.xi == pytest.approx(0.3, abs=0.12)
    # a threshold inside the uniform body fits visibly worse
    d = res.diagnostics.set_index("quantile")
    assert d.loc[0.5, "ad"] > 3 * d["ad"].min()


def test_anderson_darling_separates_right_and_wrong_models():
    y = stats.genpareto.rvs(0.2, scale=1, size=500, random_state=np.random.default_rng(1))
    good = fit_gpd(y)
    assert anderson_darling(y, good) < 1.0
    bad = good.__class__(xi=-0.3, beta=good.beta, loglik=0.0, n=500)
    assert anderson_darling(y, bad) > 5.0


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="exceedances"):
        fit_gpd([1.0, 2.0])
    with pytest.raises(InvalidParameterError, match="exceedances"):
        fit_gpd(-np.ones(50))
    with pytest.raises(InvalidParameterError, match="losses"):
        pot_fit(np.arange(30.0), [0.9], 40, [0.99])
    x = stats.t.rvs(4, size=2000, random_state=np.random.default_rng(2))
    res = pot_fit(x, [0.9], 40, [0.99])
    with pytest.raises(InvalidParameterError, match="level"):
        from aurora_jax.risk.evt import gpd_tail_var_es

        gpd_tail_var_es(res.threshold, res.fit, res.n_total, res.n_exceed, 0.5)


def test_tail_summary_on_real_btc_losses(real_store, risk_cfg):
    close = real_store.series("BTC-USD", "close")
    losses = -np.diff(np.log(close.to_numpy()))
    cfg = risk_cfg.evt.copy()
    cfg.n_bootstrap = 40
    s = tail_summary(losses, cfg, np.random.default_rng(0))
    # daily BTC losses are heavy-tailed (xi ~ 0.2-0.4 in the literature), clustered (theta < 1)
    assert 0.05 < s.hill_xi < 0.7 and s.hill_k > 10
    assert -0.1 < s.pot.fit.xi < 0.7
    assert 0.2 < s.extremal_index <= 1.0
    # EVT VaR99 of daily losses within 25% of the empirical 99% quantile (n ~ 3,500)
    assert s.pot.var[0.99] == pytest.approx(np.quantile(losses, 0.99), rel=0.25)
    assert s.bootstrap.var[0.99][0] < s.pot.var[0.99] < s.bootstrap.var[0.99][1]

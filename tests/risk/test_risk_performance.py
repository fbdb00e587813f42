"""Performance statistics against closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.performance import (
    cvar,
    deflated_sharpe,
    expected_max_sharpe,
    max_drawdown,
    probabilistic_sharpe,
    sharpe,
    sortino,
    summarize,
)


def test_sharpe_sortino_drawdown_cvar_by_hand():
    r = np.array([0.01, -0.02, 0.03, 0.0, -0.01])
    assert sharpe(r, 252) == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    assert sortino(r, 252) == pytest.approx(r.mean() / np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(252))
    assert max_drawdown([100, 120, 90, 130, 65, 70]) == pytest.approx(0.5)
    assert cvar(np.r_[-0.1, np.zeros(19)], 0.95) == pytest.approx(0.1)  # worst 1 of 20


def test_psr_is_calibrated_under_the_null():
    """For zero-mean Gaussian returns PSR(0) is ~ Uniform(0, 1): 5% of series exceed 0.95."""
    rng = np.random.default_rng(0)
    psr = np.array([probabilistic_sharpe(rng.standard_normal(500) * 0.01, 0.0) for _ in range(600)])
    assert abs(np.mean(psr > 0.95) - 0.05) < 0.03
    strong = probabilistic_sharpe(rng.standard_normal(500) * 0.01 + 0.002, 0.0)
    assert strong > 0.99


def test_expected_max_sharpe_matches_monte_carlo():
    """E[max of N iid N(0, s^2)] ~ SR*_0 for the Sharpe ratios of N unskilled trials."""
    rng = np.random.default_rng(1)
    N, s = 20, 0.05
    trials = rng.normal(0, s, (4000, N))
    mc = trials.max(axis=1).mean()
    approx = np.mean([expected_max_sharpe(t) for t in trials[:200]])
    assert approx == pytest.approx(mc, rel=0.1)
    # DSR <= PSR(0) whenever the trials disagree
    r = rng.standard_normal(500) * 0.01 + 0.0005
    assert deflated_sharpe(r, trials[0]) < probabilistic_sharpe(r, 0.0)


def test_summarize_and_bad_input():
    rng = np.random.default_rng(2)
    r = rng.standard_normal(730) * 0.01 + 0.002
    e = 100 * np.cumprod(1 + r)
    s = summarize(r, e, traded_notional=2 * 100 * 365, periods_per_year=365, trial_sharpes=[0.01, 0.03, 0.02])
    assert s["total_return"] == pytest.approx(e[-1] / e[0] - 1)
    assert s["cagr"] == pytest.approx((e[-1] / e[0]) ** 0.5 - 1)
    assert s["turnover"] == pytest.approx(2 * 100 * 365 / e.mean() / 2)
    assert 0 <= s["dsr"] <= s["psr"] <= 1
    assert s["psr"] > 0.99 and s["sharpe"] == pytest.approx(sharpe(r, 365))
    with pytest.raises(InvalidParameterError, match="returns"):
        sharpe([0.1, np.nan, 0.2], 252)
    with pytest.raises(InvalidParameterError, match="equity"):
        max_drawdown([1.0, -1.0])

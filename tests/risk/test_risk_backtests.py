"""Risk-model backtests validated on simulated data: nominal size under a correct model,
high power against a misspecified one, and hand-computed statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.coverage_tests import (
    christoffersen_cc,
    christoffersen_independence,
    hit_sequence,
    kupiec_pof,
)
from aurora_jax.risk.diebold_mariano import diebold_mariano
from aurora_jax.risk.es_backtest import acerbi_szekely_z2, z2_statistic

N_SIM, T, P = 400, 500, 0.05


def rejection_rate(test, series) -> float:
    return float(np.mean([test(h).reject for h in series]))


def markov_hits(rng, T, p01, p11):
    h = np.zeros(T, dtype=int)
    for t in range(1, T):
        h[t] = rng.random() < (p11 if h[t - 1] else p01)
    return h


def binomial_band(rate: float, n: int) -> tuple[float, float]:
    sd = np.sqrt(rate * (1 - rate) / n)
    return rate - 4 * sd, rate + 4 * sd


def test_kupiec_known_value_and_size_and_power(risk_cfg):
    size = risk_cfg.backtests.test_size
    h = np.zeros(100, dtype=int)
    h[:10] = 1  # 10 hits in 100 at p = 0.05
    r = kupiec_pof(h, 0.05, size)
    lr = -2 * (90 * np.log(0.95) + 10 * np.log(0.05) - 90 * np.log(0.9) - 10 * np.log(0.1))
    assert r.statistic == pytest.approx(lr) and r.p_value == pytest.approx(stats.chi2.sf(lr, 1))
    rng = np.random.default_rng(0)
    ok = rng.random((N_SIM, T)) < P
    rate = rejection_rate(lambda x: kupiec_pof(x, P, size), ok)
    lo, hi = binomial_band(size, N_SIM)
    assert lo < rate < hi + 0.02  # discrete statistic: slightly conservative/liberal is allowed
    bad = rng.random((N_SIM, T)) < 2 * P  # VaR at the 90% quantile sold as 95%
    assert rejection_rate(lambda x: kupiec_pof(x, P, size), bad) > 0.9


def test_christoffersen_size_and_power(risk_cfg):
    size = risk_cfg.backtests.test_size
    rng = np.random.default_rng(1)
    ok = rng.random((N_SIM, T)) < P
    _, hi = binomial_band(size, N_SIM)
    assert rejection_rate(lambda x: christoffersen_independence(x, size), ok) < hi + 0.02
    assert rejection_rate(lambda x: christoffersen_cc(x, P, size), ok) < hi + 0.02
    # clustered hits with the right unconditional rate: pi = p01 / (1 - p11 + p01) ~ 0.05
    clustered = [markov_hits(rng, T, 0.03, 0.45) for _ in range(150)]
    assert abs(np.mean(clustered) - P) < 0.01
    assert rejection_rate(lambda x: christoffersen_independence(x, size), clustered) > 0.8
    assert rejection_rate(lambda x: christoffersen_cc(x, P, size), clustered) > 0.7
    # Kupiec alone cannot see clustering
    assert rejection_rate(lambda x: kupiec_pof(x, P, size), clustered) < 0.4


def test_z2_size_and_power(risk_cfg):
    """Model: N(0, 1) with VaR/ES at 97.5%. True: N(0, 1) (H0), or N(0, 1.25^2) (volatility
    understated by 20%: E[Z2] = 1 - 1.25 phi(1.96/1.25) / (0.025 ES) ~ -1.5)."""
    size, alpha, Tz = risk_cfg.backtests.test_size, 0.975, 250
    z = stats.norm.ppf(alpha)
    var = np.full(Tz, z)
    es = np.full(Tz, stats.norm.pdf(z) / (1 - alpha))
    rng = np.random.default_rng(2)
    null_draws = lambda g, m: g.standard_normal((m, Tz))

    def test(x):
        return acerbi_szekely_z2(x, var, es, alpha, null_draws, 1000, size, rng)

    ok = [test(x) for x in rng.standard_normal((150, Tz))]
    rate = float(np.mean([r.reject for r in ok]))
    lo, hi = binomial_band(size, 150)
    assert lo < rate < hi
    assert abs(np.mean([r.statistic for r in ok])) < 0.1  # E[Z2] = 0 under H0
    wide = [test(x) for x in 1.25 * rng.standard_normal((60, Tz))]
    assert float(np.mean([r.reject for r in wide])) > 0.8
    assert np.mean([r.statistic for r in wide]) < -1.0


def test_z2_statistic_by_hand():
    x = np.array([-3.0, 0.5, -1.0, 2.0])
    var = np.full(4, 2.0)
    es = np.full(4, 2.5)
    # one hit (-3 + 2 < 0): Z2 = -3 / (4 * 0.1 * 2.5) + 1 = -2
    assert z2_statistic(x, var, es, 0.9) == pytest.approx(-2.0)


def test_diebold_mariano_size_and_power(risk_cfg):
    size = risk_cfg.backtests.test_size
    rng = np.random.default_rng(3)
    # two forecasts with equally noisy errors (correlated through a common shock y)
    y = rng.standard_normal((300, 400))
    err1 = y + 0.3 * rng.standard_normal((300, 400))
    err2 = y + 0.3 * rng.standard_normal((300, 400))
    rate = np.mean([diebold_mariano(a ** 2, b ** 2, 1, size).reject for a, b in zip(err1, err2)])
    lo, hi = binomial_band(size, 300)
    assert lo < rate < hi
    better = (0.5 * rng.standard_normal((100, 400))) ** 2
    worse = (0.7 * rng.standard_normal((100, 400))) ** 2
    res = [diebold_mariano(a, b, 1, size) for a, b in zip(better, worse)]
    assert np.mean([r.reject for r in res]) > 0.9 and all(r.statistic < 0 for r in res)
    # h-step: MA(h-1) loss differentials keep the size with the long-run variance
    h = 5
    ma = np.stack([np.convolve(rng.standard_normal(404), np.ones(h), "valid") for _ in range(300)])
    rate_h = np.mean([diebold_mariano(d, np.zeros_like(d), h, size).reject for d in ma])
    assert rate_h < hi + 0.05


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="hits"):
        kupiec_pof(np.array([0, 2, 1]), 0.05, 0.05)
    with pytest.raises(InvalidParameterError, match="p"):
        kupiec_pof(np.array([0, 1, 0]), 1.5, 0.05)
    with pytest.raises(InvalidParameterError, match="var"):
        hit_sequence(np.ones(3), np.ones(4))
    with pytest.raises(InvalidParameterError, match="horizon"):
        diebold_mariano(np.ones(20), np.zeros(20), 0, 0.05)
    with pytest.raises(InvalidParameterError, match="es"):
        acerbi_szekely_z2(np.ones(5), np.ones(5), np.zeros(5), 0.975, lambda g, m: g.standard_normal((m, 5)),
                          200, 0.05, np.random.default_rng(0))

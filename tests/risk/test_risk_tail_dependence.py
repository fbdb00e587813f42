"""Upper tail dependence: Gumbel copula (known lambda_U), independence, real BTC/ETH."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.tail_dependence import lower_tail_dependence, upper_tail_dependence


def gumbel_copula(theta: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Marshall–Olkin sampling: V positive stable(1/theta) (Kanter), U_i = exp(-(E_i/V)^(1/theta))."""
    a = 1.0 / theta
    u = rng.uniform(0, np.pi, n)
    w = rng.exponential(1.0, n)
    v = np.sin(a * u) / np.sin(u) ** (1 / a) * (np.sin((1 - a) * u) / w) ** ((1 - a) / a)
    e = rng.exponential(1.0, (n, 2))
    return np.exp(-((e / v[:, None]) ** a))


@pytest.mark.parametrize("theta", [1.5, 2.0, 3.0])
def test_cfg_estimator_recovers_gumbel_lambda(theta):
    uv = gumbel_copula(theta, 5000, np.random.default_rng(int(theta * 10)))
    x, y = stats.norm.ppf(uv[:, 0]), stats.t.ppf(uv[:, 1], 3)  # margins do not matter (ranks)
    lam = upper_tail_dependence(x, y, "cfg", 0.95)
    assert lam == pytest.approx(2 - 2 ** (1 / theta), abs=0.05)
    # the Gumbel copula has no lower tail dependence; the estimator sees far less there
    assert lower_tail_dependence(x, y, "empirical", 0.95) < lam


def test_independence_gives_near_zero():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(5000), rng.standard_normal(5000)
    assert upper_tail_dependence(x, y, "cfg", 0.95) < 0.05
    # empirical secant at u: P(both > u) / (1 - u) = 1 - u under independence
    assert upper_tail_dependence(x, y, "empirical", 0.95) == pytest.approx(0.05, abs=0.03)


def test_real_btc_eth_daily_returns_are_tail_dependent(real_store, risk_cfg):
    td = risk_cfg.tail_dependence
    btc = real_store.series("BTC-USD", "mark_close_1h")
    eth = real_store.series("ETH-USD", "mark_close_1h")
    px = np.log(btc.to_frame("b").join(eth.to_frame("e"), how="inner"))
    daily = px.iloc[::24].diff().dropna()
    lam = upper_tail_dependence(daily["b"], daily["e"], td.method, td.u)
    lam_emp = upper_tail_dependence(daily["b"], daily["e"], "empirical", td.u)
    shuffled = upper_tail_dependence(daily["b"], np.random.default_rng(0).permutation(daily["e"].to_numpy()),
                                     "empirical", td.u)
    assert 0.3 < lam < 0.95 and 0.3 < lam_emp < 0.95
    assert lam_emp > 4 * shuffled  # far from independence


def test_bad_input():
    x = np.arange(100.0)
    with pytest.raises(InvalidParameterError, match="y"):
        upper_tail_dependence(x, x[:-1], "cfg", 0.95)
    with pytest.raises(InvalidParameterError, match="method"):
        upper_tail_dependence(x, x, "kendall", 0.95)
    with pytest.raises(InvalidParameterError, match="u"):
        upper_tail_dependence(x, x, "empirical", 0.99)

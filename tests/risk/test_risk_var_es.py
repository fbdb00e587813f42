"""VaR / ES of forecast paths against closed forms and against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.var_es import var_es_from_losses, var_es_from_paths, var_es_table


def test_normal_log_returns_match_closed_form():
    rng = np.random.default_rng(0)
    n, mu, sig = 200_000, 0.001, 0.02
    steps = np.array([1, 4, 9])
    logret = mu * steps + sig * np.sqrt(steps) * rng.standard_normal((n, 3))
    paths = 100.0 * np.exp(logret)
    var, es = var_es_from_paths(paths, 100.0, [0.95, 0.99], "log")
    for i, a in enumerate([0.95, 0.99]):
        s = sig * np.sqrt(steps)
        var_true = -mu * steps + s * norm.ppf(a)
        es_true = -mu * steps + s * norm.pdf(norm.ppf(a)) / (1 - a)
        np.testing.assert_allclose(np.asarray(var[i]), var_true, rtol=0.02)
        np.testing.assert_allclose(np.asarray(es[i]), es_true, rtol=0.02)
        assert np.all(np.asarray(es[i]) > np.asarray(var[i]))


def test_simple_losses_are_a_monotone_transform_of_log_losses():
    rng = np.random.default_rng(1)
    paths = 50 * np.exp(0.05 * rng.standard_normal((4001, 5)))
    v_log, _ = var_es_from_paths(paths, 50.0, [0.95, 0.99], "log")
    v_simple, _ = var_es_from_paths(paths, 50.0, [0.95, 0.99], "simple")
    # quantiles commute with the increasing map L_log -> 1 - exp(-L_log)
    np.testing.assert_allclose(np.asarray(v_simple), 1 - np.exp(-np.asarray(v_log)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n, alpha", [(1000, 0.95), (1000, 0.99), (400, 0.975), (37, 0.9)])
def test_discrete_es_matches_brute_force(n, alpha):
    rng = np.random.default_rng(n)
    x = rng.standard_t(3, size=n)
    var, es = var_es_from_losses(x, [alpha])
    s = np.sort(x)
    k = n * (1 - alpha)
    m = int(np.floor(k + 1e-9))
    # ES as the integral of the quantile function over (alpha, 1)
    u = np.linspace(alpha, 1, 200_001)[1:-1]
    q = s[np.minimum(np.ceil(u * n).astype(int) - 1, n - 1)]
    assert abs(float(es[0, 0]) - q.mean()) < 2e-3 * (1 + abs(q.mean()))
    assert float(var[0, 0]) == pytest.approx(s[n - m - 1])


def test_table_and_bad_input():
    paths = 100 * np.exp(0.01 * np.random.default_rng(2).standard_normal((500, 3)))
    t = var_es_table(paths, 100.0, [0.95, 0.99], "log")
    assert list(t.columns) == ["step", "level", "var", "es"] and len(t) == 6
    with pytest.raises(InvalidParameterError, match="levels"):
        var_es_from_paths(paths, 100.0, [1.2], "log")
    with pytest.raises(InvalidParameterError, match="returns"):
        var_es_from_paths(paths, 100.0, [0.95], "pct")
    with pytest.raises(InvalidParameterError, match="paths"):
        var_es_from_paths(-paths, 100.0, [0.95], "log")
    with pytest.raises(InvalidParameterError, match="levels"):
        var_es_from_paths(paths[:50], 100.0, [0.999], "log")

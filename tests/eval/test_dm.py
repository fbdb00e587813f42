import numpy as np
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval.dm import diebold_mariano


def test_hand_computed_lag0():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.2, 60)
    b = a + rng.normal(0.05, 0.1, 60)
    d = a - b
    T = 60
    dm = d.mean() / np.sqrt(np.mean((d - d.mean()) ** 2) / T)
    expected = dm * np.sqrt((T - 1) / T)
    r = diebold_mariano(a, b, 0)
    assert r.stat == pytest.approx(expected)
    assert r.stat < 0 and r.p_value < 0.01 and r.n == 60


def test_newey_west_lag_and_size_under_the_null():
    rng = np.random.default_rng(1)
    rej = 0
    for _ in range(400):
        e = rng.normal(size=101)
        d = e[1:] + 0.8 * e[:-1]  # MA(1) differentials: needs lag 1
        r = diebold_mariano(d, np.zeros(100), lag=1)
        rej += r.p_value < 0.05
    assert 0.02 <= rej / 400 <= 0.10


def test_degenerate_and_bad_input():
    r = diebold_mariano(np.ones(10), np.ones(10))
    assert np.isnan(r.stat) and r.mean_diff == 0.0
    with pytest.raises(InvalidParameterError, match="loss_b"):
        diebold_mariano(np.ones(5), np.ones(4))

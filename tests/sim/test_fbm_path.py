"""IncrementPath: a diffrax control that reproduces pre-sampled increments exactly."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.fbm_path import IncrementPath
from aurora_jax.sim.nfsde import euler_solve


def test_grid_values_and_linear_interpolation():
    inc = jnp.asarray(np.random.default_rng(0).normal(size=(10, 2)), jnp.float32)
    p = IncrementPath(1.0, 0.5, inc)
    cum = np.concatenate([[[0, 0]], np.cumsum(np.asarray(inc), 0)])
    for k in range(11):
        np.testing.assert_allclose(p.evaluate(1.0 + 0.5 * k), cum[k], atol=1e-5)
    mid = p.evaluate(1.0 + 0.5 * 3.5)
    np.testing.assert_allclose(mid, cum[3] + 0.5 * np.asarray(inc[3]), atol=1e-5)
    np.testing.assert_allclose(p.evaluate(1.5, 3.0), cum[4] - cum[1], atol=1e-5)
    assert float(p.t1) == pytest.approx(6.0)


def test_as_control_term_gives_exact_sums():
    # dX = 2 dW on the grid -> X_T = 2 * sum(increments) exactly, through diffrax
    inc = jax.random.normal(jax.random.key(1), (48, 1)) * 0.2
    ys = euler_solve(
        lambda t, y, a: jnp.zeros_like(y),
        [(lambda t, y, a: 2.0 * jnp.ones((1, 1)), IncrementPath(0.0, 1 / 24, inc))],
        jnp.zeros(1),
        0.0,
        1 / 24,
        48,
        None,
        24,
    )
    np.testing.assert_allclose(
        ys[:, 0], [0.0, 2 * float(inc[:24].sum()), 2 * float(inc.sum())], atol=1e-5
    )


def test_bad_input():
    with pytest.raises(InvalidParameterError, match="dt"):
        IncrementPath(0.0, 0.0, jnp.ones((3, 1)))
    with pytest.raises(InvalidParameterError, match="increments"):
        IncrementPath(0.0, 1.0, jnp.ones(3))
    assert isinstance(IncrementPath(0.0, 1.0, jnp.ones((3, 1))), diffrax.AbstractPath)

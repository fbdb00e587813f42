"""TCN-lite: causal convolutions, the receptive field, and learning a real predictive signal."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.tcn_lite import TCNLite


def _tcn(key=0, dilations=(1, 2, 4)):
    return TCNLite(4, 5, channels=8, kernel=3, dilations=list(dilations), hidden=16, key=jax.random.PRNGKey(key))


def test_features_are_causal():
    tcn = _tcn()
    r = jax.random.normal(jax.random.PRNGKey(1), (40,))
    m = jnp.ones(40)
    a = tcn.features(r, m)
    b = tcn.features(r.at[25].add(4.0), m)
    np.testing.assert_allclose(a[:, :25], b[:, :25], rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(a[:, 25:] - b[:, 25:]).max()) > 1e-4


def test_receptive_field():
    dil = (1, 2, 4)
    tcn = _tcn(2, dil)
    rf = TCNLite.receptive_field(3, dil)
    assert rf == 1 + 2 * 7
    r = jax.random.normal(jax.random.PRNGKey(3), (40,))
    m = jnp.ones(40)
    last = lambda x: tcn.features(x, m)[:, -1]
    base = last(r)
    # an input just outside the receptive field of the last step changes nothing
    np.testing.assert_allclose(last(r.at[40 - rf - 1].add(9.0)), base, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(last(r.at[40 - rf].add(9.0)) - base).max()) > 1e-4


def test_learns_a_predictable_mean():
    """Targets y_k = 0.6 r_last + noise: after training the MSE beats the zero forecast clearly."""
    rng = np.random.default_rng(0)
    n = 512
    r = rng.standard_normal((n, 32)).astype(np.float32)
    y = (0.6 * r[:, -1:] + 0.5 * rng.standard_normal((n, 5))).astype(np.float32)
    tcn = _tcn(4)
    m, ctx = jnp.ones((n, 32)), jnp.zeros((n, 4))
    opt = optax.adam(3e-3)
    params, static = eqx.partition(tcn, eqx.is_inexact_array)
    state = opt.init(params)

    def mse(p):
        pred = jax.vmap(eqx.combine(p, static))(jnp.asarray(r), m, ctx)
        return jnp.mean((pred - y) ** 2)

    @eqx.filter_jit
    def step(p, s):
        v, g = eqx.filter_value_and_grad(mse)(p)
        u, s = opt.update(g, s, p)
        return eqx.apply_updates(p, u), s, v

    for _ in range(300):
        params, state, v = step(params, state)
    zero = float(np.mean(y**2))            # ~ 0.36 + 0.25
    assert float(v) < 0.75 * zero and float(v) < 0.36


def test_bad_settings_name_the_field():
    with pytest.raises(InvalidParameterError, match="trend.tcn"):
        TCNLite(4, 5, channels=8, kernel=1, dilations=[1], hidden=8, key=jax.random.PRNGKey(0))

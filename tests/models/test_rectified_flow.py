"""Rectified flow: learns a conditional path law (scale and cross-step correlation follow the
conditioning), the loss is the straight-line regression target, and samples are centred."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.rectified_flow import ResidualFlow


def _data(rng, n):
    """Paths of 4 steps: increments iid N(0, s^2) with s = exp(c), c in {-0.5, +0.5}."""
    c = rng.choice([-0.5, 0.5], size=(n, 1)).astype(np.float32)
    x = (np.exp(c) * rng.standard_normal((n, 4))).astype(np.float32)
    return x, c


def test_learns_a_conditional_scale_and_centres_samples():
    rng = np.random.default_rng(0)
    flow = ResidualFlow(1, 4, width=32, depth=2, n_freq=3, key=jax.random.PRNGKey(0))
    opt = optax.adam(3e-3)
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    state = opt.init(params)

    @eqx.filter_jit
    def step(p, s, x1, c, t, x0):
        v, g = eqx.filter_value_and_grad(lambda q: eqx.combine(q, static).loss(x1, c, jnp.ones_like(x1), t, x0))(p)
        u, s = opt.update(g, s, p)
        return eqx.apply_updates(p, u), s, v

    for _ in range(800):
        x1, c = _data(rng, 256)
        params, state, _ = step(params, state, x1, c, rng.random(256, dtype=np.float32),
                                rng.standard_normal((256, 4)).astype(np.float32))
    model = eqx.combine(params, static)
    lo = np.asarray(model.sample(jnp.array([-0.5]), jax.random.PRNGKey(1), 4000, 8))
    hi = np.asarray(model.sample(jnp.array([0.5]), jax.random.PRNGKey(2), 4000, 8))
    ratio = hi.std() / lo.std()
    assert 2.0 < ratio < 3.5                                   # exp(1) = 2.72
    assert 0.45 < lo.std() < 0.8 and 1.3 < hi.std() < 2.2      # exp(-0.5) = 0.61, exp(0.5) = 1.65
    np.testing.assert_allclose(lo.mean(0), 0.0, atol=1e-5)     # centred across paths, every step
    raw = np.asarray(model.sample(jnp.array([0.5]), jax.random.PRNGKey(2), 4000, 8, center=False))
    np.testing.assert_allclose(hi, raw - raw.mean(0), atol=1e-5)


def test_loss_is_the_masked_straight_line_regression():
    """loss = mean over unmasked entries of (v(x_t, t, c) - (x1 - x0))^2 with x_t on the line."""
    flow = ResidualFlow(2, 3, width=8, depth=1, n_freq=2, key=jax.random.PRNGKey(3))
    x1 = jnp.ones((5, 3))
    x0 = jnp.zeros((5, 3))
    t = jnp.linspace(0.1, 0.9, 5)
    c = jnp.zeros((5, 2))
    xt = t[:, None] * x1
    v = jnp.stack([flow.velocity(xt[i][None], t[i], flow.embed(c[i]))[0] for i in range(5)])
    assert abs(float(flow.loss(x1, c, jnp.ones((5, 3)), t, x0)) - float(jnp.mean((v - 1.0) ** 2))) < 1e-6
    mask = jnp.ones((5, 3)).at[:, 2].set(0.0)
    expected = float(jnp.mean((v[:, :2] - 1.0) ** 2))
    assert abs(float(flow.loss(x1, c, mask, t, x0)) - expected) < 1e-6


def test_bad_settings_name_the_field():
    with pytest.raises(InvalidParameterError, match="flow.width"):
        ResidualFlow(2, 3, width=0, depth=1, n_freq=2, key=jax.random.PRNGKey(0))

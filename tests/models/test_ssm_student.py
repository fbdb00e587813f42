"""SSM student: the S4D block against its recurrence, causality and padding, the Student-t
pieces against scipy, the closed-form ELBO KL against Monte Carlo, and ELBO learning."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.ssm_student import (
    DiagonalSSMBlock,
    SSMStudent,
    student_t_from_uniforms,
    student_t_logpdf,
)


def _student(key=0, **kw):
    args = {"d_model": 8, "state_dim": 4, "n_blocks": 2, "latent_dim": 3, "hidden": 16, "nu_min": 2.5}
    args.update(kw)
    return SSMStudent(5, 6, key=jax.random.PRNGKey(key), **args)


def test_block_convolution_equals_the_diagonal_recurrence():
    """y_k = C h_k + skip x_k with h_k = Abar h_{k-1} + Bbar x_k, computed step by step."""
    blk = DiagonalSSMBlock(3, 4, key=jax.random.PRNGKey(1))
    blk = eqx.tree_at(lambda b: b.b, blk, jax.random.normal(jax.random.PRNGKey(2), blk.b.shape))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (20, 3)))
    a = -np.exp(np.asarray(blk.log_neg_a))
    dt = np.exp(np.asarray(blk.log_dt))[:, None]
    abar = np.exp(dt * a)
    bbar = (abar - 1.0) / a * np.asarray(blk.b)
    h = np.zeros_like(a)
    ref = []
    for k in range(20):
        h = abar * h + bbar * x[k][:, None]
        ref.append((np.asarray(blk.c) * h).sum(-1) + np.asarray(blk.skip) * x[k])
    kern = np.asarray(blk.kernel(20))
    conv = np.array([(kern[: k + 1][::-1] * x[: k + 1]).sum(0) for k in range(20)]) + np.asarray(blk.skip) * x
    np.testing.assert_allclose(conv, np.array(ref), rtol=1e-4, atol=1e-5)
    assert np.all((abar > 0) & (abar < 1))


def test_encoder_is_causal_and_ignores_left_padding():
    st = _student()
    encode = eqx.filter_jit(lambda s, r, m, c: s.encode(r, m, c))
    r = jax.random.normal(jax.random.PRNGKey(4), (40,))
    m = jnp.ones(40)
    ctx = jnp.linspace(-1, 1, 5)
    base = encode(st, r, m, ctx)
    # left padding (masked zeros) changes nothing
    padded = encode(st, jnp.concatenate([jnp.zeros(24), r]), jnp.concatenate([jnp.zeros(24), m]), ctx)
    np.testing.assert_allclose(base, padded, rtol=1e-5, atol=1e-6)
    # garbage under the mask changes nothing either
    junk = encode(st, jnp.concatenate([jnp.full(24, 7.0), r]), jnp.concatenate([jnp.zeros(24), m]), ctx)
    np.testing.assert_allclose(base, junk, rtol=1e-5, atol=1e-6)
    # the latest return does matter
    moved = encode(st, r.at[-1].add(3.0), m, ctx)
    assert float(jnp.abs(moved - base).max()) > 1e-4
    # block outputs are causal: changing the last step leaves earlier outputs intact
    blk = eqx.filter_jit(lambda b, x: b(x, jnp.ones(30)))
    x = jax.random.normal(jax.random.PRNGKey(5), (30, 8))
    y1, y2 = blk(st.blocks[0], x), blk(st.blocks[0], x.at[-1].add(5.0))
    np.testing.assert_allclose(y1[:-1], y2[:-1], rtol=1e-6, atol=1e-6)


def test_student_t_logpdf_matches_scipy():
    y = np.linspace(-6, 6, 25)
    for nu, mu, tau in [(2.5, 0.1, 0.7), (5.0, -0.3, 1.4), (30.0, 0.0, 1.0)]:
        ours = np.asarray(student_t_logpdf(jnp.asarray(y), mu, tau, nu))
        np.testing.assert_allclose(ours, stats.t.logpdf(y, nu, loc=mu, scale=tau), rtol=1e-5, atol=1e-5)


def test_bailey_student_t_draws_have_the_t_law_and_gradients_in_nu():
    key_u, key_v = jax.random.split(jax.random.PRNGKey(6))
    u = jax.random.uniform(key_u, (40_000,), minval=1e-7, maxval=1.0)
    v = jax.random.uniform(key_v, (40_000,))
    for nu in (3.0, 8.0):
        t = np.asarray(student_t_from_uniforms(u, v, nu))
        assert stats.kstest(t, stats.t(nu).cdf).pvalue > 1e-3
    g = jax.grad(lambda nu: jnp.mean(student_t_from_uniforms(u, v, nu) ** 2))(5.0)
    # E t^2 = nu / (nu - 2): d/dnu = -2 / (nu - 2)^2 = -0.222 at nu = 5
    assert np.isfinite(float(g)) and abs(float(g) + 2.0 / 9.0) < 0.08


def test_elbo_kl_is_the_monte_carlo_kl_between_posterior_and_prior():
    st = _student(7)
    s0 = jnp.array([0.3, -0.2, 0.5])
    y = jnp.linspace(-1, 1, 6)
    mask = jnp.ones(6)
    m, log_v = st.posterior_params(s0, y, mask)
    v = jnp.exp(log_v)
    # closed form (what elbo uses) = ELBO difference between likelihood-free pieces
    eps = jnp.zeros((1, 6, 3))
    mu, log_tau = st.emission(m[None])
    ll0 = jnp.sum(student_t_logpdf(y, mu, jnp.exp(log_tau), st.nu) * mask)
    kl_closed = float(ll0 - st.elbo(s0, y, mask, eps))
    # Monte Carlo E_q[log q(s) - log p(s)] with p the Gaussian Markov prior
    n = 200_000
    s = m + jnp.sqrt(v) * jax.random.normal(jax.random.PRNGKey(8), (n, 6, 3))
    logq = stats.norm.logpdf(np.asarray(s), np.asarray(m), np.sqrt(np.asarray(v))).sum((1, 2))
    prev = np.concatenate([np.broadcast_to(np.asarray(s0), (n, 1, 3)), np.asarray(s[:, :-1])], axis=1)
    mean_p = np.asarray(st.prior_a) * prev + np.asarray(st.prior_b)
    logp = stats.norm.logpdf(np.asarray(s), mean_p, np.exp(np.asarray(st.prior_log_sigma))).sum((1, 2))
    kl_mc = float(np.mean(logq - logp))
    se = float(np.std(logq - logp) / np.sqrt(n))
    assert abs(kl_closed - kl_mc) < 5 * se + 1e-3


def test_prior_samples_match_the_mean_path_and_scale():
    st = _student(9)
    s0 = jnp.array([0.4, -0.1, 0.2])
    y, log_tau = st.sample(s0, jax.random.PRNGKey(10), 6, 20_000)
    mu, _ = st.mean_path(s0, 6)
    # E[y_k] = E[mu_k] = w_mu . E[s_k] + c_mu (the mean path); standard error from the sample
    se = np.asarray(jnp.std(y, 0)) / np.sqrt(20_000)
    assert np.all(np.abs(np.asarray(jnp.mean(y, 0) - mu)) < 5 * se)
    assert y.shape == (20_000, 6) and log_tau.shape == (20_000, 6)


def test_elbo_training_learns_the_return_scale():
    """Returns ~ t_5 with scale 2: after ELBO training the emission scale is close to 2."""
    import optax

    st = _student(11, n_blocks=1)
    rng = np.random.default_rng(0)
    n = 128
    ys = jnp.asarray(2.0 * rng.standard_t(5, (n, 6)), jnp.float32)
    ret = jnp.asarray(rng.standard_normal((n, 16)), jnp.float32)
    ctx = jnp.zeros((n, 5))

    def loss(model, eps):
        s0 = jax.vmap(model.encode)(ret, jnp.ones((n, 16)), ctx)
        return -jnp.mean(jax.vmap(model.elbo)(s0, ys, jnp.ones((n, 6)), eps)) / 6

    opt = optax.adam(0.04)
    params, static = eqx.partition(st, eqx.is_inexact_array)
    state = opt.init(params)

    @eqx.filter_jit
    def step(params, state, eps):
        val, g = eqx.filter_value_and_grad(lambda p: loss(eqx.combine(p, static), eps))(params)
        upd, state = opt.update(g, state, params)
        return eqx.apply_updates(params, upd), state, val

    first = None
    for i in range(80):
        params, state, val = step(params, state, jnp.asarray(rng.standard_normal((n, 1, 6, 3)), jnp.float32))
        first = float(val) if first is None else first
    model = eqx.combine(params, static)
    s0 = jax.vmap(model.encode)(ret, jnp.ones((n, 16)), ctx)
    _, log_tau = jax.vmap(lambda s: model.mean_path(s, 6))(s0)
    scale = float(jnp.exp(jnp.median(log_tau)))
    assert float(val) < first - 0.3
    assert 1.5 < scale < 2.6


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(InvalidParameterError, match="nu_min"):
        _student(nu_min=2.0)
    with pytest.raises(InvalidParameterError, match="latent_dim"):
        _student(latent_dim=0)

"""Distillation pieces: the differentiable Hill estimator equals the simulation package's,
the Gaussian KL is the closed form, and the distillation loss pulls the student toward the
teacher's path law (scale) when trained on it alone."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import integrate, stats

from aurora_jax.features.inputs import ModelInputs
from aurora_jax.models.ssm_student import SSMStudent
from aurora_jax.sim.estimators.tails import hill_tail_index
from aurora_jax.train.distill import DistillLoss, TeacherSet, gaussian_kl, hill_xi, teacher_arrays


def test_hill_matches_the_tails_estimator():
    rng = np.random.default_rng(0)
    x = rng.pareto(3.0, 5000) + 1.0   # tail index 3 -> xi = 1/3
    for k in (20, 70, 300):
        ref, k_used = hill_tail_index(x, k=k)
        assert k_used == k
        np.testing.assert_allclose(float(hill_xi(jnp.asarray(x), k)), ref, rtol=2e-5)
    assert abs(float(hill_xi(jnp.asarray(x), 300)) - 1 / 3) < 0.06
    g = jax.grad(lambda s: hill_xi(s * jnp.asarray(x[:500]) ** 1.2, 30))(1.0)
    assert abs(float(g)) < 1e-4  # scale invariant: d xi / d scale = 0


def test_gaussian_kl_closed_form():
    kl = float(gaussian_kl(0.3, 0.5, -0.2, 1.7))
    p, q = stats.norm(0.3, np.sqrt(0.5)), stats.norm(-0.2, np.sqrt(1.7))
    ref, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -12, 12)
    assert abs(kl - ref) < 1e-6


def _inputs(n, lookback=24, dim=4):
    rng = np.random.default_rng(1)
    f = lambda a: jnp.asarray(a, jnp.float32)
    return ModelInputs(returns=f(rng.standard_normal((n, lookback))), returns_mask=f(np.ones((n, lookback))),
                       revin_loc=f(np.zeros(n)), revin_scale=f(np.full(n, 0.02)), regime=f(np.zeros((n, dim))),
                       regime_id=jnp.ones(n, jnp.int32), iv_path=f(np.full((n, 5), 0.5)), rv_level=f(np.full(n, 0.5)),
                       mm_indices=f(np.zeros((n, 3))), spot=f(np.full(n, 100.0)))


def test_distillation_pulls_the_student_to_the_teacher_scale():
    """Teacher paths: 2.5 x t_4 normalized returns with log-vol log 2.5. Distillation alone moves the
    student's sampled scale from about 0.8 up toward the teacher's."""
    rng = np.random.default_rng(2)
    n, paths, h = 16, 24, 5
    tset = TeacherSet(np.arange(n), (2.5 * rng.standard_t(4, (n, paths, h))).astype(np.float32),
                      np.full((n, paths, h), np.log(2.5), np.float32), "synthetic")
    st = SSMStudent(4 + 3 + 5 + 3, h, d_model=4, state_dim=2, n_blocks=1, latent_dim=2, hidden=8, nu_min=2.5,
                    key=jax.random.PRNGKey(0))
    data = teacher_arrays(tset, _inputs(n))
    tails = {"threshold_rule": "sqrt", "fraction": 0.05, "k_min": 10}

    class Cfg(dict):
        __getattr__ = dict.__getitem__

    loss = DistillLoss.from_cfg(tset, Cfg(distill_dates=4, distill_paths=24, signature_depth=2, weight_signature=1.0,
                                          weight_tail=1.0, weight_latent_kl=0.1), Cfg(tails), st.latent_dim)
    opt = optax.adam(0.06)
    params, static = eqx.partition(st, eqx.is_inexact_array)
    state = opt.init(params)

    @eqx.filter_jit
    def step(p, s, noise):
        v, g = eqx.filter_value_and_grad(lambda q: loss(eqx.combine(q, static), data, noise))(p)
        u, s = opt.update(g, s, p)
        return eqx.apply_updates(p, u), s, v

    from aurora_jax.models.trend_ensemble import context_vector

    x0 = jax.tree_util.tree_map(lambda a: a[0], data["inputs"])

    def sampled_sd(model):
        s0 = model.encode(x0.returns, x0.returns_mask, context_vector(x0))
        y, _ = model.sample(s0, jax.random.PRNGKey(3), h, 4000)
        return float(jnp.std(y))

    sd0, sd_teacher = sampled_sd(st), float(np.std(tset.y))
    values = []
    for _ in range(50):
        params, state, v = step(params, state, loss.noise(rng, data))
        values.append(float(v))
    model = eqx.combine(params, static)
    terms = loss.terms(model, data, loss.noise(np.random.default_rng(5), data))
    assert np.mean(values[-20:]) < np.mean(values[:10])
    assert sampled_sd(model) > sd0 + 0.4 * (sd_teacher - sd0)   # most of the way to the teacher's scale
    assert all(np.isfinite(float(terms[k])) for k in ("signature_mmd", "tail", "latent_kl"))

"""Gaussian hidden Markov model (diagonal covariances), fitted by Baum–Welch (EM).

``s_t ~ Markov(pi, A)``, ``x_t | s_t = k ~ N(mu_k, diag(sd_k^2))``. The E-step is the scaled
forward–backward recursion (``lax.scan``); the M-step is closed form. ``filter`` gives the
causal probabilities ``P(s_t | x_{0..t})`` used as regime labels; states are ordered by the
mean of the volatility feature (``order_by`` column), so state 0 is calm and ``K-1`` volatile.
Used as a comparison for :class:`VolRegimeClassifier` on (return, log realized vol).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError


class GaussianHMM(eqx.Module):
    """Parameters of a K-state diagonal Gaussian HMM."""

    pi: Float[Array, " k"]
    trans: Float[Array, "k k"]
    means: Float[Array, "k d"]
    sds: Float[Array, "k d"]

    def log_emission(self, x: Float[Array, "t d"]) -> Float[Array, "t k"]:
        z = (x[:, None, :] - self.means[None]) / self.sds[None]
        return jnp.sum(-0.5 * z**2 - jnp.log(self.sds[None]) - 0.5 * jnp.log(2 * jnp.pi), axis=-1)

    def filter(self, x: Float[Array, "t d"]) -> Float[Array, "t k"]:
        """Causal state probabilities ``P(s_t | x_0..x_t)``."""
        alpha, _ = _forward(self, x)
        return alpha

    def log_likelihood(self, x: Float[Array, "t d"]) -> Float[Array, ""]:
        _, log_c = _forward(self, x)
        return jnp.sum(log_c)


def _forward(hmm: GaussianHMM, x: Float[Array, "t d"]):
    log_b = hmm.log_emission(x)
    shift = jnp.max(log_b, axis=1, keepdims=True)
    b = jnp.exp(log_b - shift)

    def step(prev, bt):
        a = (prev @ hmm.trans) * bt
        c = jnp.sum(a)
        return a / c, (a / c, c)

    a0 = hmm.pi * b[0]
    c0 = jnp.sum(a0)
    _, (alphas, cs) = jax.lax.scan(step, a0 / c0, b[1:])
    alphas = jnp.concatenate([(a0 / c0)[None], alphas])
    log_c = jnp.concatenate([jnp.log(c0)[None], jnp.log(cs)]) + shift[:, 0]
    return alphas, log_c


@jax.jit
def _em_step(hmm: GaussianHMM, x: Float[Array, "t d"]) -> tuple[GaussianHMM, Float[Array, ""]]:
    log_b = hmm.log_emission(x)
    shift = jnp.max(log_b, axis=1, keepdims=True)
    b = jnp.exp(log_b - shift)
    alphas, log_c = _forward(hmm, x)
    cs = jnp.exp(log_c - shift[:, 0])

    def back(beta_next, inp):
        bt1, c1 = inp
        beta = (hmm.trans @ (bt1 * beta_next)) / c1
        return beta, beta

    k = hmm.pi.shape[0]
    _, betas = jax.lax.scan(back, jnp.ones(k), (b[1:], cs[1:]), reverse=True)
    betas = jnp.concatenate([betas, jnp.ones((1, k))])
    gamma = alphas * betas
    gamma = gamma / jnp.sum(gamma, axis=1, keepdims=True)
    xi = (
        alphas[:-1, :, None] * hmm.trans[None] * (b[1:] * betas[1:])[:, None, :]
        / cs[1:, None, None]
    )
    trans = jnp.sum(xi, axis=0)
    trans = trans / jnp.sum(trans, axis=1, keepdims=True)
    w = jnp.sum(gamma, axis=0)
    means = (gamma.T @ x) / w[:, None]
    var = (gamma.T @ x**2) / w[:, None] - means**2
    sds = jnp.sqrt(jnp.maximum(var, 1e-6))
    new = GaussianHMM(pi=gamma[0], trans=trans, means=means, sds=sds)
    return new, jnp.sum(log_c)


def fit_hmm(
    x: Float[np.ndarray, "t d"],
    key: PRNGKeyArray,
    num_states: int = 3,
    num_iters: int = 100,
    tol: float = 1e-4,
    order_by: int = -1,
    stay_prob: float = 0.95,
) -> tuple[GaussianHMM, float]:
    """Baum–Welch from a quantile-based start (jittered with ``key``); returns the model with
    states sorted by ``means[:, order_by]`` and the final log-likelihood."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] < 10 * num_states:
        raise InvalidParameterError(
            "x", x.shape, f"(t, d) with t >= {10 * num_states}", "too few observations for the HMM"
        )
    if not np.all(np.isfinite(x)):
        raise InvalidParameterError("x", "non-finite values", "finite observations only")
    col = x[:, order_by]
    edges = np.quantile(col, np.linspace(0, 1, num_states + 1))
    means, sds = [], []
    for k in range(num_states):
        m = (col >= edges[k]) & (col <= edges[k + 1])
        means.append(x[m].mean(axis=0))
        sds.append(x[m].std(axis=0) + 1e-3)
    jitter = 0.01 * np.asarray(jax.random.normal(key, (num_states, x.shape[1])))
    sd_all = x.std(axis=0)
    trans = np.full((num_states, num_states), (1 - stay_prob) / max(num_states - 1, 1))
    np.fill_diagonal(trans, stay_prob)
    hmm = GaussianHMM(
        pi=jnp.full(num_states, 1.0 / num_states),
        trans=jnp.asarray(trans),
        means=jnp.asarray(np.asarray(means) + jitter * sd_all),
        sds=jnp.asarray(np.asarray(sds)),
    )
    xj = jnp.asarray(x)
    prev = -np.inf
    ll = -np.inf
    for _ in range(num_iters):
        hmm, ll_j = _em_step(hmm, xj)
        ll = float(ll_j)
        if abs(ll - prev) < tol * max(1.0, abs(prev)):
            break
        prev = ll
    order = np.argsort(np.asarray(hmm.means[:, order_by]))
    hmm = GaussianHMM(
        pi=hmm.pi[order],
        trans=hmm.trans[order][:, order],
        means=hmm.means[order],
        sds=hmm.sds[order],
    )
    return hmm, float(total_log_likelihood(hmm, xj))


@eqx.filter_jit
def filtered_probs(hmm: GaussianHMM, x: Float[Array, "t d"]) -> Float[Array, "t k"]:
    """Jitted :meth:`GaussianHMM.filter` (compiled once per window length)."""
    return hmm.filter(x)


@eqx.filter_jit
def total_log_likelihood(hmm: GaussianHMM, x: Float[Array, "t d"]) -> Float[Array, ""]:
    """Jitted :meth:`GaussianHMM.log_likelihood`."""
    return hmm.log_likelihood(x)

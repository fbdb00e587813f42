"""SSM student: a diagonal state-space encoder (S4D, Mamba-style gate) + a latent Student-t SSM.

**Encoder** over the RevIN-normalized lookback (oldest first). Each step's input
``u_k = (r_k, |r_k|, m_k)`` (return, magnitude, mask) is lifted to ``x_k in R^D``, zeroed where
``m_k = 0`` (padding), and passed through ``n_blocks`` diagonal linear SSM blocks (S4D-real,
zero-order hold): per channel ``d`` with ``N`` states,

    h_k = Abar h_{k-1} + Bbar x_k,     Abar = exp(dt A),  Bbar = (Abar - 1) / A * B,  A = -exp(.) < 0
    y_k = C h_k + skip * x_k  =  sum_{j <= k} K_{k-j} x_j + skip * x_k,   K_i = sum_n C_n Bbar_n Abar_n^i

so ``0 < Abar < 1`` (stable) and the block is a causal convolution with the kernel ``K``
(computed once, applied as a Toeplitz product). Each block adds a gated update
``x <- LayerNorm(x + W_o (gelu(y) * sigmoid(W_g x)))`` (Mamba-style multiplicative gate).
Left padding is exact: zero inputs contribute nothing. The last output and the context
vector ``c`` (regime, MM indices, vol ratios; see
:func:`aurora_jax.models.trend_ensemble.context_vector`) give the **trend latent**
``s_0 = MLP(y_L, c) in R^L``.

**Generative model** over the horizon ``k = 1..H`` of the scaled daily returns
``y_k = r_k / scale`` (``scale`` = the RevIN std; no de-meaning, so a zero mean is a zero raw drift):

    s_k = a * s_{k-1} + b + sigma * eps_k,     eps_k ~ N(0, I),  a = sigmoid(.) in (0, 1)
    y_k | s_k ~ StudentT(nu, mu_k = w_mu . s_k + c_mu, tau_k = exp(w_tau . s_k + c_tau))

**Inference** (ELBO): mean-field ``q(s_k) = N(m_k, diag v_k)`` from an MLP of ``(s_0, y, mask)``,

    ELBO = sum_k mask_k E_q log t_nu(y_k; mu_k, tau_k)
           - sum_k E_{q(s_{k-1})} KL(q(s_k) || p(s_k | s_{k-1}))

with the closed form ``KL = 1/2 sum [log(sigma^2/v_k) + (v_k + (m_k - a m_{k-1} - b)^2
+ a^2 v_{k-1}) / sigma^2 - 1]`` (``m_0 = s_0``, ``v_0 = 0``). The expected log-likelihood uses
reparameterized draws of ``s``. Sampling from the prior draws Student-t noise by Bailey's polar
method, ``t = sqrt(nu (u^(-2/nu) - 1)) cos(2 pi v)`` with ``u, v ~ U(0, 1)``, which is smooth in
``nu``; with ``y = mu + tau t`` the sampled paths are differentiable in every parameter, so the
distillation losses on them train the whole student. The noise is an argument (``*_noise``
methods) so training steps carry no random-number generation of their own.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError

_LOG_PI = 1.1447298858494002


def student_t_logpdf(y, mu, tau, nu):
    """``log t_nu(y; mu, tau)``, elementwise."""
    z = (y - mu) / tau
    return (gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * (jnp.log(nu) + _LOG_PI)
            - jnp.log(tau) - 0.5 * (nu + 1.0) * jnp.log1p(z * z / nu))


def student_t_from_uniforms(u, v, nu):
    """Bailey's polar method: ``sqrt(nu (u^(-2/nu) - 1)) cos(2 pi v)`` is Student-t(nu) for
    independent ``u, v ~ U(0, 1)``; smooth in ``nu`` (reparameterized draws)."""
    return jnp.sqrt(nu * jnp.expm1(-2.0 / nu * jnp.log(u))) * jnp.cos(2.0 * jnp.pi * v)


def uniform_open(key: PRNGKeyArray, shape) -> Array:
    return jax.random.uniform(key, shape, minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)


class MLP(eqx.Module):
    """``x -> W_n gelu(... gelu(W_1 x + b_1) ...) + b_n`` (a plain pytree of arrays: checkpoint-safe)."""

    layers: tuple[eqx.nn.Linear, ...]

    def __init__(self, in_size: int, out_size: int, width: int, depth: int, *, key: PRNGKeyArray):
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        for layer in self.layers[:-1]:
            x = jax.nn.gelu(layer(x))
        return self.layers[-1](x)


class DiagonalSSMBlock(eqx.Module):
    """One S4D block (module docstring): diagonal LTI SSM as a causal convolution, gated, residual."""

    log_neg_a: Float[Array, "d n"]
    log_dt: Float[Array, " d"]
    b: Float[Array, "d n"]
    c: Float[Array, "d n"]
    skip: Float[Array, " d"]
    gate: eqx.nn.Linear
    out: eqx.nn.Linear
    norm: eqx.nn.LayerNorm

    def __init__(self, d_model: int, state_dim: int, *, key: PRNGKeyArray):
        kc, kg, ko, kt = jax.random.split(key, 4)
        # S4D-real initialisation: A_n = -(n + 1/2); log-uniform steps in [1e-2, 1]
        self.log_neg_a = jnp.log(jnp.tile(jnp.arange(state_dim) + 0.5, (d_model, 1)))
        self.log_dt = jax.random.uniform(kt, (d_model,), minval=jnp.log(1e-2), maxval=0.0)
        self.b = jnp.ones((d_model, state_dim))
        self.c = jax.random.normal(kc, (d_model, state_dim)) * jnp.sqrt(0.5 / state_dim)
        self.skip = jnp.ones((d_model,))
        self.gate = eqx.nn.Linear(d_model, d_model, key=kg)
        self.out = eqx.nn.Linear(d_model, d_model, key=ko)
        self.norm = eqx.nn.LayerNorm(d_model)

    def kernel(self, length: int) -> Float[Array, "length d"]:
        """``K_k = sum_n C_n Bbar_n Abar_n^k`` with ``Abar = exp(dt A)``, ``Bbar = (Abar - 1)/A B``."""
        a = -jnp.exp(self.log_neg_a)                                    # (d, n) < 0
        dt = jnp.exp(self.log_dt)[:, None]
        abar_log = dt * a                                               # log Abar < 0
        bbar = jnp.expm1(abar_log) / a * self.b
        k = jnp.arange(length, dtype=a.dtype)[:, None, None]
        return jnp.sum(self.c * bbar * jnp.exp(k * abar_log), axis=-1)

    def __call__(self, x: Float[Array, "seq d"], mask: Float[Array, " seq"]) -> Float[Array, "seq d"]:
        seq = x.shape[0]
        kern = self.kernel(seq)                                         # (seq, d)
        t = jnp.arange(seq)
        lag = t[:, None] - t[None, :]
        toeplitz = jnp.where((lag >= 0)[:, :, None], kern[jnp.clip(lag, 0, seq - 1)], 0.0)   # (t, j, d)
        xm = x * mask[:, None]
        y = jnp.einsum("tjd,jd->td", toeplitz, xm) + self.skip * xm
        g = jax.nn.sigmoid(jax.vmap(self.gate)(x))
        upd = jax.vmap(self.out)(jax.nn.gelu(y) * g)
        return jax.vmap(self.norm)(x + mask[:, None] * upd)


class SSMStudent(eqx.Module):
    """Selective-SSM encoder and latent Student-t SSM over the horizon (module docstring)."""

    lift: eqx.nn.Linear
    blocks: tuple[DiagonalSSMBlock, ...]
    head: MLP
    prior_a_raw: Float[Array, " latent"]
    prior_b: Float[Array, " latent"]
    prior_log_sigma: Float[Array, " latent"]
    w_mu: Float[Array, " latent"]
    c_mu: Float[Array, ""]
    w_tau: Float[Array, " latent"]
    c_tau: Float[Array, ""]
    nu_raw: Float[Array, ""]
    posterior: MLP
    latent_dim: int = eqx.field(static=True)
    horizon_max: int = eqx.field(static=True)
    nu_min: float = eqx.field(static=True)

    def __init__(self, context_dim: int, horizon_max: int, *, d_model: int, state_dim: int,
                 n_blocks: int, latent_dim: int, hidden: int, nu_min: float, key: PRNGKeyArray):
        for name, v in (("d_model", d_model), ("state_dim", state_dim), ("n_blocks", n_blocks),
                        ("latent_dim", latent_dim), ("hidden", hidden), ("horizon_max", horizon_max)):
            if int(v) < 1:
                raise InvalidParameterError(f"trend.student.{name}", v, "an integer >= 1")
        if not nu_min > 2.0:
            raise InvalidParameterError("trend.student.nu_min", nu_min, "> 2 (finite variance)")
        keys = jax.random.split(key, n_blocks + 5)
        self.lift = eqx.nn.Linear(3, d_model, key=keys[0])
        self.blocks = tuple(DiagonalSSMBlock(d_model, state_dim, key=k) for k in keys[1:n_blocks + 1])
        self.head = MLP(d_model + context_dim, latent_dim, hidden, 2, key=keys[n_blocks + 1])
        self.prior_a_raw = jnp.full((latent_dim,), 2.0)           # a = sigmoid(2) ~ 0.88
        self.prior_b = jnp.zeros((latent_dim,))
        self.prior_log_sigma = jnp.full((latent_dim,), jnp.log(0.3))
        self.w_mu = 0.01 * jax.random.normal(keys[n_blocks + 2], (latent_dim,))
        self.c_mu = jnp.asarray(0.0)
        self.w_tau = 0.1 * jax.random.normal(keys[n_blocks + 3], (latent_dim,))
        self.c_tau = jnp.asarray(-0.2)
        self.nu_raw = jnp.asarray(1.0)
        self.posterior = MLP(latent_dim + 2 * horizon_max, 2 * latent_dim * horizon_max, hidden, 2,
                             key=keys[n_blocks + 4])
        self.latent_dim = int(latent_dim)
        self.horizon_max = int(horizon_max)
        self.nu_min = float(nu_min)

    # -- pieces of the model ---------------------------------------------------------------------
    @property
    def nu(self) -> Float[Array, ""]:
        return self.nu_min + jax.nn.softplus(self.nu_raw)

    @property
    def prior_a(self) -> Float[Array, " latent"]:
        return jax.nn.sigmoid(self.prior_a_raw)

    def emission(self, s: Float[Array, "... latent"]):
        """``(mu, log tau)`` of the Student-t emission for latent states ``s``."""
        return s @ self.w_mu + self.c_mu, s @ self.w_tau + self.c_tau

    def encode(self, returns: Float[Array, " seq"], mask: Float[Array, " seq"],
               context: Float[Array, " ctx"]) -> Float[Array, " latent"]:
        """The trend latent ``s_0``."""
        u = jnp.stack([returns * mask, jnp.abs(returns) * mask, mask], axis=-1)
        x = jax.vmap(self.lift)(u)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(jnp.concatenate([x[-1], context]))

    def mean_path(self, s0: Float[Array, " latent"], horizon: int):
        """Deterministic forecast: ``E[s_k]`` by the prior recursion, and ``(mu_k, log tau_k)`` at it."""
        a, b = self.prior_a, self.prior_b

        def step(s, _):
            s = a * s + b
            return s, s

        _, s = jax.lax.scan(step, s0, None, length=horizon)
        mu, log_tau = self.emission(s)
        return mu, log_tau

    # -- ELBO ------------------------------------------------------------------------------------
    def posterior_params(self, s0, y, y_mask):
        out = self.posterior(jnp.concatenate([s0, y * y_mask, y_mask]))
        h, d = self.horizon_max, self.latent_dim
        m = out[: h * d].reshape(h, d)
        log_v = jnp.clip(out[h * d:].reshape(h, d) - 2.0, -12.0, 4.0)
        return m, log_v

    def elbo(self, s0: Float[Array, " latent"], y: Float[Array, " horizon"],
             y_mask: Float[Array, " horizon"], eps: Float[Array, "samples horizon latent"]) -> Float[Array, ""]:
        """Evidence lower bound of the future normalized returns ``y`` (``horizon_max`` steps);
        ``eps ~ N(0, I)`` are the reparameterization draws of ``s ~ q``."""
        m, log_v = self.posterior_params(s0, y, y_mask)
        v = jnp.exp(log_v)
        a, b = self.prior_a, self.prior_b
        sig2 = jnp.exp(2.0 * self.prior_log_sigma)
        m_prev = jnp.concatenate([s0[None], m[:-1]])
        v_prev = jnp.concatenate([jnp.zeros_like(s0)[None], v[:-1]])
        kl = 0.5 * jnp.sum(jnp.log(sig2) - log_v
                           + (v + (m - a * m_prev - b) ** 2 + a**2 * v_prev) / sig2 - 1.0)
        s = m + jnp.sqrt(v) * eps                                    # (samples, h, d)
        mu, log_tau = self.emission(s)
        ll = student_t_logpdf(y, mu, jnp.exp(log_tau), self.nu)      # (samples, h)
        return jnp.sum(jnp.mean(ll, axis=0) * y_mask) - kl

    # -- generative sampling (distillation) ------------------------------------------------------
    def sample_with_noise(self, s0: Float[Array, " latent"], eps: Float[Array, "num horizon latent"],
                          u: Float[Array, "num horizon"], v: Float[Array, "num horizon"]):
        """Prior draws from given noise: normalized returns ``(num, horizon)`` and ``log tau``."""
        a, b, sig = self.prior_a, self.prior_b, jnp.exp(self.prior_log_sigma)

        def step(s, e):
            s = a * s + b + sig * e
            return s, s

        _, s = jax.lax.scan(step, jnp.broadcast_to(s0, eps.shape[::2]), jnp.swapaxes(eps, 0, 1))
        s = jnp.swapaxes(s, 0, 1)                                    # (num, horizon, latent)
        mu, log_tau = self.emission(s)
        return mu + jnp.exp(log_tau) * student_t_from_uniforms(u, v, self.nu), log_tau

    def sample(self, s0: Float[Array, " latent"], key: PRNGKeyArray, horizon: int, num: int):
        """``num`` prior draws of ``horizon`` steps (:meth:`sample_with_noise` with fresh noise)."""
        ke, ku, kv = jax.random.split(key, 3)
        eps = jax.random.normal(ke, (num, horizon, self.latent_dim))
        return self.sample_with_noise(s0, eps, uniform_open(ku, (num, horizon)), uniform_open(kv, (num, horizon)))

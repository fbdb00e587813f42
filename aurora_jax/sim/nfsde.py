"""Regime-dependent neural fractional SDE with jumps (equinox modules + a diffrax solve).

State ``X = (x, p)``: ``x`` in R^d are latent log-variance factors, ``p`` is the log price.

    dx = (A(z) x + b(z) + u_theta(x, t, z)) dt + diag(nu) dW^H + ell dB + J_x(z) dL~
    dp = (mu(z) - sigma(x)^2 / 2) dt + sigma(x) dB + J_p(x) dL~

i.e. ``dX = f(X,t,z) dt + g(X,t,z) d(W^H, B) + h(X,z) dL~`` with

- ``A(z) = -(P P^T + delta I) + (S - S^T)`` (:class:`StableMatrix`): its symmetric part is
  ``<= -delta I``, so every eigenvalue has real part ``<= -delta < 0`` for every ``z``;
- ``u_theta = u_max tanh(MLP(x, sin 2 pi t, cos 2 pi t, z))``, a bounded perturbation;
- ``g`` (:class:`Diffusion`): ``nu = nu_max sigmoid(.)``, leverage loadings
  ``ell = ell_max tanh(.)``, ``sigma(x) = sigma_max tanh(exp((c + 1^T x)/2) / sigma_max)``,
  hence ``||g||_2 <= ||g||_F <= sqrt(d nu_max^2 + d ell_max^2 + sigma_max^2)``;
- jumps ``h = J(x, z) u`` (:class:`JumpLoading`): the compensated jump control
  ``L~_t = sum_{jumps <= t} u_i - int lambda_s E[u] ds`` (Poisson or Hawkes times, heavy-tailed
  marks ``u`` in log-return units) loads on the price with ``J_p(x) = exp(gamma tanh((1^T x)/2))``
  (larger jumps in high variance, ``0 <= gamma <= gamma_max``) and on the latent factors with
  ``J_x(z) = j_max tanh(.)``.

``W^H`` is fractional (d independent components, pre-sampled fGn, see
:mod:`aurora_jax.sim.fgn`) and enters through :class:`~aurora_jax.sim.fbm_path.IncrementPath`;
``B`` is a standard Brownian motion and uses diffrax's own Brownian path. When ``H = 1/2``
the latent driver is Brownian too and :func:`euler_solve` is given a diffrax Brownian path
for it. Jumps are a third control: with steps on the jump grid, Euler adds the step's jumps
``J(X_{t_k}) dL~_k`` between steps.

:func:`euler_solve` is the one solve used everywhere (Euler–Maruyama through diffrax,
``StepTo`` on the grid, so the pre-sampled increments are read exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def euler_solve(
    drift: Callable,
    controls: Sequence[tuple[Callable, diffrax.AbstractPath]],
    y0: Float[Array, " state"],
    t0,
    dt,
    n_steps: int,
    args=None,
    save_every: int = 1,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Float[Array, "saves state"]:
    """Euler–Maruyama solve of ``dy = drift(t,y,args) dt + sum_i vf_i(t,y,args) dX_i``.

    Steps exactly on ``t0 + k dt`` (``k = 0..n_steps``); returns ``y`` at every
    ``save_every``-th grid point including ``t0`` (``n_steps // save_every + 1`` rows).
    ``adjoint``: diffrax's default (reverse-mode, checkpointed) unless given; pass
    ``diffrax.ForwardMode()`` for forward-only simulation with ``UnsafeBrownianPath``.
    """
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(drift), *[diffrax.ControlTerm(vf, path) for vf, path in controls]
    )
    dt = jnp.asarray(dt, jnp.float32)
    t0 = jnp.asarray(t0, jnp.float32)
    grid = t0 + dt * jnp.arange(n_steps + 1, dtype=jnp.float32)
    saves = grid[::save_every]
    sol = diffrax.diffeqsolve(
        terms,
        diffrax.Euler(),
        t0=grid[0],
        t1=grid[-1],
        dt0=None,
        y0=y0,
        args=args,
        saveat=diffrax.SaveAt(ts=saves),
        stepsize_controller=diffrax.StepTo(ts=grid),
        max_steps=n_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
    )
    return sol.ys


class StableMatrix(eqx.Module):
    """``A(z) = -(P(z) P(z)^T + delta I) + (S(z) - S(z)^T)`` with ``P, S`` linear in ``z``.

    For any eigenpair ``A v = lam v``: ``Re lam = v^* sym(A) v / |v|^2 <= -delta``.
    """

    p_w: Float[Array, "d d zdim"]
    p_b: Float[Array, "d d"]
    s_w: Float[Array, "d d zdim"]
    s_b: Float[Array, "d d"]
    delta: float = eqx.field(static=True)

    def __init__(self, d: int, zdim: int, delta: float, key: PRNGKeyArray, init_scale=0.1):
        k1, k2 = jax.random.split(key)
        self.p_w = init_scale * jax.random.normal(k1, (d, d, zdim))
        self.p_b = 0.5 * jnp.eye(d)
        self.s_w = init_scale * jax.random.normal(k2, (d, d, zdim))
        self.s_b = jnp.zeros((d, d))
        self.delta = float(delta)

    def __call__(self, z: Float[Array, " zdim"]) -> Float[Array, "d d"]:
        p = self.p_b + self.p_w @ z
        s = self.s_b + self.s_w @ z
        d = p.shape[0]
        return -(p @ p.T + self.delta * jnp.eye(d)) + (s - s.T)


class LatentDrift(eqx.Module):
    """``A(z) x + b(z) + u_max tanh(MLP(x, sin 2 pi t, cos 2 pi t, z))``."""

    a: StableMatrix
    b_w: Float[Array, "d zdim"]
    b_b: Float[Array, " d"]
    mlp: eqx.nn.MLP
    u_max: float = eqx.field(static=True)

    def __init__(self, d, zdim, delta, width, depth, u_max, key):
        k1, k2 = jax.random.split(key)
        self.a = StableMatrix(d, zdim, delta, k1)
        self.b_w = jnp.zeros((d, zdim))
        self.b_b = jnp.zeros((d,))
        self.mlp = eqx.nn.MLP(d + 2 + zdim, d, width, depth, activation=jax.nn.softplus, key=k2)
        self.u_max = float(u_max)

    def mean_reversion(self, z) -> Float[Array, " d"]:
        """``b(z)``."""
        return self.b_b + self.b_w @ z

    def neural(self, t, x, z) -> Float[Array, " d"]:
        feats = jnp.concatenate(
            [x, jnp.stack([jnp.sin(2 * jnp.pi * t), jnp.cos(2 * jnp.pi * t)]), z]
        )
        return self.u_max * jnp.tanh(self.mlp(feats))

    def __call__(self, t, x, z) -> Float[Array, " d"]:
        return self.a(z) @ x + self.mean_reversion(z) + self.neural(t, x, z)


class Diffusion(eqx.Module):
    """``g``: ``(d+1, d+1)`` loading of ``(dW^H_1..dW^H_d, dB)`` (module docstring)."""

    nu_raw: Float[Array, " d"]
    lev_raw: Float[Array, " d"]
    c: Float[Array, ""]
    nu_max: float = eqx.field(static=True)
    lev_max: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)

    def __init__(self, d, nu_max, lev_max, sigma_max, c0=-7.5):
        self.nu_raw = jnp.zeros((d,))
        self.lev_raw = jnp.zeros((d,))
        self.c = jnp.asarray(c0, jnp.float32)
        self.nu_max, self.lev_max, self.sigma_max = float(nu_max), float(lev_max), float(sigma_max)

    @property
    def nu(self):
        return self.nu_max * jax.nn.sigmoid(self.nu_raw)

    @property
    def leverage(self):
        return self.lev_max * jnp.tanh(self.lev_raw)

    def log_variance(self, x):
        return self.c + jnp.sum(x)

    def sigma(self, x) -> Float[Array, ""]:
        s = jnp.exp(0.5 * self.log_variance(x))
        return self.sigma_max * jnp.tanh(s / self.sigma_max)

    def spectral_bound(self) -> float:
        d = self.nu_raw.shape[0]
        return float((d * self.nu_max**2 + d * self.lev_max**2 + self.sigma_max**2) ** 0.5)

    def __call__(self, t, x) -> Float[Array, "s s"]:
        d = x.shape[0]
        g = jnp.zeros((d + 1, d + 1))
        g = g.at[:d, :d].set(jnp.diag(self.nu))
        g = g.at[:d, d].set(self.leverage)
        return g.at[d, d].set(self.sigma(x))


class JumpLoading(eqx.Module):
    """``J(x, z)``: ``(d+1,)`` loading of a scalar mark ``u`` (module docstring)."""

    lat_w: Float[Array, "d zdim"]
    lat_b: Float[Array, " d"]
    gamma_raw: Float[Array, ""]
    j_max: float = eqx.field(static=True)
    gamma_max: float = eqx.field(static=True)

    def __init__(self, d, zdim, j_max, gamma_max):
        self.lat_w = jnp.zeros((d, zdim))
        self.lat_b = jnp.zeros((d,))
        self.gamma_raw = jnp.asarray(0.0)
        self.j_max, self.gamma_max = float(j_max), float(gamma_max)

    @property
    def gamma(self):
        return self.gamma_max * jax.nn.sigmoid(self.gamma_raw)

    def __call__(self, x, z) -> Float[Array, " s"]:
        lat = self.j_max * jnp.tanh(self.lat_b + self.lat_w @ z)
        price = jnp.exp(self.gamma * jnp.tanh(0.5 * jnp.sum(x)))
        return jnp.concatenate([lat, price[None]])


class NFSDE(eqx.Module):
    """The regime-dependent rough-Lévy NFSDE (module docstring); state ``(x_1..x_d, p)``."""

    drift: LatentDrift
    diffusion: Diffusion
    jump: JumpLoading
    mu_w: Float[Array, " zdim"]
    mu_b: Float[Array, ""]
    d: int = eqx.field(static=True)

    def __init__(
        self,
        d,
        zdim,
        *,
        delta,
        width,
        depth,
        u_max,
        nu_max,
        lev_max,
        sigma_max,
        j_max,
        gamma_max,
        key,
    ):
        self.drift = LatentDrift(d, zdim, delta, width, depth, u_max, key)
        self.diffusion = Diffusion(d, nu_max, lev_max, sigma_max)
        self.jump = JumpLoading(d, zdim, j_max, gamma_max)
        self.mu_w = jnp.zeros((zdim,))
        self.mu_b = jnp.asarray(0.0)
        self.d = int(d)

    def mu(self, z):
        return self.mu_b + self.mu_w @ z

    def f(self, t, y, z) -> Float[Array, " s"]:
        x = y[: self.d]
        s = self.diffusion.sigma(x)
        return jnp.concatenate([self.drift(t, x, z), (self.mu(z) - 0.5 * s**2)[None]])

    def g(self, t, y, z) -> Float[Array, "s s"]:
        return self.diffusion(t, y[: self.d])

    def h(self, t, y, z) -> Float[Array, "s 1"]:
        return self.jump(y[: self.d], z)[:, None]

    def solve(
        self,
        y0: Float[Array, " s"],
        z: Float[Array, " zdim"],
        dt,
        n_steps: int,
        latent_driver: diffrax.AbstractPath,
        price_driver: diffrax.AbstractPath,
        jump_driver: diffrax.AbstractPath,
        save_every: int = 1,
        adjoint: diffrax.AbstractAdjoint | None = None,
    ) -> Float[Array, "saves s"]:
        """One path. ``latent_driver``: ``(d,)`` fBM (``IncrementPath``) or a diffrax Brownian
        path when ``H = 1/2``; ``price_driver``: ``(1,)`` diffrax Brownian path;
        ``jump_driver``: ``(1,)`` compensated jump path. ``adjoint`` as in :func:`euler_solve`
        (``ForwardMode`` for ``UnsafeBrownianPath``; the default for gradients with a
        ``VirtualBrownianTree``)."""
        d = self.d
        controls = [
            (lambda t, y, a: self.g(t, y, a)[:, :d], latent_driver),
            (lambda t, y, a: self.g(t, y, a)[:, d:], price_driver),
            (self.h, jump_driver),
        ]
        return euler_solve(self.f, controls, y0, 0.0, dt, n_steps, z, save_every, adjoint)

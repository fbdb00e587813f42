"""Compound Poisson jumps with heavy-tailed marks, on a time grid.

On a grid of step ``dt`` the number of jumps in a step is ``N_k ~ Poisson(lambda dt)`` and
the jump sum is ``U_k = sum_{i < N_k} u_i`` with iid marks ``u_i``. The compensated sum
``U_k - lambda dt E[u]`` is the increment of the compensated random measure
``int u N~(dt, du)`` over the step; it is what the NFSDE's jump control sees.

Marks:

- :class:`DoubleExponentialMarks` (Kou): ``u = +Exp(mean_up)`` with probability ``p_up``,
  ``-Exp(mean_down)`` otherwise. ``E u = p m_+ - (1-p) m_-``,
  ``E u^2 = 2 p m_+^2 + 2 (1-p) m_-^2``. Sampled by inverting the mixture CDF (one uniform).
- :class:`StudentTMarks`: ``u = scale * t_df``, sampled exactly by Bailey's trigonometric
  method ``t = sqrt(df (U1^{-2/df} - 1)) cos(2 pi U2)``. ``E u = 0`` (df > 1),
  ``E u^2 = scale^2 df/(df-2)`` (df > 2).

Per step at most ``cap`` jumps are represented (``sim.jumps.max_per_step``): counts come from
the Poisson inverse CDF truncated at ``cap``, so the law is exact except on the event
``N_k > cap``. :func:`max_rate_for_cap` gives the largest rate whose truncated mass
``P(Poisson(rate dt) > cap)`` is at most ``tail_tol``; samplers check their rate against it
at construction and clip rates (e.g. a Hawkes intensity) to it inside the simulation.

Intensity and mark parameters may depend on the regime vector ``z``:
:class:`RegimeCompoundPoisson` maps ``z`` to a :class:`CompoundPoisson` through linear maps
and positivity links (softplus / sigmoid), so any ``z`` gives valid parameters.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from scipy import optimize, stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim._checks import (
    check_closed_interval,
    check_finite,
    check_nonnegative,
    check_open_interval,
    check_positive,
    check_positive_int,
)

# --------------------------------------------------------------------------- truncation


def poisson_tail(rate_dt: float, cap: int) -> float:
    """``P(Poisson(rate_dt) > cap)``."""
    return float(stats.poisson.sf(cap, rate_dt))


def max_rate_for_cap(cap: int, dt: float, tail_tol: float) -> float:
    """Largest rate ``r`` with ``P(Poisson(r dt) > cap) <= tail_tol``."""
    check_positive_int("cap", cap)
    check_positive("dt", dt)
    check_open_interval("tail_tol", tail_tol, 0.0, 1.0)
    f = lambda lam: poisson_tail(lam, cap) - tail_tol
    hi = 1.0
    while f(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(f, 1e-12, hi, xtol=1e-12)) / dt


def check_rate_within_cap(field: str, rate, dt: float, cap: int, tail_tol: float) -> None:
    """Raise if ``rate`` (concrete) needs more than ``cap`` jumps per step too often."""
    arr = np.asarray(rate, dtype=np.float64) if not isinstance(rate, jax.core.Tracer) else None
    if arr is None:
        return
    r_max = max_rate_for_cap(cap, dt, tail_tol)
    if np.any(arr > r_max):
        raise InvalidParameterError(
            field,
            float(arr.max()),
            f"<= {r_max:.6g} per unit time for dt={dt} (so that P(N_step > {cap}) <= {tail_tol})",
            reason="raise sim.jumps.max_per_step or shorten the step",
        )


def poisson_counts(key: PRNGKeyArray, rate_dt: Array, cap: int, shape) -> Int[Array, ...]:
    """Poisson(``rate_dt``) counts by inverse CDF on ``{0..cap}`` (mass above ``cap`` -> cap)."""
    u = jax.random.uniform(key, shape, jnp.float32)
    lam = jnp.broadcast_to(jnp.asarray(rate_dt, jnp.float32), shape)
    term = jnp.exp(-lam)
    cdf = term
    n = jnp.zeros(shape, jnp.int32)
    for j in range(cap):
        n = n + (u > cdf).astype(jnp.int32)
        term = term * lam / (j + 1)
        cdf = cdf + term
    return n


# --------------------------------------------------------------------------- marks


class DoubleExponentialMarks(eqx.Module):
    """Kou marks: ``+Exp(mean_up)`` w.p. ``p_up``, else ``-Exp(mean_down)`` (log-return units)."""

    p_up: Float[Array, ...]
    mean_up: Float[Array, ...]
    mean_down: Float[Array, ...]

    def __check_init__(self):
        check_closed_interval("p_up", self.p_up, 0.0, 1.0)
        check_positive("mean_up", self.mean_up)
        check_positive("mean_down", self.mean_down)

    def mean(self):
        return self.p_up * self.mean_up - (1 - self.p_up) * self.mean_down

    def second_moment(self):
        return 2 * self.p_up * self.mean_up**2 + 2 * (1 - self.p_up) * self.mean_down**2

    def sample(self, key: PRNGKeyArray, shape) -> Float[Array, ...]:
        u = jax.random.uniform(key, shape, jnp.float32, minval=1e-12, maxval=1.0)
        p = self.p_up
        up = -jnp.log(jnp.clip(u / p, 1e-12, 1.0)) * self.mean_up
        down = -jnp.log(jnp.clip((u - p) / (1 - p), 1e-12, 1.0)) * self.mean_down
        return jnp.where(u < p, up, -down)


class StudentTMarks(eqx.Module):
    """``scale * t_df`` marks (symmetric, heavy-tailed with tail index ``df``)."""

    df: Float[Array, ...]
    scale: Float[Array, ...]

    def __check_init__(self):
        check_finite("df", self.df)
        check_open_interval("df", self.df, 1.0, math.inf)
        check_positive("scale", self.scale)

    def mean(self):
        return jnp.zeros_like(jnp.asarray(self.scale))

    def second_moment(self):
        return jnp.where(self.df > 2, self.scale**2 * self.df / (self.df - 2), jnp.inf)

    def sample(self, key: PRNGKeyArray, shape) -> Float[Array, ...]:
        k1, k2 = jax.random.split(key)
        u1 = jax.random.uniform(k1, shape, jnp.float32, minval=1e-12, maxval=1.0)
        u2 = jax.random.uniform(k2, shape, jnp.float32)
        t = jnp.sqrt(self.df * (u1 ** (-2.0 / self.df) - 1.0)) * jnp.cos(2 * jnp.pi * u2)
        return self.scale * t


Marks = DoubleExponentialMarks | StudentTMarks


def mark_sums(
    key: PRNGKeyArray, marks: Marks, counts: Int[Array, ...], cap: int
) -> Float[Array, ...]:
    """``sum_{i < counts} u_i`` with iid marks, ``cap`` slots per entry."""
    slots = marks.sample(key, (cap,) + counts.shape)
    idx = jnp.arange(cap).reshape((cap,) + (1,) * counts.ndim)
    return jnp.sum(jnp.where(idx < counts[None], slots, 0.0), axis=0)


# --------------------------------------------------------------------------- processes


class JumpIncrements(eqx.Module):
    """Per-step jump counts, jump sums and compensated jump sums, each ``(paths, steps)``."""

    counts: Int[Array, "paths steps"]
    sums: Float[Array, "paths steps"]
    compensated: Float[Array, "paths steps"]


class CompoundPoisson(eqx.Module):
    """Compound Poisson process with rate ``intensity`` (per unit time) and ``marks``.

    ``intensity`` may be a scalar or an array broadcastable to ``(paths, 1)``.
    """

    intensity: Float[Array, ...]
    marks: Marks
    cap: int = eqx.field(static=True, default=4)
    tail_tol: float = eqx.field(static=True, default=1e-6)

    def __check_init__(self):
        check_nonnegative("intensity", self.intensity)
        check_positive_int("cap", self.cap)
        check_open_interval("tail_tol", self.tail_tol, 0.0, 1.0)

    def sample(self, key: PRNGKeyArray, n_paths: int, n_steps: int, dt: float) -> JumpIncrements:
        check_positive_int("n_paths", n_paths)
        check_positive_int("n_steps", n_steps)
        check_positive("dt", dt)
        check_rate_within_cap("intensity", self.intensity, dt, self.cap, self.tail_tol)
        return _sample_cp(self, key, n_paths, n_steps, dt)


@eqx.filter_jit
def _sample_cp(cp: CompoundPoisson, key, n_paths: int, n_steps: int, dt) -> JumpIncrements:
    kc, km = jax.random.split(key)
    shape = (n_paths, n_steps)
    rate = jnp.broadcast_to(jnp.asarray(cp.intensity, jnp.float32).reshape(-1, 1), (n_paths, 1))
    counts = poisson_counts(kc, rate * dt, cp.cap, shape)
    sums = mark_sums(km, cp.marks, counts, cp.cap)
    comp = sums - rate * dt * cp.marks.mean()
    return JumpIncrements(counts, sums, comp)


class RegimeCompoundPoisson(eqx.Module):
    """``z -> CompoundPoisson``: ``intensity = softplus(w z + b)``, double-exponential marks
    with ``p_up = sigmoid(.)`` and mean sizes ``softplus(.)``, each linear in ``z``."""

    w: Float[Array, "4 zdim"]
    b: Float[Array, " 4"]
    cap: int = eqx.field(static=True, default=4)
    tail_tol: float = eqx.field(static=True, default=1e-6)

    def __call__(self, z: Float[Array, " zdim"]) -> CompoundPoisson:
        a = self.w @ z + self.b
        marks = DoubleExponentialMarks(
            jax.nn.sigmoid(a[1]), jax.nn.softplus(a[2]) + 1e-6, jax.nn.softplus(a[3]) + 1e-6
        )
        return CompoundPoisson(jax.nn.softplus(a[0]), marks, self.cap, self.tail_tol)

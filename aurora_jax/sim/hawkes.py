"""Self-exciting (Hawkes) jump times with an exponential kernel, on a time grid.

Continuous time: ``lambda(t) = mu + sum_{t_i < t} alpha exp(-beta (t - t_i))`` with branching
ratio ``n = alpha / beta`` (expected direct offspring of one event); stationary iff ``n < 1``,
then ``E lambda = mu / (1 - n)``.

Grid scheme (step ``dt``), exact in distribution for the discrete-time process below and
converging to the continuous process as ``beta dt -> 0``:

    lambda_k = mu + E_k,   N_k ~ Poisson(lambda_k dt),
    E_{k+1}  = b E_k + a N_k,   b = exp(-beta dt),   a = n (1 - b) / dt,

so one event adds ``a`` to the intensity, decaying like the kernel, with total expected
offspring ``sum_j a b^j dt = n`` exactly. With ``L_k = lambda_k dt`` this is a Poisson
INGARCH(1,1), ``L_{k+1} = omega + alpha1 N_k + b L_k`` (``omega = mu dt (1-b)``,
``alpha1 = n (1-b)``), whose moments are closed-form (Ferland, Latour & Oraichi 2006):

    E N = mu dt / (1 - n)
    Var N = E N (1 - (alpha1+b)^2 + alpha1^2) / (1 - (alpha1+b)^2)
    corr(N_k, N_{k+h}) = alpha1 (1 - b (alpha1+b)) / (1 - (alpha1+b)^2 + alpha1^2) (alpha1+b)^{h-1}.

The continuous-time count over a window ``T`` has (Hawkes 1971), with ``kappa = beta (1-n)``,
``Lbar = mu/(1-n)`` and ``C = alpha (2 beta - alpha) / (2 kappa)``,

    Var N(T) = Lbar T + 2 Lbar C (T/kappa - (1 - exp(-kappa T))/kappa^2).

The branching ratio is kept below 1 by construction in :meth:`HawkesParams.from_unconstrained`
(``n = n_max sigmoid(r)``, ``n_max < 1``); :class:`HawkesParams` rejects ``n >= 1`` at
construction. Intensities are clipped at the rate for which ``P(N_k > cap)`` stays below
``tail_tol`` (see :mod:`aurora_jax.sim.jumps`); the moments above hold while the clip is inactive.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim._checks import (
    check_closed_interval,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from aurora_jax.sim.jumps import (
    JumpIncrements,
    Marks,
    check_rate_within_cap,
    mark_sums,
    max_rate_for_cap,
    poisson_counts,
)


class HawkesParams(eqx.Module):
    """Baseline ``mu >= 0``, branching ratio ``0 <= n < 1``, decay ``beta > 0`` (per unit time)."""

    baseline: Float[Array, ...]
    branching: Float[Array, ...]
    decay: Float[Array, ...]

    def __check_init__(self):
        check_nonnegative("baseline", self.baseline)
        check_closed_interval("branching", self.branching, 0.0, 1.0)
        if not isinstance(self.branching, jax.core.Tracer) and np.any(
            np.asarray(self.branching) >= 1.0
        ):
            raise InvalidParameterError(
                "branching",
                np.asarray(self.branching).tolist(),
                "0 <= branching < 1",
                reason="a branching ratio >= 1 makes the Hawkes process explosive",
            )
        check_positive("decay", self.decay)

    @staticmethod
    def from_unconstrained(raw_mu, raw_n, raw_beta, branching_max: float) -> HawkesParams:
        """``mu = softplus``, ``n = branching_max * sigmoid``, ``beta = softplus``: always valid."""
        if not (0.0 < branching_max < 1.0):
            raise InvalidParameterError("branching_max", branching_max, "0 < branching_max < 1")
        return HawkesParams(
            jax.nn.softplus(raw_mu),
            branching_max * jax.nn.sigmoid(raw_n),
            jax.nn.softplus(raw_beta) + 1e-6,
        )

    def stationary_rate(self):
        return self.baseline / (1.0 - self.branching)


def hawkes_counts(
    key: PRNGKeyArray,
    params: HawkesParams,
    n_paths: int,
    n_steps: int,
    dt,
    cap: int,
    rate_max,
    excitation0=None,
) -> tuple[Int[Array, "paths steps"], Float[Array, "paths steps"]]:
    """Counts ``N_k`` and intensities ``lambda_k`` of the grid scheme (module docstring).

    Parameters broadcast against ``(paths,)``. ``excitation0`` is ``E_0``; by default the
    stationary mean ``mu n / (1 - n)``.
    """
    mu = jnp.broadcast_to(jnp.asarray(params.baseline, jnp.float32), (n_paths,))
    n = jnp.broadcast_to(jnp.asarray(params.branching, jnp.float32), (n_paths,))
    beta = jnp.broadcast_to(jnp.asarray(params.decay, jnp.float32), (n_paths,))
    b = jnp.exp(-beta * dt)
    a = n * (1.0 - b) / dt
    e0 = mu * n / (1.0 - n) if excitation0 is None else jnp.broadcast_to(excitation0, (n_paths,))

    def step(e, k):
        lam = jnp.minimum(mu + e, rate_max)
        cnt = poisson_counts(k, lam * dt, cap, (n_paths,))
        return b * e + a * cnt, (cnt, lam)

    keys = jax.random.split(key, n_steps)
    _, (counts, lams) = jax.lax.scan(step, e0, keys)
    return counts.T, lams.T


class Hawkes(eqx.Module):
    """Hawkes jump process with ``marks``; :meth:`sample` gives per-step jump increments."""

    params: HawkesParams
    marks: Marks
    cap: int = eqx.field(static=True, default=4)
    tail_tol: float = eqx.field(static=True, default=1e-6)

    def sample(self, key: PRNGKeyArray, n_paths: int, n_steps: int, dt: float) -> JumpIncrements:
        check_positive_int("n_paths", n_paths)
        check_positive_int("n_steps", n_steps)
        check_positive("dt", dt)
        check_rate_within_cap(
            "stationary_rate", self.params.stationary_rate(), dt, self.cap, self.tail_tol
        )
        rate_max = max_rate_for_cap(self.cap, dt, self.tail_tol)
        return _sample_hawkes(self, key, n_paths, n_steps, dt, rate_max)


@eqx.filter_jit
def _sample_hawkes(hk: Hawkes, key, n_paths: int, n_steps: int, dt, rate_max) -> JumpIncrements:
    kc, km = jax.random.split(key)
    counts, lams = hawkes_counts(kc, hk.params, n_paths, n_steps, dt, hk.cap, rate_max)
    sums = mark_sums(km, hk.marks, counts, hk.cap)
    return JumpIncrements(counts, sums, sums - lams * dt * hk.marks.mean())


def ingarch_moments(params: HawkesParams, dt: float, max_lag: int = 5) -> dict[str, np.ndarray]:
    """Closed-form stationary mean, variance and ACF (lags 1..max_lag) of the grid counts."""
    mu, n, beta = (float(np.asarray(v)) for v in (params.baseline, params.branching, params.decay))
    b = np.exp(-beta * dt)
    a1 = n * (1 - b)
    s = a1 + b
    mean = mu * dt / (1 - n)
    var = mean * (1 - s**2 + a1**2) / (1 - s**2)
    rho1 = a1 * (1 - b * s) / (1 - s**2 + a1**2)
    acf = rho1 * s ** np.arange(max_lag)
    return {"mean": np.asarray(mean), "var": np.asarray(var), "acf": acf}


def window_count_variance(params: HawkesParams, window: float) -> float:
    """Continuous-time ``Var N(window)`` of the stationary Hawkes process (module docstring)."""
    mu, n, beta = (float(np.asarray(v)) for v in (params.baseline, params.branching, params.decay))
    alpha = n * beta
    kappa = beta - alpha
    lbar = mu / (1 - n)
    c = alpha * (2 * beta - alpha) / (2 * kappa)
    t = window
    return float(lbar * t + 2 * lbar * c * (t / kappa - (1 - np.exp(-kappa * t)) / kappa**2))

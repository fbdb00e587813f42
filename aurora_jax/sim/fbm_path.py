"""A diffrax path over pre-sampled increments (the fractional Brownian driver, or any control).

Given increments ``dW_k`` on the uniform grid ``t_k = t0 + k dt`` (``k = 0 .. n-1``), the
path is the piecewise-linear interpolation of the partial sums

    W(t) = sum_{j < i} dW_j + (t - t_i)/dt * dW_i,   i = floor((t - t0)/dt),

so ``W(t_{k+1}) - W(t_k) = dW_k`` exactly. Used as the control of a
``diffrax.ControlTerm``, a solver stepping on the same grid sees exactly the pre-sampled
increments: fGn from :mod:`aurora_jax.sim.fgn` gives the fBM driver ``dW^H``, compensated
jump sums from :mod:`aurora_jax.sim.jumps` give the jump control. Because the path is
continuous, a solver step that lands a float round-off away from a grid point still reads
the right increment.
"""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
from jaxtyping import Array, Float

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim._checks import check_positive


class IncrementPath(diffrax.AbstractPath):
    """Piecewise-linear path through the partial sums of ``increments`` (``(steps, dim)``)."""

    start: Float[Array, ""]
    dt: Float[Array, ""]
    increments: Float[Array, "steps dim"]
    values: Float[Array, "steps_plus_1 dim"]

    def __init__(self, t0, dt, increments: Float[Array, "steps dim"]):
        check_positive("dt", dt)
        inc = jnp.asarray(increments)
        if inc.ndim != 2:
            raise InvalidParameterError(
                "increments", f"shape {inc.shape}", "a 2-D array (steps, dim)"
            )
        self.start = jnp.asarray(t0, inc.dtype)
        self.dt = jnp.asarray(dt, inc.dtype)
        self.increments = inc
        self.values = jnp.concatenate(
            [jnp.zeros((1, inc.shape[1]), inc.dtype), jnp.cumsum(inc, axis=0)], axis=0
        )

    @property
    def t0(self):
        return self.start

    @property
    def t1(self):
        return self.start + self.dt * self.increments.shape[0]

    def _at(self, t) -> Float[Array, " dim"]:
        n = self.increments.shape[0]
        s = (t - self.start) / self.dt
        i = jnp.clip(jnp.floor(s), 0, n - 1).astype(jnp.int32)
        frac = jnp.clip(s - i, 0.0, 1.0)
        return self.values[i] + frac * self.increments[i]

    def evaluate(self, t0, t1=None, left: bool = True) -> Float[Array, " dim"]:
        del left
        if t1 is None:
            return self._at(t0)
        return self._at(t1) - self._at(t0)

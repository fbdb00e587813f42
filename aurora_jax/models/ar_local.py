"""Local AR(p) on the most recent log-returns, refitted for every as-of (inside the jit).

Work in ``z_k = r_k + loc/scale`` (the RevIN-normalized return shifted so that ``z = 0`` is a
zero raw return, ``z = raw / scale``). On the last ``window`` steps of the lookback fit

    z_t = c + sum_{i=1..p} phi_i z_{t-i} + e_t

by weighted ridge least squares, ``beta = (X^T W X + Lambda)^{-1} X^T W z`` with ``W`` the
product of the masks of the row's returns and ``Lambda = diag(ridge, ..., ridge, intercept_ridge)``
(the intercept is shrunk towards a zero raw drift). The forecast is the recursion with
``e = 0``, returned in ``z`` units (the trend ensemble converts to normalized units,
``r_hat = z_hat - loc/scale``).
No trained parameters: the order, window and penalties come from ``trend.ar`` in the config.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from aurora_jax.errors import InvalidParameterError


class ARLocal(eqx.Module):
    order: int = eqx.field(static=True)
    window: int = eqx.field(static=True)
    ridge: float = eqx.field(static=True)
    intercept_ridge: float = eqx.field(static=True)

    def __init__(self, order: int, window: int, ridge: float, intercept_ridge: float):
        if int(order) < 1:
            raise InvalidParameterError("trend.ar.order", order, "an integer >= 1")
        if int(window) < 2 * int(order) + 2:
            raise InvalidParameterError("trend.ar.window", window, f">= 2 * order + 2 = {2 * int(order) + 2}")
        if not ridge > 0 or not intercept_ridge > 0:
            raise InvalidParameterError("trend.ar.ridge", (ridge, intercept_ridge), "both > 0")
        self.order, self.window = int(order), int(window)
        self.ridge, self.intercept_ridge = float(ridge), float(intercept_ridge)

    def fit(self, z: Float[Array, " seq"], mask: Float[Array, " seq"]) -> Float[Array, " p1"]:
        """Ridge coefficients ``(phi_1..phi_p, c)`` on the last ``window`` steps of ``z``."""
        p, w = self.order, self.window
        if z.shape[-1] < w:
            raise InvalidParameterError("lookback", z.shape[-1], f">= trend.ar.window = {w}")
        z, mask = z[-w:] * mask[-w:], mask[-w:]
        n = w - p
        lags = jnp.stack([z[p - i - 1: p - i - 1 + n] for i in range(p)], axis=1)     # (n, p)
        lag_m = jnp.stack([mask[p - i - 1: p - i - 1 + n] for i in range(p)], axis=1)
        x = jnp.concatenate([lags, jnp.ones((n, 1))], axis=1)
        y = z[p:]
        wgt = mask[p:] * jnp.prod(lag_m, axis=1)
        pen = jnp.diag(jnp.concatenate([jnp.full((p,), self.ridge), jnp.array([self.intercept_ridge])]))
        xtw = x.T * wgt
        return jnp.linalg.solve(xtw @ x + pen, xtw @ y)

    def __call__(self, returns: Float[Array, " seq"], mask: Float[Array, " seq"], shift: Float[Array, ""],
                 horizon: int) -> Float[Array, " horizon"]:
        """Mean forecast of the next ``horizon`` scaled returns ``z`` (``shift = loc / scale``;
        subtract it for normalized units)."""
        z = returns + shift
        beta = self.fit(z, mask)
        phi, c = beta[:-1], beta[-1]
        hist = (z * mask)[-self.order:][::-1]                         # most recent first

        def step(h, _):
            nxt = c + phi @ h
            return jnp.concatenate([nxt[None], h[:-1]]), nxt

        _, zf = jax.lax.scan(step, hist, None, length=horizon)
        return zf


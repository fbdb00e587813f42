"""Residual vol scale: the engine's residual width follows its vol path.

With ``iv_k`` the engine's vol path (annualised 30-day implied vol, or its realized-vol fallback,
:mod:`aurora_jax.models.vol_path`) at step ``k`` and ``s`` the RevIN scale of daily log-returns::

    x_k = log(iv_k / sqrt(365.25)) - log s           (the vol path over the recent daily std, log)
    g_k = exp(beta clip(x_k - c, -clip, clip))       (beta >= 0)

and the engine's normalized residual is ``g_k e_k`` with ``e`` from the rectified flow, which is
trained on ``resid / g``. So an implied vol above the recent realized std widens the cone by the
factor ``g`` (the flow models what is left), and a what-if IV moves the width the way a user
expects: up with IV, for every ``beta > 0``. ``beta = 0`` is the engine without it.

Fitting (:func:`fit_vol_scale`, on the training rows): ``c`` is the median of ``x``; ``beta`` on
the grid ``vol_scale.betas`` maximises the profile Laplace likelihood of the residuals, one free
scale ``b_k`` per step (Laplace, not Gaussian: the residuals are fat-tailed)::

    beta* = argmin_beta  sum_k [ mean_i beta x'_ik + log mean_i |r_ik| exp(-beta x'_ik) ]

(``x' = clip(x - c)``, masked entries left out). ``beta`` near 1: the vol path alone sets the width;
near 0: the recent std does.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import DAYS_PER_YEAR

_TINY = 1e-12


def vol_log_ratio(iv_path: Float[Array, "... n"], scale: Float[Array, "..."], xp=jnp) -> Float[Array, "... n"]:
    """``x_k = log(iv_k / sqrt(365.25)) - log s`` (``xp``: ``jnp`` in the engine, ``np`` when fitting)."""
    return (xp.log(xp.maximum(iv_path, _TINY) / np.sqrt(DAYS_PER_YEAR))
            - xp.log(xp.maximum(scale, _TINY))[..., None])


class VolScale(eqx.Module):
    """``g_k = exp(beta clip(log(iv_k / sqrt(365.25)) - log s - center, -clip, clip))``."""

    beta: Float[Array, ""]
    center: Float[Array, ""]
    clip: float = eqx.field(static=True, default=1.5)

    def log_ratio(self, iv_path: Float[Array, "... n"], scale: Float[Array, "..."]) -> Float[Array, "... n"]:
        """``x_k - c``, clipped to ``[-clip, clip]``."""
        return jnp.clip(vol_log_ratio(iv_path, scale) - self.center, -self.clip, self.clip)

    def __call__(self, iv_path: Float[Array, "... n"], scale: Float[Array, "..."]) -> Float[Array, "... n"]:
        return jnp.exp(self.beta * self.log_ratio(iv_path, scale))


def check_vol_scale_config(vcfg) -> tuple[np.ndarray, float]:
    betas = np.asarray(list(vcfg.betas), dtype=float)
    if betas.size < 1 or not np.all(np.isfinite(betas)) or betas.min() < 0 or betas.max() > 3:
        raise InvalidParameterError("model.vol_scale.betas", list(vcfg.betas), "a non-empty grid in [0, 3]")
    clip = float(vcfg.clip)
    if not 0 < clip <= 5:
        raise InvalidParameterError("model.vol_scale.clip", clip, "in (0, 5] (log units)")
    return betas, clip


def fit_vol_scale(resid: Float[np.ndarray, "n h"], mask: Float[np.ndarray, "n h"], iv_path: Float[np.ndarray, "n h"],
                  scale: Float[np.ndarray, " n"], vcfg) -> tuple[VolScale, dict]:
    """``(VolScale, report)`` from normalized residuals on training rows (module docstring)."""
    betas, clip = check_vol_scale_config(vcfg)
    resid, mask = np.asarray(resid, float), np.asarray(mask, float) > 0
    h = resid.shape[1]
    x = vol_log_ratio(np.asarray(iv_path, float)[:, :h], np.asarray(scale, float), xp=np)
    ok = mask & np.isfinite(resid) & np.isfinite(x)
    if ok.sum(axis=0).min() < 30:
        raise InvalidParameterError("resid", f"{int(ok.sum(axis=0).min())} usable rows at some step",
                                    ">= 30 training rows per step to fit model.vol_scale")
    center = float(np.median(x[ok]))
    xc = np.clip(x - center, -clip, clip)
    a = np.abs(resid)

    def loss(b: float) -> float:
        tot = 0.0
        for k in range(h):
            m = ok[:, k]
            tot += b * xc[m, k].mean() + np.log(np.mean(a[m, k] * np.exp(-b * xc[m, k])) + _TINY)
        return tot / h

    losses = [loss(float(b)) for b in betas]
    best = int(np.argmin(losses))
    report = {"beta": float(betas[best]), "center": center, "clip": clip, "loss": float(losses[best]),
              "loss_beta0": loss(0.0), "x_sd": float(np.std(x[ok]))}
    return VolScale(jnp.asarray(betas[best], jnp.float32), jnp.asarray(center, jnp.float32), clip), report

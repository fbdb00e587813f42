"""Quasi-likelihood terms for fitting the teacher (JAX, differentiable).

1. **Whittle quasi-likelihood** of a log-variance proxy ``y_t`` (daily log Parkinson variance)
   under the linearised latent dynamics of the NFSDE sampled daily,
   ``x_{t+1} = Phi x_t + nu (.) dW^H_t + ell dB_t``, ``Phi = expm(A)``, observed as
   ``y_t = 1^T x_t + const + eta_t`` with white proxy noise ``eta``. Its spectral density is

       f_y(w) = f_H(w) sum_i |a_i(w)|^2 nu_i^2 + |sum_i a_i(w) ell_i|^2 / (2 pi) + s_eta^2 / (2 pi),
       a(w)^T = 1^T (I - Phi e^{-iw})^{-1},

   with the unit-variance fGn spectral density (Sinai 1976; Beran 1994)

       f_H(w) = sin(pi H) Gamma(2H+1) / pi * (1 - cos w) sum_j |2 pi j + w|^{-2H-1}

   (the sum is truncated at ``|j| <= K`` with the integral tail correction). The Whittle
   objective is ``mean_j [log f_y(w_j) + I(w_j) / f_y(w_j)]`` over the Fourier frequencies,
   ``I`` the periodogram (``|sum_t y_t e^{-iwt}|^2 / (2 pi n)``).

2. **Jump-diffusion quasi-likelihood** of daily log-returns ``r_t`` given the day's diffusive
   variance ``v_t``: ``r = m + sqrt(v) Z + sum_{i<=K} u_i`` with ``K ~ Poisson(Lambda)`` and
   ``m = mu - v/2 - Lambda E u`` (the compensator). The mixture is exact for ``K = 0`` (normal)
   and ``K = 1`` (normal convolved with a double-exponential mark: exponentially modified
   Gaussians; Student-t marks by 32-point Gauss–Hermite quadrature), and moment-matched normal
   for ``K >= 2`` (hence *quasi*-likelihood).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr, logsumexp
from jaxtyping import Array, Float

from aurora_jax.sim.jumps import DoubleExponentialMarks, Marks, StudentTMarks


def fgn_spectral_density(w: Float[Array, " f"], hurst, terms: int = 50) -> Float[Array, " f"]:
    """Unit-variance fGn spectral density on ``(0, pi]`` (integrates to 1 over ``[-pi, pi]``)."""
    h = jnp.asarray(hurst)
    e = 2.0 * h + 1.0
    j = jnp.arange(-terms, terms + 1, dtype=jnp.float32)
    s = jnp.sum(jnp.abs(2 * jnp.pi * j[None, :] + w[:, None]) ** (-e), axis=1)
    tail = 2.0 * (2 * jnp.pi) ** (-e) * (terms + 0.5) ** (-2.0 * h) / (2.0 * h)
    c = jnp.sin(jnp.pi * h) * jnp.exp(gammaln(2.0 * h + 1.0)) / jnp.pi
    return c * (1.0 - jnp.cos(w)) * (s + tail)


def periodogram(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier frequencies ``w_j = 2 pi j / n`` (``1 <= j <= (n-1)/2``) and ``I(w_j)``."""
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    f = np.fft.rfft(y - y.mean())
    j = np.arange(1, (n - 1) // 2 + 1)
    return 2 * np.pi * j / n, np.abs(f[j]) ** 2 / (2 * np.pi * n)


def latent_spectral_density(
    w: Float[Array, " f"], a_mat, nu, leverage, hurst, noise_sd
) -> Float[Array, " f"]:
    """``f_y(w)`` of the module docstring for drift matrix ``A`` (``Phi = expm(A)``)."""
    d = a_mat.shape[0]
    phi = jax.scipy.linalg.expm(a_mat)
    eye = jnp.eye(d, dtype=jnp.complex64)
    ones = jnp.ones((d,), jnp.complex64)

    def transfer(wj):
        m = eye - phi.T.astype(jnp.complex64) * jnp.exp(-1j * wj)
        return jnp.linalg.solve(m, ones)

    a = jax.vmap(transfer)(w.astype(jnp.float32))  # (f, d)
    frac = fgn_spectral_density(w, hurst) * jnp.sum(jnp.abs(a) ** 2 * nu**2, axis=1)
    lev = jnp.abs(a @ leverage.astype(jnp.complex64)) ** 2 / (2 * jnp.pi)
    return frac + lev + noise_sd**2 / (2 * jnp.pi)


def whittle_objective(w, per, f) -> Float[Array, ""]:
    """``mean_j [log f(w_j) + I(w_j) / f(w_j)]``."""
    return jnp.mean(jnp.log(f) + per / f)


_GH_X, _GH_W = np.polynomial.hermite.hermgauss(32)


def _logpdf_normal(r, m, v):
    return -0.5 * (jnp.log(2 * jnp.pi * v) + (r - m) ** 2 / v)


def _logpdf_one_jump(r, m, v, marks: Marks):
    sd = jnp.sqrt(v)
    if isinstance(marks, DoubleExponentialMarks):
        a = 1.0 / marks.mean_up
        b = 1.0 / marks.mean_down
        up = jnp.log(a) + a * (m - r) + 0.5 * a**2 * v + log_ndtr((r - m - a * v) / sd)
        dn = jnp.log(b) + b * (r - m) + 0.5 * b**2 * v + log_ndtr((m - r - b * v) / sd)
        return jnp.logaddexp(jnp.log(marks.p_up) + up, jnp.log1p(-marks.p_up) + dn)
    if isinstance(marks, StudentTMarks):
        x = jnp.asarray(_GH_X, jnp.float32)
        wts = jnp.asarray(_GH_W, jnp.float32) / math.sqrt(math.pi)
        u = (r[..., None] - m[..., None] - jnp.sqrt(2.0 * v)[..., None] * x) / marks.scale
        nu = marks.df
        logt = (
            gammaln((nu + 1) / 2)
            - gammaln(nu / 2)
            - 0.5 * jnp.log(nu * jnp.pi)
            - (nu + 1) / 2 * jnp.log1p(u**2 / nu)
            - jnp.log(marks.scale)
        )
        return logsumexp(logt + jnp.log(wts), axis=-1)
    raise TypeError(f"unsupported marks {type(marks).__name__}")


def jump_diffusion_loglik(
    r: Float[Array, " n"],
    v: Float[Array, " n"],
    mu,
    lam_day: Float[Array, " n"],
    marks: Marks,
) -> Float[Array, " n"]:
    """Per-day quasi-log-likelihood (module docstring, part 2)."""
    eu = marks.mean()
    var_u = marks.second_moment() - eu**2
    m = mu - 0.5 * v - lam_day * eu
    log_p0 = -lam_day
    log_p1 = jnp.log(lam_day + 1e-30) - lam_day
    p2 = jnp.clip(1.0 - jnp.exp(log_p0) - jnp.exp(log_p1), 1e-30, 1.0)
    l0 = log_p0 + _logpdf_normal(r, m, v)
    l1 = log_p1 + _logpdf_one_jump(r, m, v, marks)
    l2 = jnp.log(p2) + _logpdf_normal(r, m + 2 * eu, v + 2 * var_u)
    return logsumexp(jnp.stack([l0, l1, l2]), axis=0)

"""NFSDE building blocks: stability of A(z), the diffusion bound, and strong convergence."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from aurora_jax.sim.fbm_path import IncrementPath
from aurora_jax.sim.fgn import sample_fgn
from aurora_jax.sim.nfsde import NFSDE, StableMatrix, euler_solve

DTS = [1.0, 0.5, 0.25, 0.125]


def test_stable_matrix_eigenvalues_negative_for_any_z():
    for seed in range(5):
        a = StableMatrix(3, 2, 0.05, jax.random.key(seed), init_scale=2.0)
        for z in np.random.default_rng(seed).normal(scale=5.0, size=(20, 2)):
            eig = np.linalg.eigvals(np.asarray(a(jnp.asarray(z, jnp.float32))))
            assert eig.real.max() <= -0.05 + 1e-4


def test_diffusion_spectral_norm_bound():
    m = NFSDE(
        2,
        2,
        delta=0.02,
        width=8,
        depth=1,
        u_max=0.5,
        nu_max=2.0,
        lev_max=1.0,
        sigma_max=0.5,
        j_max=1.0,
        gamma_max=1.0,
        key=jax.random.key(0),
    )
    m = jax.tree_util.tree_map(lambda x: x + 3.0 if eqx_is_float(x) else x, m)
    bound = m.diffusion.spectral_bound()
    for y in np.random.default_rng(1).normal(scale=20.0, size=(50, 3)):
        g = np.asarray(m.g(0.0, jnp.asarray(y, jnp.float32), jnp.zeros(2)))
        assert np.linalg.norm(g, 2) <= bound + 1e-5


def eqx_is_float(x):
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)


def _slope_ci(errs: np.ndarray, rng) -> tuple[float, float, float]:
    slope = np.polyfit(np.log(DTS), np.log(errs.mean(0)), 1)[0]
    boot = [
        np.polyfit(np.log(DTS), np.log(errs[rng.integers(0, len(errs), len(errs))].mean(0)), 1)[0]
        for _ in range(300)
    ]
    lo, hi = np.percentile(boot, [0.5, 99.5])
    return slope, lo, hi


def test_strong_convergence_gbm_brownian():
    # dX = mu X dt + sigma X dW (H = 1/2, diffrax's VirtualBrownianTree), exact solution
    # X_T = exp((mu - sigma^2/2) T + sigma W_T); Euler–Maruyama has strong order 1/2.
    mu, sig, T, n = 0.02, 0.2, 8.0, 1500

    @jax.jit
    def errors(keys):
        def one(k):
            bm = diffrax.VirtualBrownianTree(0.0, T, tol=2**-10, shape=(1,), key=k)
            exact = jnp.exp((mu - 0.5 * sig**2) * T + sig * bm.evaluate(0.0, T)[0])
            out = []
            for dt in DTS:
                steps = int(T / dt)
                ys = euler_solve(
                    lambda t, y, a: mu * y,
                    [(lambda t, y, a: sig * y[:, None], bm)],
                    jnp.ones(1),
                    0.0,
                    dt,
                    steps,
                    None,
                    steps,
                )
                out.append(jnp.abs(ys[-1, 0] - exact))
            return jnp.stack(out)

        return jax.vmap(one)(keys)

    e = np.asarray(errors(jax.random.split(jax.random.key(0), n)), np.float64)
    assert np.all(np.diff(e.mean(0)) < 0)
    slope, lo, hi = _slope_ci(e, np.random.default_rng(0))
    assert lo - 0.02 <= 0.5 <= hi + 0.02, (slope, lo, hi)


def test_strong_convergence_young_fbm():
    # dX = mu X dt + sigma X dW^H with H = 0.7 (Young integral), exact X_T = exp(mu T + sigma W^H_T);
    # the Euler scheme over the pre-sampled fGn converges with rate 2H - 1 = 0.4.
    mu, sig, T, n, h = 0.02, 0.2, 8.0, 1500, 0.7
    fine = sample_fgn(jax.random.key(3), h, int(8 * T), n, 1 / 8)

    @jax.jit
    def errors(fine):
        def one(inc):
            exact = jnp.exp(mu * T + sig * inc.sum())
            out = []
            for dt in DTS:
                agg = round(dt * 8)
                ci = inc.reshape(-1, agg).sum(1)[:, None]
                steps = int(T / dt)
                ys = euler_solve(
                    lambda t, y, a: mu * y,
                    [(lambda t, y, a: sig * y[:, None], IncrementPath(0.0, dt, ci))],
                    jnp.ones(1),
                    0.0,
                    dt,
                    steps,
                    None,
                    steps,
                )
                out.append(jnp.abs(ys[-1, 0] - exact))
            return jnp.stack(out)

        return jax.vmap(one)(fine)

    e = np.asarray(errors(fine), np.float64)
    slope, lo, hi = _slope_ci(e, np.random.default_rng(1))
    # pre-asymptotic at these step sizes: allow 0.03 either side of 2H - 1
    assert abs(slope - (2 * h - 1)) < 0.03 + (hi - lo) / 2, (slope, lo, hi)

"""Truncated path signatures (JAX) and the signature MMD between two sets of paths.

The depth-``m`` signature of a path ``X: [0,T] -> R^d`` is the collection of iterated
integrals ``S^{i_1..i_k} = int_{t_1<...<t_k} dX^{i_1}_{t_1} ... dX^{i_k}_{t_k}``, ``k <= m``.
For a piecewise-linear path with increments ``D_1..D_n``, Chen's identity gives

    S(X) = exp(D_1) (x) exp(D_2) (x) ... (x) exp(D_n),   exp(D) = sum_k D^{(x)k} / k!,

in the truncated tensor algebra; level ``k`` of ``S (x) exp(D)`` is
``sum_{i=0..k} S_i (x) D^{(x)(k-i)} / (k-i)!``. :func:`signature` runs this as a ``lax.scan``.

The signature determines a path up to tree-like equivalence, and expected signatures
characterise path laws, so the MMD with a kernel on (truncated) signature features compares
whole path distributions (Chevyrev & Oberhauser 2022). We use the unbiased estimator

    MMD^2 = mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)

with ``k`` an RBF kernel on the flattened signatures (bandwidth: median heuristic on the
pooled sample unless given) or the linear kernel ``<S(x), S(y)>`` (then MMD^2 is the squared
distance of expected signatures).

Market segments become paths by :func:`returns_to_path`: time, cumulative log-return and
cumulative squared log-return, both divided by a scale (``scale`` and ``scale^2``; use
``std * sqrt(steps)`` so each channel is of order one), so volatility clustering and leverage
enter at level 2+.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError


def _outer(a: Array, b: Array) -> Array:
    return jnp.tensordot(a, b, axes=0)


def _exp_levels(delta: Float[Array, " d"], depth: int) -> list[Array]:
    levels = [delta]
    for k in range(2, depth + 1):
        levels.append(_outer(levels[-1], delta) / k)
    return levels


def signature(path: Float[Array, "length d"], depth: int) -> Float[Array, " features"]:
    """Depth-``depth`` signature (levels 1..depth, flattened) of a piecewise-linear path."""
    if depth < 1:
        raise InvalidParameterError("depth", depth, "an integer >= 1")
    incs = jnp.diff(path, axis=0)
    d = path.shape[-1]
    init = [jnp.zeros((d,) * k, path.dtype) for k in range(1, depth + 1)]

    def step(sig, delta):
        e = _exp_levels(delta, depth)
        new = []
        for k in range(1, depth + 1):
            acc = sig[k - 1] + e[k - 1]
            for i in range(1, k):
                acc = acc + _outer(sig[i - 1], e[k - i - 1])
            new.append(acc)
        return new, None

    sig, _ = jax.lax.scan(step, init, incs)
    return jnp.concatenate([s.reshape(-1) for s in sig])


def signature_size(d: int, depth: int) -> int:
    return sum(d**k for k in range(1, depth + 1))


def level_slices(d: int, depth: int) -> list[slice]:
    out, start = [], 0
    for k in range(1, depth + 1):
        out.append(slice(start, start + d**k))
        start += d**k
    return out


def batch_signature(paths: Float[Array, "batch length d"], depth: int) -> Float[Array, "batch f"]:
    """Unscaled signatures of a batch of paths (``vmap`` of :func:`signature`)."""
    return jax.vmap(lambda p: signature(p, depth))(paths)


def normalise_levels(sigs: Float[Array, "batch f"], d: int, depth: int) -> Float[Array, "batch f"]:
    """Multiply level ``k`` by ``sqrt(k!)``: level-``k`` terms of a path of unit size scale
    like ``1/k!``, so without this the kernel would ignore the higher levels."""
    parts = [
        sigs[:, s] * math.sqrt(math.factorial(k))
        for k, s in enumerate(level_slices(d, depth), start=1)
    ]
    return jnp.concatenate(parts, axis=1)


def returns_to_path(
    returns: Float[Array, "batch steps"], scale
) -> Float[Array, "batch steps_plus_1 3"]:
    """``(t/steps, cumsum(r)/scale, cumsum(r^2)/scale^2)`` starting at the origin."""
    b, n = returns.shape
    r = returns / scale
    t = jnp.broadcast_to(jnp.linspace(0.0, 1.0, n + 1), (b, n + 1))
    cum = jnp.concatenate([jnp.zeros((b, 1)), jnp.cumsum(r, axis=1)], axis=1)
    qv = jnp.concatenate([jnp.zeros((b, 1)), jnp.cumsum(r**2, axis=1)], axis=1)
    return jnp.stack([t, cum, qv], axis=-1)


def _sqdist(a: Array, b: Array) -> Array:
    return jnp.maximum(jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T, 0.0)


def median_bandwidth(x: Float[Array, "n f"], y: Float[Array, "m f"]) -> Float[Array, ""]:
    """Median heuristic: ``sqrt(median pairwise squared distance / 2)`` of the pooled sample."""
    z = jnp.concatenate([x, y], axis=0)
    d2 = _sqdist(z, z)
    iu = jnp.triu_indices(z.shape[0], 1)
    return jnp.sqrt(0.5 * jnp.median(d2[iu]) + 1e-12)


def mmd2_unbiased(
    x: Float[Array, "n f"], y: Float[Array, "m f"], kernel: str = "rbf", bandwidth=None
) -> Float[Array, ""]:
    """Unbiased MMD^2 between samples ``x`` and ``y`` (module docstring)."""
    n, m = x.shape[0], y.shape[0]
    if kernel == "linear":
        kxx, kyy, kxy = x @ x.T, y @ y.T, x @ y.T
    elif kernel == "rbf":
        bw = jax.lax.stop_gradient(median_bandwidth(x, y)) if bandwidth is None else bandwidth
        g = lambda d2: jnp.exp(-d2 / (2.0 * bw**2))
        kxx, kyy, kxy = g(_sqdist(x, x)), g(_sqdist(y, y)), g(_sqdist(x, y))
    else:
        raise InvalidParameterError("kernel", kernel, "'rbf' or 'linear'")
    sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2.0 * jnp.mean(kxy)


def signature_mmd(
    paths_x: Float[Array, "n length d"],
    paths_y: Float[Array, "m length d"],
    depth: int,
    kernel: str = "rbf",
    bandwidth=None,
) -> Float[Array, ""]:
    """Unbiased MMD^2 between the path laws via depth-``depth`` signature features."""
    d = paths_x.shape[-1]
    sx = normalise_levels(batch_signature(paths_x, depth), d, depth)
    sy = normalise_levels(batch_signature(paths_y, depth), d, depth)
    return mmd2_unbiased(sx, sy, kernel, bandwidth)


def mmd_permutation_pvalue(
    key: PRNGKeyArray,
    feats_x: Float[Array, "n f"],
    feats_y: Float[Array, "m f"],
    n_perm: int = 200,
    kernel: str = "rbf",
) -> float:
    """Permutation p-value of ``MMD^2(x, y)`` (bandwidth fixed on the pooled sample)."""
    bw = median_bandwidth(feats_x, feats_y)
    z = jnp.concatenate([feats_x, feats_y])
    n = feats_x.shape[0]
    obs = mmd2_unbiased(feats_x, feats_y, kernel, bw)

    def one(k):
        p = jax.random.permutation(k, z.shape[0])
        zp = z[p]
        return mmd2_unbiased(zp[:n], zp[n:], kernel, bw)

    null = jax.lax.map(one, jax.random.split(key, n_perm))
    return float((1 + jnp.sum(null >= obs)) / (n_perm + 1))

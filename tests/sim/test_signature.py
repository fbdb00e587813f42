"""Truncated signatures against brute-force iterated sums; signature MMD as a two-sample test."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aurora_jax.sim.signature import (
    batch_signature,
    level_slices,
    mmd2_unbiased,
    mmd_permutation_pvalue,
    normalise_levels,
    returns_to_path,
    signature,
    signature_mmd,
)


def _brute(path: np.ndarray, depth: int) -> list[np.ndarray]:
    """Iterated integrals of a piecewise-linear path by explicit sums over segment orderings
    (level 2 and 3 formulas for piecewise-linear paths)."""
    d_ = np.diff(path, axis=0)
    n = len(d_)
    l1 = d_.sum(0)
    l2 = sum(np.outer(d_[i], d_[j]) for i in range(n) for j in range(i + 1, n)) + 0.5 * sum(
        np.outer(x, x) for x in d_
    )
    l3 = np.zeros((path.shape[1],) * 3)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                a, b, c = d_[i], d_[j], d_[k]
                t = np.einsum("i,j,k->ijk", a, b, c)
                if i < j < k:
                    l3 += t
                elif i == j < k or i < j == k:
                    l3 += t / 2
                elif i == j == k:
                    l3 += t / 6
    return [l1, l2, l3][:depth]


def test_signature_matches_brute_force():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(7, 3)).cumsum(0)
    s = np.asarray(signature(jnp.asarray(p, jnp.float32), 3), np.float64)
    ref = _brute(p, 3)
    for lvl, sl in enumerate(level_slices(3, 3)):
        np.testing.assert_allclose(s[sl], ref[lvl].ravel(), rtol=2e-4, atol=2e-4)


def test_chen_identity_and_straight_line():
    rng = np.random.default_rng(1)
    p = jnp.asarray(rng.normal(size=(9, 2)).cumsum(0), jnp.float32)
    # straight line: level k = D^{(x)k} / k!
    line = jnp.stack([jnp.zeros(2), jnp.asarray([0.3, -0.7])])
    s = np.asarray(signature(line, 3))
    d = np.asarray([0.3, -0.7])
    np.testing.assert_allclose(s[6:], np.einsum("i,j,k->ijk", d, d, d).ravel() / 6, rtol=1e-5)
    # adding a repeated point (a zero segment) changes nothing
    p2 = jnp.concatenate([p[:4], p[3:4], p[4:]])
    np.testing.assert_allclose(signature(p, 3), signature(p2, 3), rtol=1e-5, atol=1e-6)
    # Chen: level 2 of the concatenation = a2 + b2 + a1 (x) b1
    a, b = signature(p[:5], 2), signature(p[4:], 2)
    full = signature(p, 2)
    np.testing.assert_allclose(
        full[2:], a[2:] + b[2:] + jnp.outer(a[:2], b[:2]).ravel(), rtol=1e-5, atol=1e-5
    )
    # shuffle identity S^1 S^2 = S^{12} + S^{21}
    assert math.isclose(
        float(full[0] * full[1]), float(full[3] + full[4]), rel_tol=1e-4, abs_tol=1e-6
    )


def test_mmd_two_sample_level_and_power():
    key = jax.random.key(0)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n, steps = 200, 20
    a = jax.random.normal(k1, (n, steps)) * 0.01
    b = jax.random.normal(k2, (n, steps)) * 0.01
    # same total variance, but calm first half and turbulent second half
    scale = jnp.concatenate([jnp.full(steps // 2, 0.4), jnp.full(steps // 2, math.sqrt(1.84))])
    c = jax.random.normal(k3, (n, steps)) * 0.01 * scale
    f = lambda r: normalise_levels(batch_signature(returns_to_path(r, 0.05), 3), 3, 3)
    p_same = mmd_permutation_pvalue(k4, f(a), f(b), n_perm=200)
    p_diff = mmd_permutation_pvalue(k4, f(a), f(c), n_perm=200)
    assert p_same > 0.01
    assert p_diff < 0.01
    assert float(signature_mmd(returns_to_path(a, 0.05), returns_to_path(c, 0.05), 3)) > float(
        signature_mmd(returns_to_path(a, 0.05), returns_to_path(b, 0.05), 3)
    )


def test_unbiased_mmd_is_centred_under_null():
    rng = np.random.default_rng(3)
    vals = [
        float(
            mmd2_unbiased(
                jnp.asarray(rng.normal(size=(30, 4))),
                jnp.asarray(rng.normal(size=(30, 4))),
                "linear",
            )
        )
        for _ in range(200)
    ]
    assert abs(np.mean(vals)) < 4 * np.std(vals) / np.sqrt(200)

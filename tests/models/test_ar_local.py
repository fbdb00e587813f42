"""Local AR: the jitted ridge fit and recursion against a numpy reference, coefficient recovery
on a simulated AR(2), masking, and the shrinkage of the drift toward a zero raw return."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.ar_local import ARLocal


def reference(z, order, ridge, intercept_ridge, horizon):
    n = len(z) - order
    x = np.column_stack([z[order - i - 1: order - i - 1 + n] for i in range(order)] + [np.ones(n)])
    beta = np.linalg.solve(x.T @ x + np.diag([ridge] * order + [intercept_ridge]), x.T @ z[order:])
    hist, out = list(z[-order:][::-1]), []
    for _ in range(horizon):
        nxt = beta[-1] + float(np.dot(beta[:-1], hist))
        out.append(nxt)
        hist = [nxt] + hist[:-1]
    return beta, np.array(out)


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    r = rng.standard_normal(90)
    shift = 0.07
    ar = ARLocal(order=3, window=60, ridge=2.0, intercept_ridge=5.0)
    z = r + shift
    beta_ref, fc_ref = reference(z[-60:], 3, 2.0, 5.0, 14)
    beta = ar.fit(jnp.asarray(z), jnp.ones(90))
    np.testing.assert_allclose(np.asarray(beta), beta_ref, rtol=1e-4, atol=1e-5)
    fc = ar(jnp.asarray(r), jnp.ones(90), jnp.asarray(shift), 14)
    np.testing.assert_allclose(np.asarray(fc), fc_ref, rtol=1e-4, atol=1e-5)   # z units


def test_recovers_ar2_coefficients():
    rng = np.random.default_rng(1)
    z = np.zeros(3000)
    for t in range(2, 3000):
        z[t] = 0.5 * z[t - 1] - 0.3 * z[t - 2] + rng.standard_normal()
    ar = ARLocal(order=2, window=2900, ridge=1e-3, intercept_ridge=1e-3)
    beta = np.asarray(ar.fit(jnp.asarray(z), jnp.ones(3000)))
    assert abs(beta[0] - 0.5) < 0.05 and abs(beta[1] + 0.3) < 0.05 and abs(beta[2]) < 0.08


def test_masked_rows_do_not_enter_the_fit():
    rng = np.random.default_rng(2)
    z = rng.standard_normal(80)
    mask = np.ones(80)
    mask[:30] = 0.0
    ar = ARLocal(order=2, window=80, ridge=1.0, intercept_ridge=1.0)
    junk = z.copy()
    junk[:30] = 50.0
    a = ar.fit(jnp.asarray(z), jnp.asarray(mask))
    b = ar.fit(jnp.asarray(junk), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_intercept_ridge_shrinks_drift_toward_zero_raw_return():
    """White noise with a raw mean of +0.2 sd: the long-run forecast in z = raw/scale units is
    the shrunk window mean, and larger intercept ridges shrink it more."""
    rng = np.random.default_rng(3)
    raw = 0.2 + rng.standard_normal(120)
    loc = raw.mean()
    r = raw - loc  # normalized returns as RevIN gives them (scale 1 here)
    far = {}
    for lam in (1.0, 1000.0):
        ar = ARLocal(order=1, window=120, ridge=1e4, intercept_ridge=lam)
        far[lam] = float(ar(jnp.asarray(r), jnp.ones(120), jnp.asarray(loc), 30)[-1])  # z units
    assert abs(far[1.0] - loc) < 0.02
    assert abs(far[1000.0]) < 0.25 * abs(loc)


def test_bad_settings_name_the_field():
    with pytest.raises(InvalidParameterError, match="order"):
        ARLocal(order=0, window=60, ridge=1.0, intercept_ridge=1.0)
    with pytest.raises(InvalidParameterError, match="window"):
        ARLocal(order=5, window=8, ridge=1.0, intercept_ridge=1.0)
    with pytest.raises(InvalidParameterError, match="lookback"):
        ARLocal(order=2, window=60, ridge=1.0, intercept_ridge=1.0).fit(jnp.zeros(30), jnp.ones(30))

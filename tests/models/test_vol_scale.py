"""The residual vol scale: g follows the vol path, and the fit recovers the exponent."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from aurora_jax.config import load_config
from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.vol_scale import DAYS_PER_YEAR, VolScale, fit_vol_scale


@pytest.fixture(scope="module")
def vcfg():
    return load_config(["model=engine"]).model.vol_scale


def synthetic(beta: float, n: int = 4000, h: int = 7, seed: int = 0):
    """Residuals whose scale is ``b_k (iv / sqrt(365.25) / s)^beta`` times Laplace noise."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(np.log(0.03), 0.3, n))                      # recent daily std
    log_ratio = rng.normal(0.1, 0.35, (n, 1)) + np.linspace(0, -0.1, h)   # vol path over it, mean-reverting
    iv = np.exp(log_ratio) * scale[:, None] * np.sqrt(DAYS_PER_YEAR)
    b = np.linspace(0.8, 1.2, h)
    resid = b * np.exp(beta * log_ratio) * rng.laplace(size=(n, h))
    return resid, np.ones((n, h)), iv, scale


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_fit_recovers_the_exponent(vcfg, beta):
    resid, mask, iv, scale = synthetic(beta)
    vs, rep = fit_vol_scale(resid, mask, iv, scale, vcfg)
    assert rep["beta"] == pytest.approx(beta, abs=0.11)
    assert rep["loss"] <= rep["loss_beta0"]
    # centred: g is 1 at the median log ratio
    assert rep["center"] == pytest.approx(np.median(np.log(iv / np.sqrt(DAYS_PER_YEAR) / scale[:, None])), abs=1e-9)
    # dividing by g leaves residuals whose scale no longer depends on the vol path
    g = np.asarray(vs(jnp.asarray(iv, jnp.float32), jnp.asarray(scale, jnp.float32)))
    x = np.log(iv / scale[:, None]).ravel()
    e = np.abs(resid / g).ravel()
    hi, lo = x > np.quantile(x, 0.8), x < np.quantile(x, 0.2)
    assert e[hi].mean() / e[lo].mean() == pytest.approx(1.0, abs=0.12)


def test_masked_entries_are_left_out(vcfg):
    resid, mask, iv, scale = synthetic(0.5, seed=1)
    bad = resid.copy()
    bad[:500, 3] = 1e6          # garbage where the target is missing
    mask[:500, 3] = 0.0
    _, a = fit_vol_scale(resid, mask, iv, scale, vcfg)
    _, b = fit_vol_scale(bad, mask, iv, scale, vcfg)
    assert a == b


def test_scale_rises_with_the_vol_path_and_is_clipped():
    vs = VolScale(jnp.asarray(0.8), jnp.asarray(0.0), clip=1.0)
    s = jnp.asarray(0.02)
    iv = jnp.asarray([0.2, 0.4, 0.8, 1.6, 100.0]) * 0.02 * np.sqrt(DAYS_PER_YEAR)
    g = np.asarray(vs(iv, s))
    assert np.all(np.diff(g[:4]) > 0)
    np.testing.assert_allclose(g[1:4], np.exp(0.8 * np.log([0.4, 0.8, 1.6])), rtol=1e-5)
    assert g[-1] == pytest.approx(np.exp(0.8), rel=1e-6)            # clipped at exp(beta * clip)
    assert g[0] == pytest.approx(np.exp(-0.8), rel=1e-6)
    np.testing.assert_allclose(np.asarray(VolScale(jnp.asarray(0.0), jnp.asarray(0.3))(iv, s)), 1.0)


def test_bad_config_and_too_few_rows(vcfg):
    resid, mask, iv, scale = synthetic(0.5, n=20)
    with pytest.raises(InvalidParameterError, match="resid"):
        fit_vol_scale(resid, mask, iv, scale, vcfg)
    resid, mask, iv, scale = synthetic(0.5, n=200)
    for key, val, field in (("betas", [], "betas"), ("betas", [-0.5, 1.0], "betas"), ("clip", 0.0, "clip")):
        bad = OmegaConf.merge(vcfg, {key: val})
        with pytest.raises(InvalidParameterError, match=field):
            fit_vol_scale(resid, mask, iv, scale, bad)

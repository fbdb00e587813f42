"""Vol path engine: mean reversion, recovery of known parameters, SPX/VIX fit vs the random walk,
and the realized-vol fallback when IV is missing."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from aurora_jax.data.snapshot import snapshot_from_config
from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.inputs import build_inputs, history
from aurora_jax.features.regime_vector import regime_layout
from aurora_jax.models.vol_path import (
    LogMeanReversion,
    VolPathData,
    fit_vol_path,
    iv_path,
    vol_path_data,
)


@pytest.fixture(scope="module")
def engine_cfg():
    from aurora_jax.config import load_config

    return load_config(["model=engine"])


@pytest.fixture(scope="module")
def layout(engine_cfg):
    return regime_layout(int(engine_cfg.model.inputs.regime_dim))


@pytest.fixture(scope="module")
def spx_hist(spx_store, engine_cfg):
    snap = snapshot_from_config(spx_store, "SPX", "2019-01-01", engine_cfg.data, lookback_days=7400)
    return history(snap, engine_cfg)


def _ratio_to_random_walk(params, d: VolPathData, which: str, H: int = 14) -> np.ndarray:
    """Out-of-sample MSE of the k-step log-vol forecast over the random walk's, k = 1..H."""
    x = d.log_iv if which == "implied" else d.log_rv
    has = np.isfinite(d.log_iv) if which == "implied" else np.zeros(len(x), bool)
    path = np.log(np.asarray(iv_path(params, d.regime, d.log_iv, d.log_rv, has, H)))
    if which == "realized":
        path = path - float(params.log_vrp)
    out = []
    for k in range(1, H + 1):
        tgt = np.full(len(x), np.nan)
        tgt[:-k] = x[k:]
        ok = np.isfinite(tgt) & np.isfinite(x)
        out.append(np.mean((tgt[ok] - path[ok, k - 1]) ** 2) / np.mean((tgt[ok] - x[ok]) ** 2))
    return np.array(out)


def test_path_reverts_monotonically_to_its_level(layout):
    kappa = 0.1
    theta = np.zeros(2, np.float32)
    theta[0], theta[1] = -1.0, 0.5
    m = LogMeanReversion(jnp.asarray(kappa), jnp.asarray(theta), (layout.index("log_rv_slow"),))
    regime = np.zeros(layout.dim, np.float32)
    regime[layout.index("log_rv_slow")] = -0.6
    mu = -1.0 + 0.5 * -0.6
    for x0 in (0.2, -2.5):
        p = np.asarray(m.path(jnp.asarray(x0), jnp.asarray(regime), 40))
        gap = np.abs(p - mu)
        assert (np.diff(gap) < 0).all() and (
            (p - mu) * (x0 - mu) > 0
        ).all()  # monotone, no overshoot
        np.testing.assert_allclose(gap, abs(x0 - mu) * 0.9 ** np.arange(1, 41), rtol=1e-3)
    assert m.half_life == pytest.approx(np.log(2) / -np.log(0.9))
    assert float(m.level(jnp.asarray(regime))) == pytest.approx(mu)


def test_recovers_known_parameters(engine_cfg, layout):
    """Simulated x_{t+1} = x_t + kappa (mu_t - x_t) + eps with mu_t = a + b z_t: the fit returns
    kappa within the grid resolution and (a, b) close to the truth."""
    rng = np.random.default_rng(3)
    n, kappa, a, b = 3000, 0.08, -1.2, 0.6
    z = np.zeros(n)
    for t in range(1, n):  # a persistent driver (log rv_slow)
        z[t] = 0.99 * z[t - 1] + 0.05 * rng.normal()
    x = np.zeros(n)
    x[0] = a
    for t in range(n - 1):
        x[t + 1] = x[t] + kappa * (a + b * z[t] - x[t]) + 0.04 * rng.normal()
    regime = np.zeros((n, layout.dim))
    regime[:, layout.index("log_rv_slow")] = z
    d = VolPathData("synthetic", x, x - 0.2, z, regime)
    cfg = OmegaConf.merge(
        engine_cfg.model.vol_path, {"features": ["log_rv_slow"], "ridge_vol": 0.0}
    )
    params, rep = fit_vol_path([d], cfg, layout)
    assert rep["implied"]["source"] == "fit"
    assert float(params.implied.kappa) == pytest.approx(kappa, rel=0.25)
    th = np.asarray(params.implied.theta)
    assert th[0] == pytest.approx(a, abs=0.1) and th[1] == pytest.approx(b, abs=0.25)
    # the premium: the rows' mean gap 0.2, shrunk toward vrp_prior with the weight of vrp_prior_rows
    n0, prior = float(cfg.vrp_prior_rows), float(cfg.vrp_prior)
    assert float(params.log_vrp) == pytest.approx((n * 0.2 + n0 * prior) / (n + n0), abs=1e-6)
    assert rep["vrp_rows"] == n
    no_prior = OmegaConf.merge(cfg, {"vrp_prior_rows": 0})
    assert float(fit_vol_path([d], no_prior, layout)[0].log_vrp) == pytest.approx(0.2, abs=1e-6)


def test_spx_vix_fit_beats_random_walk_out_of_sample(spx_hist, engine_cfg, layout):
    """Fit on SPX/VIX up to 2017 (the embedded default); forecast 2018."""
    cut = int(np.searchsorted(spx_hist.index, pd.Timestamp("2018-01-01", tz="UTC")))
    train = vol_path_data("SPX", spx_hist.desc.iloc[:cut], spx_hist.regime[:cut])
    test = vol_path_data("SPX", spx_hist.desc.iloc[cut:], spx_hist.regime[cut:])
    params, rep = fit_vol_path([train], engine_cfg.model.vol_path, layout)
    for which in ("implied", "realized"):
        assert rep[which]["source"] == "fit"
        assert 2.0 < rep[which]["half_life"] < 200.0
        assert rep[which]["mse"] < rep[which]["mse_random_walk"]
    assert 0.0 < float(params.log_vrp) < 0.6  # VIX above realized vol on average
    r_imp = _ratio_to_random_walk(params, test, "implied")
    r_rv = _ratio_to_random_walk(params, test, "realized")
    assert r_imp[6:].mean() < 1.0  # 7..14 steps ahead
    assert r_rv[6:].mean() < 0.95


def test_fallback_when_iv_missing(real_store, engine_cfg, layout):
    snap = snapshot_from_config(
        real_store,
        "BTC-USD",
        "2023-06-01",
        engine_cfg.data,
        groups=("price",),
        lookback_days=int(engine_cfg.model.inputs.snapshot_days),
    )
    x, info = build_inputs(snap, engine_cfg)
    assert info.iv_source == "realized_fallback" and "iv" in info.groups_missing
    h = history(snap, engine_cfg)
    from aurora_jax.features.inputs import fit_vol_params_on

    params = fit_vol_params_on(h, engine_cfg)
    # no IV anywhere to estimate a premium: the prior (a later observed IV is compared with rv + prior)
    assert float(params.log_vrp) == pytest.approx(float(engine_cfg.model.vol_path.vrp_prior))
    x, _ = build_inputs(snap, engine_cfg, vol_params=params)
    rv0 = float(h.desc["log_rv_long"].iloc[-1])
    want = np.exp(
        np.asarray(
            params.realized.path(jnp.asarray(rv0), jnp.asarray(h.regime[-1], jnp.float32), 14)
        )
        + float(params.log_vrp)
    )
    np.testing.assert_allclose(np.asarray(x.iv_path), want, rtol=1e-5)
    assert float(x.iv_path[0]) == pytest.approx(np.exp(rv0 + float(params.log_vrp)), rel=0.2)


def test_implied_and_fallback_switch_per_row(spx_hist, engine_cfg, layout):
    """The same params give the implied path where IV exists, the shifted realized path elsewhere."""
    params, _ = fit_vol_path(
        [vol_path_data("SPX", spx_hist.desc, spx_hist.regime)], engine_cfg.model.vol_path, layout
    )
    rows = np.flatnonzero(spx_hist.has_iv)[-3:]
    reg = spx_hist.regime[rows]
    liv, lrv = (
        spx_hist.desc["log_iv"].to_numpy()[rows],
        spx_hist.desc["log_rv_long"].to_numpy()[rows],
    )
    both = np.asarray(iv_path(params, reg, liv, lrv, np.array([True, False, True]), 14))
    imp = np.exp(
        np.asarray(
            params.implied.path(jnp.asarray(liv, jnp.float32), jnp.asarray(reg, jnp.float32), 14)
        )
    )
    rea = np.exp(
        np.asarray(
            params.realized.path(jnp.asarray(lrv, jnp.float32), jnp.asarray(reg, jnp.float32), 14)
        )
        + float(params.log_vrp)
    )
    np.testing.assert_allclose(both[[0, 2]], imp[[0, 2]], rtol=1e-5)
    np.testing.assert_allclose(both[1], rea[1], rtol=1e-5)


def test_prior_and_bad_settings(engine_cfg, layout):
    n = 30
    d = VolPathData(
        "short", np.full(n, -1.0), np.full(n, -1.2), np.full(n, -1.1), np.zeros((n, layout.dim))
    )
    params, rep = fit_vol_path([d], engine_cfg.model.vol_path, layout)
    assert rep["implied"]["source"] == "prior"
    assert params.implied.half_life == pytest.approx(
        float(engine_cfg.model.vol_path.prior_half_life), rel=1e-4
    )
    for key, val, field in (
        ("val_fraction", 1.0, "vol_path.val_fraction"),
        ("features", ["nope"], "vol_path.features"),
        ("half_life_grid", [5.0, 1.0, 10], "vol_path.half_life_grid"),
        ("fit_horizon", 0, "vol_path.fit_horizon"),
    ):
        with pytest.raises(InvalidParameterError, match=field):
            fit_vol_path([d], OmegaConf.merge(engine_cfg.model.vol_path, {key: val}), layout)


def test_skew_path_when_a_skew_column_exists(real_store, engine_cfg, layout):
    """No skew in the shared data: a test-built 25d risk reversal (an AR(1) around -2 vol points)
    is added to a real BTC snapshot; the skew block is unmasked and the skew path reverts toward
    its fitted level."""
    snap = snapshot_from_config(
        real_store,
        "BTC-USD",
        "2023-06-01",
        engine_cfg.data,
        lookback_days=int(engine_cfg.model.inputs.snapshot_days),
    )
    rng = np.random.default_rng(5)
    s = np.full(len(snap.frame), -2.0)
    for t in range(1, len(s)):
        s[t] = s[t - 1] + 0.1 * (-2.0 - s[t - 1]) + 0.3 * rng.normal()
    frame = snap.frame.copy()
    frame["skew_25d_rr"] = s
    groups = dict(snap.column_groups, skew_25d_rr="iv")
    snap2 = type(snap)(
        snap.asset_id,
        snap.as_of,
        snap.freq,
        frame,
        groups,
        snap.freshness,
        snap.missing_fraction,
        snap.stale_groups,
    )
    x, info = build_inputs(snap2, engine_cfg)
    assert "skew" not in info.masked_blocks
    assert float(x.regime[layout.mask_index["skew"]]) == 1.0
    path = np.asarray(info.skew_path)
    assert path.shape == (int(engine_cfg.model.inputs.horizon_max),) and np.isfinite(path).all()
    h = history(snap2, engine_cfg)
    params, rep = fit_vol_path(
        [vol_path_data("BTC", h.desc, h.regime)], engine_cfg.model.vol_path, layout
    )
    assert rep["skew"]["source"] == "fit"
    assert 3.0 < rep["skew"]["half_life"] < 15.0  # true half-life log 2 / -log 0.9 = 6.6
    mu = float(params.skew.level(jnp.asarray(h.regime[-1], jnp.float32)))
    assert mu == pytest.approx(-2.0, abs=0.5)
    gap = np.abs(
        np.asarray(
            params.skew.path(
                jnp.asarray(s[-1], jnp.float32), jnp.asarray(h.regime[-1], jnp.float32), 14
            )
        )
        - mu
    )
    assert (np.diff(gap) < 0).all()
    # without the column: no skew path, and the skew model is the prior
    _, info0 = build_inputs(snap, engine_cfg)
    assert info0.skew_path is None and "skew" in info0.masked_blocks

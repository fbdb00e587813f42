"""build_inputs on real snapshots: the ModelInputs contract, graceful degradation, consistency."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from aurora_jax.data.schema import FEATURE_GROUPS
from aurora_jax.data.snapshot import snapshot_from_config
from aurora_jax.errors import ConfigError, InvalidParameterError
from aurora_jax.features.descriptors import BLOCK_GROUP
from aurora_jax.features.inputs import (
    ModelInputs,
    build_inputs,
    engine_config,
    fit_vol_params_on,
    history,
    inputs_at,
    snapshot_for_inputs,
)
from aurora_jax.features.regime_vector import regime_layout

AS_OF = "2023-06-01"
ALL = ("price", "iv", "micro", "derivs", "macro", "onchain", "narrative")


def _check_contract(x: ModelInputs, cfg):
    e = cfg.model.inputs
    L, D, H = int(e.lookback_days), int(e.regime_dim), int(e.horizon_max)
    shapes = {
        "returns": (L,),
        "returns_mask": (L,),
        "revin_loc": (),
        "revin_scale": (),
        "regime": (D,),
        "regime_id": (),
        "iv_path": (H,),
        "rv_level": (),
        "mm_indices": (3,),
        "spot": (),
    }
    for k, shp in shapes.items():
        a = getattr(x, k)
        assert a.shape == shp, k
        assert bool(jnp.isfinite(a).all()), k
    assert x.regime_id.dtype == jnp.int32 and x.returns.dtype == jnp.float32
    assert int(x.regime_id) in (0, 1, 2)
    assert float(x.revin_scale) > 0 and float(x.rv_level) > 0 and float(x.spot) > 0
    assert bool((x.iv_path > 0).all()) and bool((jnp.abs(x.mm_indices) < 3).all())
    assert set(np.unique(np.asarray(x.returns_mask))) <= {0.0, 1.0}
    assert bool((x.returns[x.returns_mask == 0] == 0).all())


def test_full_btc_inputs(real_store, engine_cfg):
    snap, hourly = snapshot_for_inputs(real_store, "BTC-USD", AS_OF, engine_cfg)
    x, info = build_inputs(snap, engine_cfg, hourly=hourly)
    _check_contract(x, engine_cfg)
    assert info.iv_source == "implied" and info.hourly
    assert float(x.spot) == pytest.approx(float(snap.close().iloc[-1]))
    assert float(x.returns_mask.sum()) == engine_cfg.model.inputs.lookback_days
    # the RevIN-normalised last return reproduces the raw one
    raw = np.log(snap.close()).diff().iloc[-1]
    assert float(x.returns[-1] * x.revin_scale + x.revin_loc) == pytest.approx(
        raw, rel=1e-4, abs=1e-6
    )
    # step 1 of the IV path starts from today's DVOL (fraction) and stays within a factor 1.5
    iv0 = snap.frame["iv_30d_atm"].iloc[-1] / 100
    assert (
        0.8 * iv0 < float(x.iv_path[0]) < 1.2 * iv0
        and float(x.iv_path.max() / x.iv_path.min()) < 1.5
    )
    assert set(info.groups_used) >= {"price", "iv", "derivs", "macro", "onchain"}
    assert "micro" in info.groups_missing
    assert info.mm_inputs["Inventory_Unwind_Index"] == ["funding", "volume", "selloff"]


@pytest.mark.parametrize(
    "removed",
    [
        ("iv",),
        ("derivs",),
        ("onchain",),
        ("macro",),
        ("iv", "derivs", "onchain", "macro", "micro", "narrative"),
    ],
)
def test_graceful_degradation(real_store, engine_cfg, removed):
    """With a group removed (funding is in ``derivs``) -- or all but price -- the inputs build, the
    group is listed missing, its regime blocks are masked and nothing is NaN."""
    groups = [g for g in ALL if g not in removed]
    snap = snapshot_from_config(
        real_store,
        "BTC-USD",
        AS_OF,
        engine_cfg.data,
        groups=groups,
        lookback_days=int(engine_cfg.model.inputs.snapshot_days),
    )
    x, info = build_inputs(snap, engine_cfg)
    _check_contract(x, engine_cfg)
    lay = regime_layout(int(engine_cfg.model.inputs.regime_dim))
    for g in removed:
        assert g in info.groups_missing
        for b, bg in BLOCK_GROUP.items():
            if bg == g:
                assert b in info.masked_blocks
                assert float(x.regime[lay.mask_index[b]]) == 0.0
                assert bool((x.regime[np.asarray(lay.blocks[b])] == 0).all())
    assert "realized" not in info.masked_blocks
    if "iv" in removed:
        assert info.iv_source == "realized_fallback"
        assert info.mm_inputs["Gamma_Squeeze_Index"] == ["vol_acceleration"]
    if "derivs" in removed:
        assert info.mm_inputs["Basis_Pressure_Index"] == [] and float(x.mm_indices[2]) == 0.0
        assert "funding" not in info.mm_inputs["Inventory_Unwind_Index"]
    assert set(info.groups_used) | set(info.groups_missing) == set(FEATURE_GROUPS)


def test_stale_group_is_masked(real_store, engine_cfg):
    """DVOL ends 2024-06-30; ten days later it is stale: masked, listed, and the realized
    fallback drives the IV path."""
    snap = snapshot_from_config(
        real_store,
        "BTC-USD",
        "2024-07-01",
        engine_cfg.data,
        lookback_days=int(engine_cfg.model.inputs.snapshot_days),
    )
    stale = type(snap)(
        snap.asset_id,
        snap.as_of,
        snap.freq,
        snap.frame,
        snap.column_groups,
        snap.freshness,
        snap.missing_fraction,
        ["iv"],
    )
    x, info = build_inputs(stale, engine_cfg)
    _check_contract(x, engine_cfg)
    assert "iv" in info.groups_missing and "iv" in info.masked_blocks
    assert info.iv_source == "realized_fallback"


def test_spx_and_eth(spx_store, real_store, engine_cfg):
    snap, hourly = snapshot_for_inputs(spx_store, "SPX", "2016-06-01", engine_cfg)
    assert hourly is None
    x, info = build_inputs(snap, engine_cfg)
    _check_contract(x, engine_cfg)
    assert info.iv_source == "implied" and not info.hourly
    # ETH before 2022-11 exists only as hourly mark price: daily bars resampled from it
    snap, hourly = snapshot_for_inputs(real_store, "ETH-USD", "2021-06-01", engine_cfg)
    x, info = build_inputs(snap, engine_cfg, hourly=hourly)
    _check_contract(x, engine_cfg)
    assert info.iv_source == "realized_fallback" and info.hourly and "price" in info.groups_used


def test_single_as_of_equals_history_row(real_store, btc_history, engine_cfg):
    """build_inputs at an as-of equals the same row of the whole-history computation."""
    params = fit_vol_params_on(btc_history, engine_cfg)
    snap, hourly = snapshot_for_inputs(real_store, "BTC-USD", AS_OF, engine_cfg)
    x, _ = build_inputs(snap, engine_cfg, vol_params=params, hourly=hourly)
    row = int(np.flatnonzero(btc_history.index == snap.frame.index[-1])[0])
    y = jax.tree_util.tree_map(lambda a: a[0], inputs_at(btc_history, [row], params, engine_cfg))
    h_t = btc_history.until(snap.frame.index[-1])          # truncation = the history as of t
    assert len(h_t.index) == row + 1
    z = jax.tree_util.tree_map(lambda a: a[0], inputs_at(h_t, [row], params, engine_cfg))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool((a == b).all()), y, z))
    for k in ModelInputs.__dataclass_fields__:
        np.testing.assert_allclose(
            np.asarray(getattr(x, k)), np.asarray(getattr(y, k)), rtol=2e-5, atol=2e-6, err_msg=k
        )


def test_stacked_rows_vmap(btc_history, engine_cfg):
    params = fit_vol_params_on(btc_history, engine_cfg)
    rows = btc_history.valid_rows(int(engine_cfg.model.inputs.min_returns))[-64:]
    batch = inputs_at(btc_history, rows, params, engine_cfg)
    assert batch.returns.shape == (64, int(engine_cfg.model.inputs.lookback_days))
    total = jax.vmap(lambda m: (m.returns * m.returns_mask).sum() + m.iv_path.sum())(batch)
    assert total.shape == (64,) and bool(jnp.isfinite(total).all())


def test_errors(real_store, engine_cfg):
    with pytest.raises(ConfigError):
        engine_config(engine_cfg.data)
    snap = snapshot_from_config(
        real_store, "BTC-USD", "2014-10-10", engine_cfg.data, lookback_days=40
    )
    with pytest.raises(InvalidParameterError, match="snapshot"):
        build_inputs(snap, engine_cfg)
    h = history(
        snapshot_from_config(real_store, "BTC-USD", AS_OF, engine_cfg.data, lookback_days=200),
        engine_cfg,
    )
    with pytest.raises(InvalidParameterError, match="rows"):
        inputs_at(h, [0], fit_vol_params_on(h, engine_cfg), engine_cfg)
    assert pd.Timestamp(h.index[-1]) == pd.Timestamp(AS_OF, tz="UTC")

"""Regime vector: fixed length, masks instead of zero-fill, past-only rows, regime ids (real data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import BLOCKS, descriptors
from aurora_jax.features.inputs import history
from aurora_jax.features.regime_vector import regime_layout, regime_matrix


def _row(hist, when: str) -> int:
    return int(np.searchsorted(hist.index, pd.Timestamp(when, tz="UTC"), side="right") - 1)


def test_layout_is_fixed_and_checked(engine_cfg):
    dim = int(engine_cfg.model.inputs.regime_dim)
    lay = regime_layout(dim)
    assert 32 <= dim <= 64 and len(lay.names) == dim
    assert sorted(lay.mask_index) == sorted(BLOCKS)
    positions = [i for b in BLOCKS for i in lay.blocks[b]] + list(lay.mask_index.values())
    assert len(set(positions)) == len(positions)
    for bad in (31, 65, 40):  # 40 < values + masks
        with pytest.raises(InvalidParameterError, match="inputs.regime_dim"):
            regime_layout(bad)


def test_masks_follow_data_availability_on_real_btc(btc_history):
    h, lay = btc_history, btc_history.layout
    assert h.regime.shape == (len(h.index), lay.dim)
    assert np.isfinite(h.regime).all()
    masks = h.regime[:, [lay.mask_index[b] for b in BLOCKS]]
    assert set(np.unique(masks)) <= {0.0, 1.0}
    # every masked block has all-zero values (masked, and the mask says so)
    for j, b in enumerate(BLOCKS):
        off = masks[:, j] == 0
        assert (h.regime[np.ix_(off, list(lay.blocks[b]))] == 0).all()
    m = {b: masks[:, j] for j, b in enumerate(BLOCKS)}
    before_iv, after_iv = _row(h, "2021-06-01"), _row(h, "2023-06-01")
    # DVOL, funding and on-chain data start in Nov 2022; hourly mark price covers 2020-2023
    assert m["iv"][before_iv] == 0 and m["iv"][after_iv] == 1
    assert m["funding"][before_iv] == 0 and m["funding"][after_iv] == 1
    assert m["onchain"][before_iv] == 0 and m["onchain"][after_iv] == 1
    assert m["intraday"][before_iv] == 1 and m["intraday"][_row(h, "2017-06-01")] == 0
    # the 10y yield ends in March 2022: forward-filled beyond that it is stale, hence masked
    assert m["rates"][_row(h, "2021-06-01")] == 1 and m["rates"][after_iv] == 0
    assert m["skew"].max() == 0 and m["basis"].max() == 0  # absent modalities
    assert m["realized"][after_iv] == 1
    # values are real descriptors: log realized vol of BTC between 20% and 200% a year
    v = h.regime[after_iv, lay.index("log_rv_long")]
    assert np.log(0.2) < v < np.log(2.0)


def test_hourly_and_daily_realized_vol_agree(btc_history):
    """Realized vol from hourly mark-price bars tracks the daily close-to-close estimate."""
    d = btc_history.desc
    both = d[["log_rv_hourly_long", "log_rv_long"]].dropna()
    assert len(both) > 900
    diff = both["log_rv_hourly_long"] - both["log_rv_long"]
    assert abs(diff.median()) < 0.25
    assert np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1] > 0.8


def test_rows_are_past_only(btc_full, engine_cfg):
    """Every row of the history is unchanged when all later rows of the snapshot are altered."""
    daily, _ = btc_full
    cut = pd.Timestamp("2023-03-01", tz="UTC")
    h0 = history(daily, engine_cfg)
    altered = daily.frame.copy()
    later = altered.index > cut
    rng = np.random.default_rng(1)
    for col in altered.columns:
        altered.loc[later, col] = altered.loc[later, col] * np.exp(rng.normal(0, 0.3, later.sum()))
    snap2 = type(daily)(
        daily.asset_id,
        daily.as_of,
        daily.freq,
        altered,
        daily.column_groups,
        daily.freshness,
        daily.missing_fraction,
        daily.stale_groups,
    )
    h1 = history(snap2, engine_cfg)
    early = ~later
    np.testing.assert_array_equal(h0.regime[early], h1.regime[early])
    np.testing.assert_array_equal(h0.mm[early], h1.mm[early])
    np.testing.assert_array_equal(h0.regime_id[early], h1.regime_id[early])
    pd.testing.assert_frame_equal(h0.revin[early], h1.revin[early])
    assert not np.array_equal(h0.regime[later], h1.regime[later])


def test_regime_ids_track_volatility(btc_history, spx_history):
    for h in (btc_history, spx_history):
        ids = h.regime_id[h.valid_rows(60)]
        share = np.bincount(ids, minlength=3) / len(ids)
        assert (share > 0.1).all(), share  # all three regimes occur
        rv = h.desc["log_rv_short"].to_numpy()[h.valid_rows(60)]
        means = [np.nanmean(rv[ids == k]) for k in range(3)]
        assert means[0] < means[1] < means[2]  # calm < normal < volatile realized vol
    # March 2020 (COVID crash) is volatile for BTC; Oct 2008 for SPX
    assert btc_history.regime_id[_row(btc_history, "2020-03-20")] == 2
    assert spx_history.regime_id[_row(spx_history, "2008-10-20")] == 2


def test_forced_missing_blocks_and_checks(btc_history, engine_cfg):
    desc = btc_history.desc.iloc[-50:]
    dim = btc_history.layout.dim
    full, _ = regime_matrix(desc, dim, 6.0)
    forced, _ = regime_matrix(desc, dim, 6.0, missing_blocks=["iv", "onchain"])
    lay = btc_history.layout
    for b in ("iv", "onchain"):
        assert (forced[:, list(lay.blocks[b])] == 0).all() and (
            forced[:, lay.mask_index[b]] == 0
        ).all()
    keep = [
        i
        for i in range(dim)
        if i
        not in set(lay.blocks["iv"])
        | set(lay.blocks["onchain"])
        | {lay.mask_index["iv"], lay.mask_index["onchain"]}
    ]
    np.testing.assert_array_equal(full[:, keep], forced[:, keep])
    assert np.abs(full).max() <= 6.0
    with pytest.raises(InvalidParameterError, match="missing_blocks"):
        regime_matrix(desc, dim, 6.0, missing_blocks=["nope"])
    with pytest.raises(InvalidParameterError, match="regime.clip"):
        regime_matrix(desc, dim, 0.0)


def test_descriptors_without_optional_columns(btc_full, engine_cfg):
    """A price-only frame still gives the realized block and NaN (-> masked) elsewhere."""
    daily, _ = btc_full
    frame = daily.frame[["close", "open", "high", "low"]].iloc[-400:]
    d = descriptors(frame, frame["close"], engine_cfg.model.regime)
    assert d[list(BLOCKS["realized"])].iloc[-1].notna().all()
    for b in ("iv", "funding", "onchain", "dxy", "equity", "volume", "intraday"):
        assert d[list(BLOCKS[b])].isna().all().all()

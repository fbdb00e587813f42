"""The cross-asset block: ETH's rolling correlation with BTC, past-only, against a direct numpy
computation on the stores' closes; masked for BTC itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aurora_jax.features.inputs import build_inputs, snapshot_for_inputs
from aurora_jax.features.regime_vector import regime_layout

AS_OF = pd.Timestamp("2023-03-15", tz="UTC")


def test_eth_correlation_with_btc_matches_numpy(real_store, engine_cfg):
    snap, hourly = snapshot_for_inputs(real_store, "ETH-USD", AS_OF, engine_cfg)
    x, info = build_inputs(snap, engine_cfg, hourly=hourly)
    lay = regime_layout(int(engine_cfg.model.inputs.regime_dim))
    assert float(x.regime[lay.index("mask:cross")]) == 1.0 and "cross" not in info.masked_blocks
    # reference: the last 30 calendar days of daily log-returns of both assets on ETH's grid
    eth = snap.close()
    btc = real_store.series("BTC-USD", "close", end=AS_OF)
    btc = btc.reindex(btc.index.union(eth.index)).ffill().reindex(eth.index)
    r_e, r_b = np.log(eth).diff(), np.log(btc).diff()
    window = eth.index > eth.index[-1] - pd.Timedelta(days=int(engine_cfg.model.regime.long_days))
    ok = window & r_e.notna().to_numpy() & r_b.notna().to_numpy()
    want = np.corrcoef(r_e[ok], r_b[ok])[0, 1]
    assert float(x.regime[lay.index("corr_btc")]) == pytest.approx(want, abs=1e-5)
    assert 0.5 < want < 1.0                                    # ETH and BTC move together


def test_correlation_is_past_only_and_masked_for_btc(real_store, engine_cfg):
    lay = regime_layout(int(engine_cfg.model.inputs.regime_dim))
    # the same as-of from a snapshot that ends there and one built later then cut: same value
    a, ha = snapshot_for_inputs(real_store, "ETH-USD", AS_OF, engine_cfg)
    xa, _ = build_inputs(a, engine_cfg, hourly=ha)
    b, hb = snapshot_for_inputs(real_store, "ETH-USD", AS_OF + pd.Timedelta(days=40), engine_cfg)
    assert (b.frame.loc[b.frame.index <= AS_OF, "xref_close"].dropna().index <= AS_OF).all()
    common = a.frame.index.intersection(b.frame.index)
    assert len(common) > 600
    np.testing.assert_array_equal(a.frame.loc[common, "xref_close"].to_numpy(),
                                  b.frame.loc[common, "xref_close"].to_numpy())
    assert float(xa.regime[lay.index("corr_btc")]) != 0.0
    s, h = snapshot_for_inputs(real_store, "BTC-USD", AS_OF, engine_cfg)
    assert "xref_close" not in s.frame
    xb, info = build_inputs(s, engine_cfg, hourly=h)
    assert "cross" in info.masked_blocks
    assert float(xb.regime[lay.index("corr_btc")]) == 0.0 and float(xb.regime[lay.index("mask:cross")]) == 0.0

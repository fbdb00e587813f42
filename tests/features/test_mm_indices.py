"""Market-maker indices on real BTC data: bounded, standardised, and reporting their inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import descriptors
from aurora_jax.features.mm_indices import INDEX_COMPONENTS, MM_NAMES, mm_indices, used_inputs


def _row(index, when: str) -> int:
    return int(np.searchsorted(index, pd.Timestamp(when, tz="UTC"), side="right") - 1)


@pytest.fixture(scope="module")
def recent(btc_full, engine_cfg):
    """The last ~600 days of BTC (DVOL, funding, GBTC present) with descriptors."""
    daily, _ = btc_full
    frame = daily.frame.loc[daily.frame.index >= pd.Timestamp("2022-09-01", tz="UTC")].copy()
    close = daily.close().loc[frame.index]
    return frame, close, descriptors(frame, close, engine_cfg.model.regime)


def test_bounded_on_all_of_btc_history(btc_history):
    mm = btc_history.mm
    assert mm.shape == (len(btc_history.index), 3)
    assert np.isfinite(mm).all()
    assert (np.abs(mm) < 3.0).all()
    live = mm[btc_history.valid_rows(120)]
    assert (live.std(axis=0) > 0.3).all()  # standardised signals, not constants
    assert (np.abs(live).max(axis=0) > 1.5).all()


def test_reports_inputs_by_data_availability(btc_history):
    h = btc_history
    late = used_inputs(h.mm_used.iloc[_row(h.index, "2023-06-01")])
    assert late["Gamma_Squeeze_Index"] == ["rv_over_iv", "iv_change"]
    assert late["Inventory_Unwind_Index"] == ["funding", "volume", "selloff"]
    assert late["Basis_Pressure_Index"] == ["funding", "etf_premium"]
    i = _row(h.index, "2021-06-01")
    early = used_inputs(h.mm_used.iloc[i])
    assert early["Gamma_Squeeze_Index"] == ["vol_acceleration"]  # no DVOL yet: realized stand-in
    assert "funding" not in early["Inventory_Unwind_Index"]
    # GBTC exists from July 2021, funding from Nov 2022: nothing for basis pressure in June 2021
    assert early["Basis_Pressure_Index"] == [] and h.mm[i, 2] == 0.0


def test_matches_a_hand_computed_index(recent, engine_cfg):
    """Inventory_Unwind at one row from numpy z-scores of its raw components."""
    frame, close, desc = recent
    mm_cfg, reg = engine_cfg.model.mm, engine_cfg.model.regime
    out, used = mm_indices(frame, close, desc, mm_cfg, reg)
    t = frame.index[-1]
    W = pd.Timedelta(days=float(mm_cfg.z_window_days))
    win = (frame.index > t - W) & (frame.index <= t)

    def z(series):
        w = series[win].dropna().to_numpy()
        return (series.loc[t] - w.mean()) / w.std()

    fund = (
        frame["funding_rate"]
        .rolling(pd.Timedelta(days=float(reg.short_days)), min_periods=3)
        .mean()
    )
    logp = np.log(close)
    sell = -(logp - logp.shift(int(reg.short_days)))  # daily crypto grid: 7 rows = 7 days
    comps = [z(fund), z(np.log(frame["volume"])), z(sell)]
    x = sum(comps) / np.sqrt(3)
    assert used.loc[t, ["funding", "volume", "selloff"]].all() and not used.loc[t, "futures_oi"]
    assert out.loc[t, "Inventory_Unwind_Index"] == pytest.approx(3.0 * np.tanh(x / 3.0), rel=1e-6)


def test_optional_modalities_are_used_when_present(recent, engine_cfg):
    """Basis and option open interest (absent from the real data) enter when a column exists."""
    frame, close, desc = recent
    f2 = frame.copy()
    logp = np.log(close)
    f2["basis_3m"] = 0.05 + 2.0 * (
        logp - logp.rolling(30, min_periods=1).mean()
    )  # premium rises in rallies
    f2["oi_option_btc"] = np.exp(
        10.0 + 0.3 * np.sin(np.arange(len(f2)) / 9.0) + 0.001 * np.arange(len(f2))
    )
    base, _ = mm_indices(frame, close, desc, engine_cfg.model.mm, engine_cfg.model.regime)
    out, used = mm_indices(f2, close, desc, engine_cfg.model.mm, engine_cfg.model.regime)
    row = used_inputs(used.iloc[-1])
    assert row["Basis_Pressure_Index"] == ["basis", "funding", "etf_premium"]
    assert row["Gamma_Squeeze_Index"] == ["rv_over_iv", "iv_change", "option_oi"]
    assert not np.allclose(
        out["Basis_Pressure_Index"].iloc[-200:], base["Basis_Pressure_Index"].iloc[-200:]
    )
    assert (out.abs() < 3).all().all()


def test_funding_spike_raises_unwind_and_basis_pressure(recent, engine_cfg):
    frame, close, desc = recent
    f2 = frame.copy()
    f2.iloc[-3:, f2.columns.get_loc("funding_rate")] = 0.3  # 0.3% per 8h: 3x the record
    a, _ = mm_indices(frame, close, desc, engine_cfg.model.mm, engine_cfg.model.regime)
    b, _ = mm_indices(f2, close, desc, engine_cfg.model.mm, engine_cfg.model.regime)
    assert b["Inventory_Unwind_Index"].iloc[-1] > a["Inventory_Unwind_Index"].iloc[-1]
    assert b["Basis_Pressure_Index"].iloc[-1] > a["Basis_Pressure_Index"].iloc[-1]
    assert b.iloc[-1].abs().max() < 3.0


def test_missing_groups_are_excluded(recent, engine_cfg):
    frame, close, desc = recent
    out, used = mm_indices(
        frame,
        close,
        desc,
        engine_cfg.model.mm,
        engine_cfg.model.regime,
        missing_groups=["derivs", "iv"],
    )
    row = used_inputs(used.iloc[-1])
    assert row["Basis_Pressure_Index"] == [] and (out["Basis_Pressure_Index"] == 0).all()
    assert row["Gamma_Squeeze_Index"] == ["vol_acceleration"]
    assert row["Inventory_Unwind_Index"] == ["volume", "selloff"]
    assert set(out.columns) == set(MM_NAMES) == set(INDEX_COMPONENTS)


def test_bad_settings_raise(recent, engine_cfg):
    frame, close, desc = recent
    bad = dict(engine_cfg.model.mm) | {"bound": 0.0}
    with pytest.raises(InvalidParameterError, match="mm.bound"):
        mm_indices(frame, close, desc, type(engine_cfg.model.mm)(bad), engine_cfg.model.regime)

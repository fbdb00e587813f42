"""Sizing: the formula on a hand-worked case, the multipliers, and hypothesis properties --
q never grows with costs, tail risk or drawdown; q is a whole number of lots within limits."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.sizing import (
    SizingConfig,
    SizingInputs,
    floor_lot,
    kelly_fraction,
    lambda_cal,
    lambda_dd,
    lambda_lat,
    lambda_liq,
    lambda_reg,
    size_position,
)


@pytest.fixture(scope="module")
def scfg(risk_cfg) -> SizingConfig:
    return SizingConfig.from_cfg(risk_cfg.sizing)


def base_inputs(**kw) -> SizingInputs:
    d = dict(equity=100_000.0, price=50_000.0, stop_distance=1_000.0, cost_per_unit=50.0, p_win=0.6,
             payoff=2.0, cvar95_unit=2_500.0, coverage_error=0.0, regime="normal", trans=False,
             spread_bps=0.0, drawdown=0.0, latency_ms=0.0, lot=0.001)
    d.update(kw)
    return SizingInputs(**d)


def test_hand_worked_example(scfg):
    x = base_inputs()
    dec = size_position(x, scfg)
    # f* = 0.6 - 0.4/2 = 0.4; r = min(0.25 * 0.4, 0.02) = 0.02; M = 1; d = 1050
    kelly_q = math.floor(0.02 * 100_000 / 1050 / 0.001) * 0.001       # 1.904
    lev_q = math.floor(2.0 * 100_000 / 50_000 / 0.001) * 0.001         # 4.0
    gate_q = math.floor(0.02 * 100_000 / 2_500 / 0.001) * 0.001        # 0.8
    assert dec.candidates["kelly"] == pytest.approx(kelly_q)
    assert dec.candidates["leverage"] == pytest.approx(lev_q)
    assert dec.candidates["cvar_gate"] == pytest.approx(gate_q)
    assert dec.binding == "cvar_gate" and dec.qty == pytest.approx(0.8) and dec.n_lots == 800
    assert size_position(base_inputs(cvar95_unit=500.0), scfg).binding == "kelly"


def test_multipliers(scfg):
    assert kelly_fraction(0.5, 1.0) == 0.0 and kelly_fraction(0.6, 2.0) == pytest.approx(0.4)
    assert lambda_cal(0.0, scfg) == 1.0 and lambda_cal(0.05, scfg) == 1.0  # over-coverage not penalised
    assert lambda_cal(-scfg.calibration_tolerance / 2, scfg) == pytest.approx(0.5)
    assert lambda_cal(-1.0, scfg) == 0.0
    assert lambda_reg("volatile", False, scfg) < lambda_reg("normal", False, scfg)
    assert lambda_reg("normal", True, scfg) == pytest.approx(scfg.trans_multiplier)
    assert lambda_liq(scfg.spread_max_bps, scfg) == 0.0 and lambda_liq(0, scfg) == 1.0
    assert lambda_dd(scfg.drawdown_max / 2, scfg) == pytest.approx(0.5 ** scfg.drawdown_power)
    assert lambda_lat(scfg.latency_ok_ms, scfg) == 1.0 and lambda_lat(scfg.latency_max_ms, scfg) == 0.0
    with pytest.raises(InvalidParameterError, match="regime"):
        lambda_reg("bubble", False, scfg)
    assert size_position(base_inputs(state_multiplier=0.0), scfg).qty == 0.0  # BLOCK / breaker


pos = st.floats(0.01, 1e4, allow_nan=False)
inputs = st.builds(
    base_inputs,
    equity=st.floats(1e3, 1e7), price=st.floats(1.0, 1e5), stop_distance=st.floats(0.01, 1e4),
    cost_per_unit=st.floats(0.0, 100.0), p_win=st.floats(0.0, 1.0), payoff=st.floats(0.1, 10.0),
    cvar95_unit=st.floats(-100.0, 1e4), coverage_error=st.floats(-0.5, 0.5),
    regime=st.sampled_from(["calm", "normal", "volatile", "unknown"]), trans=st.booleans(),
    spread_bps=st.floats(0.0, 100.0), drawdown=st.floats(0.0, 0.5), latency_ms=st.floats(0.0, 5000.0),
    lot=st.sampled_from([1e-4, 1e-3, 0.01, 1.0, 5.0]),
)


@settings(max_examples=300, deadline=None)
@given(x=inputs, bump=pos)
def test_q_never_increases_with_costs_tail_risk_or_drawdown(scfg, x, bump):
    q0 = size_position(x, scfg).qty
    assert size_position(dataclasses.replace(x, cost_per_unit=x.cost_per_unit + bump), scfg).qty <= q0
    assert size_position(dataclasses.replace(x, stop_distance=x.stop_distance + bump), scfg).qty <= q0
    assert size_position(dataclasses.replace(x, cvar95_unit=x.cvar95_unit + bump), scfg).qty <= q0
    assert size_position(dataclasses.replace(x, drawdown=x.drawdown + bump / 1e4), scfg).qty <= q0
    assert size_position(dataclasses.replace(x, latency_ms=x.latency_ms + bump), scfg).qty <= q0
    assert size_position(dataclasses.replace(x, spread_bps=x.spread_bps + bump / 100), scfg).qty <= q0


@settings(max_examples=300, deadline=None)
@given(x=inputs)
def test_q_is_a_lot_multiple_within_limits(scfg, x):
    d = size_position(x, scfg)
    assert d.qty >= 0 and d.n_lots >= 0
    assert d.qty == pytest.approx(d.n_lots * x.lot, rel=1e-12, abs=0)
    assert d.qty <= scfg.max_leverage * x.equity / x.price * (1 + 1e-9)
    assert d.qty <= scfg.max_exposure_frac * x.equity / x.price * (1 + 1e-9)
    if x.cvar95_unit > 0:
        assert d.qty * x.cvar95_unit <= scfg.cvar_budget_frac * x.equity * (1 + 1e-9)
    assert d.qty * (x.stop_distance + x.cost_per_unit) <= scfg.r_max * x.equity * (1 + 1e-9)


@given(v=st.floats(0, 1e6), lot=st.sampled_from([1e-4, 0.001, 0.01, 0.1, 1.0]))
def test_floor_lot(v, lot):
    f = floor_lot(v, lot)
    assert f <= v * (1 + 1e-9) and v - f < lot * (1 + 1e-9)
    assert abs(f / lot - round(f / lot)) < 1e-6


def test_floor_lot_of_a_huge_gate_does_not_overflow():
    """A CVaR gate ``tau / cvar`` with ``cvar ~ 1e-303`` is ~1e304; ``/ lot`` overflows to inf
    (found by hypothesis): the gate stays huge and the other limits bind."""
    assert floor_lot(1.7980943318268173e304, 1e-4) == 1.7980943318268173e304
    assert floor_lot(float("inf"), 1e-4) == float("inf") and floor_lot(-1.0, 1e-4) == 0.0


def test_bad_input(scfg):
    with pytest.raises(InvalidParameterError, match="stop_distance"):
        size_position(base_inputs(stop_distance=0.0), scfg)
    with pytest.raises(InvalidParameterError, match="p_win"):
        size_position(base_inputs(p_win=1.5), scfg)
    with pytest.raises(InvalidParameterError, match="sizing.r_max"):
        dataclasses.replace(scfg, r_max=-1.0)

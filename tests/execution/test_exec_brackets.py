"""Bracket orders: deterministic client ids, leg geometry and sizes, stops that only tighten."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.brackets import (
    BracketSpec,
    TrailingStop,
    atr_trailing_stop,
    break_even_stop,
    build_bracket,
    client_order_id,
    spec_hash,
)
from aurora_jax.execution.filters import validate_order

REF = 60_000.0


def long_spec(**kw):
    d = dict(trace_id="fc-2024-06-01-btc", symbol="BTC/USDT:USDT", side="buy", amount=0.0237,
             entry_type="market", entry_price=None, stop_price=58_500.0,
             take_profits=((61_500.0, 0.5), (62_500.0, 0.3), (62_900.0, 0.2)))
    d.update(kw)
    return BracketSpec(**d)


def test_client_ids_are_deterministic_and_distinct(exec_cfg):
    pre = exec_cfg.brackets.client_id_prefix
    h = spec_hash(long_spec())
    a = client_order_id("t1", "entry", 0, h, 0, pre)
    assert a == client_order_id("t1", "entry", 0, h, 0, pre)  # same inputs, same id
    variants = {
        client_order_id("t2", "entry", 0, h, 0, pre), client_order_id("t1", "stop", 0, h, 0, pre),
        client_order_id("t1", "entry", 1, h, 0, pre), client_order_id("t1", "entry", 0, h, 1, pre),
        client_order_id("t1", "entry", 0, spec_hash(long_spec(amount=0.03)), 0, pre),
    }
    assert a not in variants and len(variants) == 5
    for cid in variants | {a}:
        assert len(cid) <= 36 and re.fullmatch(r"[A-Za-z0-9-]+", cid)  # Binance clientOrderId rules
    assert spec_hash(long_spec()) == spec_hash(long_spec())


def test_bracket_legs(btc_filters, exec_cfg):
    b = build_bracket(long_spec(), btc_filters, REF, 0, exec_cfg.brackets.client_id_prefix, "one_way")
    assert b.entry.amount == 0.023 and b.stop.amount == 0.023  # floored to the 0.001 step
    assert sum(o.amount for o in b.take_profits) == pytest.approx(b.entry.amount)
    assert [o.amount for o in b.take_profits] == [0.011, 0.006, 0.006]  # last TP takes the remainder
    assert b.stop.side == "sell" and b.stop.reduce_only and all(o.reduce_only for o in b.take_profits)
    assert len({o.client_order_id for o in b.orders}) == 5
    assert b.orders == build_bracket(long_spec(), btc_filters, REF, 0, "aj", "one_way").orders  # deterministic
    # every leg passes the exchange filters (tick/step/side of the reference price)
    for o in b.orders:
        problems = [p for p in validate_order(o, btc_filters, REF, "one_way") if p.code.value != "MIN_NOTIONAL"]
        assert problems == [], (o, problems)
    # a take-profit beyond the exchange's PERCENT_PRICE band (x1.05) cannot be placed yet
    far = build_bracket(long_spec(take_profits=((61_500.0, 0.5), (65_000.0, 0.5))), btc_filters, REF, 0, "aj", "one_way")
    assert [p.code.value for p in validate_order(far.take_profits[1], btc_filters, REF, "one_way")] == ["PRICE_PERCENT"]
    hedge = build_bracket(long_spec(), btc_filters, REF, 0, "aj", "hedge")
    assert all(o.position_side == "LONG" and not o.reduce_only for o in hedge.orders)
    retry = build_bracket(long_spec(), btc_filters, REF, 1, "aj", "one_way")
    assert not {o.client_order_id for o in retry.orders} & {o.client_order_id for o in b.orders}


def test_short_bracket_and_bad_geometry(btc_filters):
    short = long_spec(side="sell", stop_price=61_500.0, take_profits=((58_000.0, 1.0),))
    b = build_bracket(short, btc_filters, REF, 0, "aj", "one_way")
    assert b.stop.side == "buy" and b.take_profits[0].side == "buy"
    with pytest.raises(InvalidParameterError, match="stop_price"):
        build_bracket(long_spec(stop_price=60_500.0), btc_filters, REF, 0, "aj", "one_way")
    with pytest.raises(InvalidParameterError, match="take_profits"):
        build_bracket(long_spec(take_profits=((62_000.0, 0.5), (61_500.0, 0.5))), btc_filters, REF, 0, "aj", "one_way")
    with pytest.raises(InvalidParameterError, match="take_profits"):
        build_bracket(long_spec(take_profits=((62_000.0, 0.5),)), btc_filters, REF, 0, "aj", "one_way")
    with pytest.raises(InvalidParameterError, match="entry_price"):
        build_bracket(long_spec(entry_type="limit"), btc_filters, REF, 0, "aj", "one_way")


def test_break_even_after_tp1(exec_cfg):
    off = exec_cfg.brackets.break_even_offset_bps
    assert break_even_stop("buy", 60_000.0, 58_500.0, off) == pytest.approx(60_000 * (1 + off / 1e4))
    assert break_even_stop("buy", 60_000.0, 60_500.0, off) == 60_500.0  # never loosens
    assert break_even_stop("sell", 60_000.0, 61_500.0, off) == pytest.approx(60_000 * (1 - off / 1e4))


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["buy", "sell"]),
       moves=st.lists(st.tuples(st.floats(-0.05, 0.05), st.floats(0, 0.05), st.floats(1, 3000)), min_size=1, max_size=60))
def test_trailing_stop_only_tightens(exec_cfg, side, moves):
    k = exec_cfg.brackets.atr_multiplier
    price = 60_000.0
    ts = TrailingStop(side, price * (0.95 if side == "buy" else 1.05), price, k)
    for r, wig, atr in moves:
        price *= 1 + r
        new = ts.update(price * (1 + wig), price * (1 - wig), atr)
        assert (new.stop >= ts.stop) if side == "buy" else (new.stop <= ts.stop)
        ts = new
    assert atr_trailing_stop("buy", 100.0, 120.0, 5.0, k) == max(100.0, 120.0 - 5 * k)
    with pytest.raises(InvalidParameterError):
        atr_trailing_stop("buy", 100.0, 120.0, -1.0, k)

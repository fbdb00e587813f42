"""Order validation against ccxt/Binance filters: every rejection code, auto-quantization
that reports its changes, and a hypothesis property (quantize -> only non-grid issues left)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.filters import (
    ExchangeFilters,
    RejectCode,
    on_grid,
    quantize_order,
    validate_order,
)
from aurora_jax.execution.orders import OrderRequest

REF = 60_000.0
SYM = "BTC/USDT:USDT"


def codes(order, f, ref=REF, mode="one_way"):
    return {r.code for r in validate_order(order, f, ref, mode)}


def test_market_is_read_from_ccxt(btc_filters, btc_market):
    f = btc_filters
    assert (f.tick_size, f.step_size, f.min_qty, f.max_qty) == (0.1, 0.001, 0.001, 1000.0)
    assert (f.market_max_qty, f.min_notional, f.percent_up, f.percent_down) == (120.0, 100.0, 1.05, 0.95)
    assert "STOP_MARKET" in f.order_types and "GTX" in f.time_in_force
    # DECIMAL_PLACES precision mode (older ccxt): 1 decimal for price, 3 for amount
    m = copy.deepcopy(btc_market)
    m["precision"] = {"amount": 3, "price": 1}
    g = ExchangeFilters.from_ccxt_market(m, "decimal_places")
    assert (g.tick_size, g.step_size) == (0.1, 0.001)
    with pytest.raises(InvalidParameterError, match="precision_mode"):
        ExchangeFilters.from_ccxt_market(btc_market, "significant_digits")


def test_valid_orders_pass(btc_filters):
    ok = [
        OrderRequest(SYM, "buy", "limit", 0.01, price=59_999.9, time_in_force="GTC"),
        OrderRequest(SYM, "sell", "market", 0.002),
        OrderRequest(SYM, "sell", "stop_market", 0.01, stop_price=58_000.0, reduce_only=True),
        OrderRequest(SYM, "buy", "stop_market", 0.01, stop_price=61_000.0),
        OrderRequest(SYM, "sell", "take_profit_limit", 0.01, price=62_000.0, stop_price=62_000.0,
                     time_in_force="GTC", reduce_only=True),
        OrderRequest(SYM, "buy", "limit", 0.01, price=59_000.0, time_in_force="PO"),
    ]
    for o in ok:
        assert validate_order(o, btc_filters, REF, "one_way") == [], o
    hedge = OrderRequest(SYM, "sell", "stop_market", 0.01, stop_price=58_000.0, position_side="LONG")
    assert validate_order(hedge, btc_filters, REF, "hedge") == []


@pytest.mark.parametrize("order, code", [
    (OrderRequest(SYM, "hold", "market", 0.01), RejectCode.UNKNOWN_SIDE),
    (OrderRequest(SYM, "buy", "iceberg", 0.01), RejectCode.UNKNOWN_ORDER_TYPE),
    (OrderRequest(SYM, "buy", "market", 0.0), RejectCode.AMOUNT_NOT_POSITIVE),
    (OrderRequest(SYM, "buy", "market", 0.0105), RejectCode.AMOUNT_STEP),
    (OrderRequest(SYM, "buy", "limit", 0.0005, price=60_000.0, time_in_force="GTC"), RejectCode.AMOUNT_BELOW_MIN),
    (OrderRequest(SYM, "buy", "limit", 1500.0, price=60_000.0, time_in_force="GTC"), RejectCode.AMOUNT_ABOVE_MAX),
    (OrderRequest(SYM, "buy", "market", 150.0), RejectCode.AMOUNT_ABOVE_MAX),  # market lot size is 120
    (OrderRequest(SYM, "buy", "limit", 0.01, time_in_force="GTC"), RejectCode.PRICE_MISSING),
    (OrderRequest(SYM, "buy", "limit", 0.01, price=60_000.05, time_in_force="GTC"), RejectCode.PRICE_TICK),
    (OrderRequest(SYM, "buy", "limit", 0.01, price=500.0, time_in_force="GTC"), RejectCode.PRICE_BELOW_MIN),
    (OrderRequest(SYM, "sell", "limit", 0.01, price=64_000.0, time_in_force="GTC"), RejectCode.PRICE_PERCENT),
    (OrderRequest(SYM, "buy", "limit", 0.01, price=56_000.0, time_in_force="GTC"), RejectCode.PRICE_PERCENT),
    (OrderRequest(SYM, "buy", "market", 0.001), RejectCode.MIN_NOTIONAL),  # 60 USDT < 100
    (OrderRequest(SYM, "buy", "limit", 0.01, price=60_000.0), RejectCode.TIF_INVALID),
    (OrderRequest(SYM, "buy", "market", 0.01, time_in_force="GTC"), RejectCode.TIF_INVALID),
    (OrderRequest(SYM, "sell", "stop_market", 0.01, time_in_force="PO", stop_price=58_000.0), RejectCode.TIF_INVALID),
    (OrderRequest(SYM, "sell", "stop_market", 0.01), RejectCode.STOP_PRICE_MISSING),
    (OrderRequest(SYM, "sell", "stop_market", 0.01, stop_price=58_000.05), RejectCode.STOP_PRICE_TICK),
    (OrderRequest(SYM, "sell", "stop_market", 0.01, stop_price=61_000.0), RejectCode.STOP_PRICE_SIDE),
    (OrderRequest(SYM, "buy", "stop_market", 0.01, stop_price=59_000.0), RejectCode.STOP_PRICE_SIDE),
    (OrderRequest(SYM, "sell", "take_profit_market", 0.01, stop_price=59_000.0), RejectCode.STOP_PRICE_SIDE),
    (OrderRequest(SYM, "buy", "take_profit_market", 0.01, stop_price=61_000.0), RejectCode.STOP_PRICE_SIDE),
    (OrderRequest(SYM, "sell", "market", 0.01, position_side="LONG"), RejectCode.POSITION_SIDE_INVALID),
])
def test_each_rejection_code(btc_filters, order, code):
    assert code in codes(order, btc_filters)


def test_position_mode_rules_and_reference_price(btc_filters):
    ro = OrderRequest(SYM, "sell", "market", 0.01, reduce_only=True, position_side="LONG")
    assert RejectCode.REDUCE_ONLY_HEDGE_MODE in codes(ro, btc_filters, mode="hedge")
    no_side = OrderRequest(SYM, "sell", "market", 0.01)
    assert RejectCode.POSITION_SIDE_INVALID in codes(no_side, btc_filters, mode="hedge")
    stop = OrderRequest(SYM, "sell", "stop_market", 0.01, stop_price=58_000.0)
    assert RejectCode.REFERENCE_PRICE_MISSING in codes(stop, btc_filters, ref=None)
    assert RejectCode.REFERENCE_PRICE_MISSING in codes(OrderRequest(SYM, "buy", "market", 0.01), btc_filters, ref=None)
    limited = ExchangeFilters("X", 0.1, 0.001, None, None, None, None, None, None, None,
                              order_types=frozenset({"LIMIT", "MARKET"}), time_in_force=frozenset({"GTC"}))
    assert RejectCode.ORDER_TYPE_NOT_SUPPORTED in codes(stop, limited)
    ioc = OrderRequest(SYM, "buy", "limit", 0.01, price=60_000.0, time_in_force="IOC")
    assert RejectCode.TIF_NOT_SUPPORTED in codes(ioc, limited)


def test_quantization_reports_changes(btc_filters):
    o = OrderRequest(SYM, "buy", "limit", 0.01234, price=60_000.07)
    q = quantize_order(o, btc_filters, REF, bump_to_min_notional=False)
    assert q.order.amount == 0.012 and q.order.price == 60_000.0 and q.order.time_in_force == "GTC"
    fields = {c.field: c for c in q.changes}
    assert fields["amount"].code == RejectCode.AMOUNT_STEP and fields["amount"].old == 0.01234
    assert fields["price"].code == RejectCode.PRICE_TICK and "floor" in fields["price"].reason
    assert validate_order(q.order, btc_filters, REF, "one_way") == []
    s = quantize_order(OrderRequest(SYM, "sell", "limit", 0.01, price=60_000.01, time_in_force="GTC"),
                       btc_filters, REF, False)
    assert s.order.price == 60_000.1  # a sell limit rounds up: never a worse price
    small = OrderRequest(SYM, "buy", "market", 0.001)
    assert quantize_order(small, btc_filters, REF, False).order.amount == 0.001  # not bumped by default
    b = quantize_order(small, btc_filters, REF, True)
    assert b.order.amount == 0.002 and b.changes[-1].code == RejectCode.MIN_NOTIONAL
    assert validate_order(b.order, btc_filters, REF, "one_way") == []
    assert quantize_order(OrderRequest(SYM, "buy", "market", 0.01), btc_filters, REF, False).changes == ()


GRID_CODES = {RejectCode.AMOUNT_STEP, RejectCode.PRICE_TICK, RejectCode.STOP_PRICE_TICK, RejectCode.TIF_INVALID}


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    typ=st.sampled_from(["limit", "market", "stop_market", "take_profit_limit"]),
    amount=st.floats(0.0011, 100.0), off=st.floats(-0.04, 0.04), soff=st.floats(0.001, 0.04),
)
def test_quantized_orders_have_no_grid_errors(btc_filters, side, typ, amount, off, soff):
    sgn = 1 if side == "buy" else -1
    price = REF * (1 + off) if typ in ("limit", "take_profit_limit") else None
    stop = None
    if typ == "stop_market":
        stop = REF * (1 + sgn * soff)
    elif typ == "take_profit_limit":
        stop = REF * (1 - sgn * soff)
        price = stop
    o = OrderRequest(SYM, side, typ, amount, price=price, stop_price=stop)
    q = quantize_order(o, btc_filters, REF, bump_to_min_notional=False).order
    assert not (codes(q, btc_filters) & GRID_CODES)
    assert q.amount <= o.amount and on_grid(q.amount, btc_filters.step_size)
    if typ == "limit":
        assert (q.price <= o.price) if side == "buy" else (q.price >= o.price)
        assert abs(q.price - o.price) < btc_filters.tick_size

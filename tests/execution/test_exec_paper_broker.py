"""The paper broker: fill prices, fees, slippage, gaps, partial fills, TIF, reduce-only OCO,
intrabar ordering, idempotent re-sends and filter rejections -- events like an exchange's."""

from __future__ import annotations

import dataclasses

import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.orders import EventKind, OrderRequest
from aurora_jax.execution.paper_broker import Bar, PaperBroker, PaperBrokerConfig
from aurora_jax.execution.position import PositionBook, Role


@pytest.fixture
def pcfg(exec_cfg):
    return PaperBrokerConfig.from_cfg(exec_cfg.paper_broker)


def fills(events):
    return [e for e in events if e.kind == EventKind.FILL]


def O(cid, side, typ, amt, **kw):
    return OrderRequest("BTC/USDT:USDT", side, typ, amt, client_order_id=cid, **kw)


def test_market_fill_slippage_and_fee(pcfg):
    br = PaperBroker(pcfg)
    assert br.submit(O("m1", "buy", "market", 0.5), 0.0, 100.0)[0].kind == EventKind.ACK
    f = fills(br.on_bar(Bar(1.0, 101.0, 103.0, 99.0, 102.0)))
    assert len(f) == 1
    px = 101.0 * (1 + pcfg.slippage_bps / 1e4)
    assert f[0].price == pytest.approx(px) and f[0].qty == 0.5
    assert f[0].fee == pytest.approx(0.5 * px * pcfg.taker_fee_bps / 1e4)
    assert br.position == 0.5 and "m1" not in br.working


def test_limit_orders_and_gaps(pcfg):
    br = PaperBroker(pcfg)
    br.submit(O("l1", "buy", "limit", 1.0, price=95.0, time_in_force="GTC"), 0.0, 100.0)
    assert fills(br.on_bar(Bar(1.0, 100.0, 101.0, 96.0, 99.0))) == []  # low 96 > 95
    f = fills(br.on_bar(Bar(2.0, 97.0, 98.0, 94.0, 95.5)))
    assert f[0].price == 95.0 and f[0].fee == pytest.approx(95.0 * pcfg.maker_fee_bps / 1e4)  # maker
    br.submit(O("l2", "sell", "limit", 1.0, price=100.0, time_in_force="GTC"), 2.0)
    f = fills(br.on_bar(Bar(3.0, 104.0, 105.0, 103.0, 104.0)))  # gaps above the limit
    assert f[0].price == 104.0  # filled at the better open


def test_stop_gap_fills_at_open(pcfg):
    br = PaperBroker(pcfg)
    br.submit(O("e", "buy", "market", 1.0), 0.0, 100.0)
    br.on_bar(Bar(1.0, 100.0, 101.0, 99.0, 100.0))
    br.submit(O("s", "sell", "stop_market", 1.0, stop_price=95.0, reduce_only=True), 1.0)
    f = fills(br.on_bar(Bar(2.0, 90.0, 92.0, 88.0, 91.0)))
    assert f[0].price == pytest.approx(90.0 * (1 - pcfg.slippage_bps / 1e4))  # the open, not the stop
    assert br.position == 0


def test_partial_fills_follow_participation(pcfg):
    br = PaperBroker(pcfg)
    br.submit(O("big", "buy", "market", 5.0), 0.0, 100.0)
    vols = [20.0, 10.0, 40.0]
    got = []
    for t, v in enumerate(vols):
        got += fills(br.on_bar(Bar(float(t + 1), 100.0, 101.0, 99.0, 100.0, volume=v)))
    cap = [pcfg.participation * v for v in vols]
    assert [f.qty for f in got] == pytest.approx([cap[0], cap[1], 5.0 - cap[0] - cap[1]])
    assert len({f.event_id for f in got}) == 3  # each partial fill has its own trade id
    book = PositionBook()
    book.register(O("big", "buy", "market", 5.0), Role.ENTRY)
    book.apply_many(got)
    assert book.view("big").filled == pytest.approx(5.0)


def test_time_in_force(pcfg):
    br = PaperBroker(pcfg)
    br.submit(O("ioc", "buy", "limit", 5.0, price=100.0, time_in_force="IOC"), 0.0, 101.0)
    ev = br.on_bar(Bar(1.0, 100.5, 101.0, 99.0, 100.0, volume=20.0))  # can take 2 of 5
    assert [e.kind for e in ev] == [EventKind.FILL, EventKind.CANCEL] and ev[1].reason == "IOC_EXPIRED"
    br.submit(O("fok", "buy", "limit", 5.0, price=100.0, time_in_force="FOK"), 1.0)
    ev = br.on_bar(Bar(2.0, 100.5, 101.0, 99.0, 100.0, volume=20.0))
    assert [e.kind for e in ev] == [EventKind.CANCEL]  # all or nothing
    rej = br.submit(O("po", "buy", "limit", 1.0, price=101.0, time_in_force="PO"), 2.0, 100.0)
    assert rej[0].kind == EventKind.REJECT and rej[0].reason == "POST_ONLY_WOULD_TAKE"


def test_stop_and_take_profit_are_one_cancels_the_other(pcfg):
    for intrabar, first in (("pessimistic", "s"), ("optimistic", "tp")):
        br = PaperBroker(dataclasses.replace(pcfg, intrabar=intrabar))
        br.submit(O("e", "buy", "market", 1.0), 0.0, 100.0)
        br.on_bar(Bar(1.0, 100.0, 100.5, 99.5, 100.0))
        br.submit(O("s", "sell", "stop_market", 1.0, stop_price=97.0, reduce_only=True), 1.0)
        br.submit(O("tp", "sell", "take_profit_limit", 1.0, price=103.0, stop_price=103.0,
                    time_in_force="GTC", reduce_only=True), 1.0)
        ev = br.on_bar(Bar(2.0, 100.0, 104.0, 96.0, 100.0))  # touches both
        f = fills(ev)
        assert [x.client_order_id for x in f] == [first]
        cancels = [e for e in ev if e.kind == EventKind.CANCEL]
        assert [c.client_order_id for c in cancels] == [{"s": "tp", "tp": "s"}[first]]
        assert cancels[0].reason == "POSITION_CLOSED" and br.position == 0 and not br.working


def test_partial_take_profit_shrinks_what_the_stop_can_close(pcfg):
    br = PaperBroker(pcfg)
    br.submit(O("e", "buy", "market", 2.0), 0.0, 100.0)
    br.on_bar(Bar(1.0, 100.0, 100.5, 99.5, 100.0))
    br.submit(O("tp1", "sell", "take_profit_limit", 1.0, price=103.0, stop_price=103.0, time_in_force="GTC",
                reduce_only=True), 1.0)
    br.submit(O("s", "sell", "stop_market", 2.0, stop_price=97.0, reduce_only=True), 1.0)
    br.on_bar(Bar(2.0, 100.0, 104.0, 99.0, 103.5))
    f = fills(br.on_bar(Bar(3.0, 99.0, 99.5, 95.0, 96.0)))
    assert [(x.client_order_id, x.qty) for x in f] == [("s", 1.0)]  # capped at the open position
    assert br.position == 0


def test_idempotent_resend_and_filter_rejections(pcfg, btc_filters):
    br = PaperBroker(pcfg, btc_filters)
    o = O("x1", "buy", "limit", 0.01, price=60_000.0, time_in_force="GTC")
    first = br.submit(o, 0.0, 60_000.0)
    assert br.submit(o, 1.0, 60_000.0) == first  # same event id: a book dedupes it
    bad = br.submit(O("x2", "buy", "limit", 0.0105, price=60_000.05, time_in_force="GTC"), 0.0, 60_000.0)
    assert bad[0].kind == EventKind.REJECT and set(bad[0].reason.split(",")) == {"AMOUNT_STEP", "PRICE_TICK"}
    hedge = br.submit(O("x3", "buy", "market", 0.01, position_side="LONG"), 0.0, 60_000.0)
    assert hedge[0].reason == "POSITION_SIDE_INVALID"
    assert br.cancel("x1", 2.0)[0].kind == EventKind.CANCEL and br.cancel("x1", 3.0) == []
    with pytest.raises(InvalidParameterError, match="bar"):
        br.on_bar(Bar(4.0, 100.0, 99.0, 98.0, 100.0))
    with pytest.raises(InvalidParameterError, match="participation"):
        dataclasses.replace(pcfg, participation=0.0)

"""Position FSM (hypothesis): any permutation, duplication or delay of the same events gives
the same final state; duplicate fills never change the position; protective orders never
exist without a filled entry; trailing stops are monotone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.orders import EventKind, OrderEvent, OrderRequest
from aurora_jax.execution.position import PositionBook, Role, Status

LOT = 0.001


@st.composite
def scenario(draw):
    """Orders (entries with a stop and a take-profit) and the events an exchange could send."""
    orders, events = [], []
    n_entries = draw(st.integers(1, 3))
    eid = 0

    def ev(kind, cid, **kw):
        nonlocal eid
        eid += 1
        return OrderEvent(kind, cid, f"e{eid}", float(draw(st.integers(0, 50))), **kw)

    for k in range(n_entries):
        side = draw(st.sampled_from(["buy", "sell"]))
        exit_side = "sell" if side == "buy" else "buy"
        lots = draw(st.integers(1, 50))
        qty = lots * LOT
        e = OrderRequest("X", side, "market", qty, client_order_id=f"E{k}")
        stop = OrderRequest("X", exit_side, "stop_market", qty, stop_price=100.0 if side == "buy" else 200.0,
                            reduce_only=True, client_order_id=f"S{k}")
        tp = OrderRequest("X", exit_side, "take_profit_limit", qty, price=180.0 if side == "buy" else 120.0,
                          stop_price=180.0 if side == "buy" else 120.0, reduce_only=True, client_order_id=f"T{k}")
        orders += [(e, Role.ENTRY, None), (stop, Role.STOP, e.client_order_id), (tp, Role.TAKE_PROFIT, e.client_order_id)]
        fate = draw(st.sampled_from(["reject", "cancel_unfilled", "partial_cancel", "filled"]))
        events.append(ev(EventKind.REJECT if fate == "reject" else EventKind.ACK, e.client_order_id, reason="X"))
        filled_lots = 0
        if fate in ("partial_cancel", "filled"):
            target = lots if fate == "filled" else draw(st.integers(1, lots))
            while filled_lots < target:
                part = draw(st.integers(1, target - filled_lots))
                events.append(ev(EventKind.FILL, e.client_order_id, qty=part * LOT,
                                 price=float(draw(st.integers(140, 160))), fee=0.01 * part))
                filled_lots += part
        if fate in ("cancel_unfilled", "partial_cancel") and filled_lots < lots:
            events.append(ev(EventKind.CANCEL, e.client_order_id))
        if filled_lots:
            events.append(ev(EventKind.ACK, stop.client_order_id))
            for _ in range(draw(st.integers(0, 4))):  # trailing amendments, any order
                events.append(ev(EventKind.STOP_AMEND, stop.client_order_id, price=float(draw(st.integers(90, 140)))
                                 if side == "buy" else float(draw(st.integers(160, 210)))))
            closer = draw(st.sampled_from(["stop", "tp", "none"]))
            if closer != "none":
                c = stop if closer == "stop" else tp
                other = tp if closer == "stop" else stop
                events.append(ev(EventKind.FILL, c.client_order_id, qty=filled_lots * LOT, price=150.0, fee=0.02))
                events.append(ev(EventKind.CANCEL, other.client_order_id))
    return orders, events


def book_from(orders, events):
    b = PositionBook()
    for o, role, parent in orders:
        b.register(o, role, parent)
    for e in events:
        b.apply(e)
    return b


@settings(max_examples=250, deadline=None)
@given(sc=scenario(), data=st.data())
def test_permutation_duplication_and_delay_converge(sc, data):
    orders, events = sc
    ref = book_from(orders, events).snapshot()
    shuffled = data.draw(st.permutations(events))
    dups = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    stream = list(shuffled)
    for d in dups:  # duplicates re-delivered at random (later or earlier) positions
        stream.insert(data.draw(st.integers(0, len(stream))), d)
    assert book_from(orders, stream).snapshot() == ref
    # delay: some events arrive before the order is even registered locally
    b = PositionBook()
    cut = data.draw(st.integers(0, len(stream)))
    for e in stream[:cut]:
        b.apply(e)
    for o, role, parent in orders:
        b.register(o, role, parent)
    for e in stream[cut:]:
        b.apply(e)
    assert b.snapshot() == ref and not b.unknown_events


@settings(max_examples=150, deadline=None)
@given(sc=scenario())
def test_duplicate_fills_never_change_the_position(sc):
    orders, events = sc
    b = book_from(orders, events)
    net, snap = b.net, b.snapshot()
    for e in events:
        if e.kind == EventKind.FILL:
            assert b.apply(e) is False
            assert b.net == net
    assert b.snapshot() == snap
    expected = sum((1 if o.side == "buy" else -1) * e.qty
                   for o, _, _ in orders for e in events if e.kind == EventKind.FILL and e.client_order_id == o.client_order_id)
    assert b.net == pytest.approx(expected, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(sc=scenario(), data=st.data())
def test_no_protective_order_without_its_entry_and_monotone_stops(sc, data):
    orders, events = sc
    stream = data.draw(st.permutations(events))
    b = PositionBook()
    for o, role, parent in orders:
        b.register(o, role, parent)
    last_stop = {o.client_order_id: o.stop_price for o, role, _ in orders if role == Role.STOP}
    for e in stream:
        b.apply(e)
        for cid in b.active_protective():
            parent = b.orders[b.orders[cid].parent]
            assert parent.role == Role.ENTRY and parent.filled > 0
            assert b.status(cid) not in (Status.FILLED, Status.CANCELED, Status.REJECTED)
        for cid in b.void_children():
            assert b.orders[b.orders[cid].parent].filled == 0
        for cid, prev in last_stop.items():
            now = b.orders[cid].stop_price
            sell_stop = b.orders[cid].sign < 0
            assert (now >= prev) if sell_stop else (now <= prev)  # trailing stops only tighten
            last_stop[cid] = now
    for o, role, _ in orders:
        if role == Role.ENTRY and b.status(o.client_order_id) == Status.REJECTED:
            kids = [c for c, r in b.orders.items() if r.parent == o.client_order_id]
            assert not set(kids) & set(b.active_protective())


def test_registration_rules_and_statuses():
    b = PositionBook()
    stop = OrderRequest("X", "sell", "stop_market", 1.0, stop_price=90.0, client_order_id="S")
    with pytest.raises(InvalidParameterError, match="parent"):
        b.register(stop, Role.STOP, "E")  # no entry registered: a stop cannot exist alone
    b.register(OrderRequest("X", "buy", "market", 1.0, client_order_id="E"), Role.ENTRY)
    b.register(stop, Role.STOP, "E")
    assert b.status("E") == Status.PENDING and b.active_protective() == []
    b.apply(OrderEvent(EventKind.ACK, "E", "a", 0.0))
    assert b.status("E") == Status.OPEN
    b.apply(OrderEvent(EventKind.FILL, "E", "f1", 1.0, qty=0.4, price=100.0))
    assert b.status("E") == Status.PARTIALLY_FILLED and b.active_protective() == ["S"]
    b.apply(OrderEvent(EventKind.CANCEL, "E", "c", 2.0))
    b.apply(OrderEvent(EventKind.FILL, "E", "f2", 1.5, qty=0.6, price=110.0))  # a delayed fill still counts
    assert b.status("E") == Status.FILLED and b.net == pytest.approx(1.0)
    avg, realized = b.average_entry_and_realized()
    assert avg == pytest.approx(106.0) and realized == 0.0
    b.apply(OrderEvent(EventKind.FILL, "S", "f3", 3.0, qty=1.0, price=90.0))
    avg, realized = b.average_entry_and_realized()
    assert b.net == pytest.approx(0.0) and realized == pytest.approx(-16.0)

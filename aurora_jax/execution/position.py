"""Position state machine fed by order events, convergent under reordering and duplication.

The book's state is a function of the *set* of events received, not of their order:

* every event has a unique ``event_id`` (a fill's trade id); a repeated id is ignored,
  so duplicates never change anything;
* per order, ``filled = sum of its distinct fills``; ``acked``, ``canceled``, ``rejected``
  are flags that only turn on; the status is derived from them::

      FILLED            filled >= qty
      REJECTED          rejected and nothing filled
      CANCELED          canceled (possibly after partial fills)
      PARTIALLY_FILLED  0 < filled < qty
      OPEN              acked
      PENDING           otherwise

  (a fill that arrives after the cancel -- a delayed report -- still counts: it happened);
* the stop of a protective order moves by ``STOP_AMEND`` events through ``max`` (sell stop
  protecting a long) or ``min`` (buy stop): commutative and idempotent, hence monotone
  (trailing stops only tighten) and order-free;
* ``net = sum_orders sign * filled`` -- a sum over distinct fills.

Sums, flags and max/min are commutative and idempotent joins, so any permutation,
duplication or delay of the same events converges to the same state.

Bracket invariant: a stop or take-profit is *active* only while its entry has a fill and
the child itself is not final; a child of an entry that ended with nothing filled is
*void* (to be canceled). Quantities derived from the fill sequence (average entry price,
realized PnL) are computed from the fills sorted by ``(ts, event_id)``, so they converge too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from enum import IntEnum

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.orders import EventKind, OrderEvent, OrderRequest

_QTY_EPS = 1e-12
_REL_EPS = 1e-9  # relative tolerance of quantity comparisons (running float sums)


class Role(IntEnum):
    ENTRY = 0
    STOP = 1
    TAKE_PROFIT = 2
    OTHER = 3  # stand-alone orders (rebalancing, flattening)


class Status(IntEnum):
    PENDING = 0
    OPEN = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELED = 4
    REJECTED = 5


FINAL_STATUSES = (Status.FILLED, Status.CANCELED, Status.REJECTED)


class OrderRecord:
    """Mutable per-order aggregate (internal to :class:`PositionBook`)."""

    __slots__ = (
        "acked",
        "canceled",
        "cid",
        "fees",
        "filled",
        "notional",
        "parent",
        "qty",
        "rejected",
        "role",
        "sign",
        "stop_price",
    )

    def __init__(self, cid: str, role: Role, sign: int, qty: float, parent: str | None,
                 stop_price: float | None):
        self.cid, self.role, self.sign, self.qty, self.parent = cid, role, sign, qty, parent
        self.stop_price = stop_price
        self.filled = 0.0
        self.notional = 0.0
        self.fees = 0.0
        self.acked = self.canceled = self.rejected = False

    @property
    def status(self) -> Status:
        if self.filled >= self.qty * (1 - _REL_EPS):
            return Status.FILLED
        if self.rejected and self.filled <= 0:
            return Status.REJECTED
        if self.canceled:
            return Status.CANCELED
        if self.filled > 0:
            return Status.PARTIALLY_FILLED
        if self.acked:
            return Status.OPEN
        return Status.PENDING


@dataclass(frozen=True)
class OrderView:
    cid: str
    role: Role
    status: Status
    filled: float
    qty: float
    stop_price: float | None
    parent: str | None


class PositionBook:
    """Orders (registered before sending) and the position their events imply."""

    __slots__ = (
        "_fills",
        "_seen",
        "buy_notional",
        "buy_qty",
        "fees",
        "net",
        "orders",
        "overfills",
        "sell_notional",
        "sell_qty",
        "unknown_events",
    )

    def __init__(self) -> None:
        self.orders: dict[str, OrderRecord] = {}
        self._seen: set[str] = set()
        self.net = 0.0
        self.buy_qty = self.buy_notional = self.sell_qty = self.sell_notional = self.fees = 0.0
        self._fills: list[tuple[float, str, int, float, float, str, float]] = []
        self.unknown_events: list[OrderEvent] = []  # events for ids never registered
        self.overfills: list[str] = []              # orders filled beyond their quantity

    def register(self, order: OrderRequest, role: Role, parent: str | None = None) -> None:
        """Record an order before it is sent; children name their entry as ``parent``."""
        cid = order.client_order_id
        if not cid:
            raise InvalidParameterError("client_order_id", cid, "non-empty id")
        if role in (Role.STOP, Role.TAKE_PROFIT):
            if parent is None or parent not in self.orders or self.orders[parent].role != Role.ENTRY:
                raise InvalidParameterError("parent", parent, "the client id of a registered entry order")
        if cid in self.orders:
            return
        self.orders[cid] = OrderRecord(cid, role, order.sign, float(order.amount), parent,
                                       order.stop_price if role == Role.STOP else None)
        pending = [e for e in self.unknown_events if e.client_order_id == cid]
        if pending:
            self.unknown_events = [e for e in self.unknown_events if e.client_order_id != cid]
            for e in pending:
                self._seen.discard(e.event_id)
                self.apply(e)

    def apply(self, ev: OrderEvent) -> bool:
        """Apply one event; returns False for a duplicate (no change)."""
        eid = ev.event_id
        if eid in self._seen:
            return False
        self._seen.add(eid)
        o = self.orders.get(ev.client_order_id)
        if o is None:
            self.unknown_events.append(ev)
            return True
        k = ev.kind
        if k == EventKind.FILL:
            q = ev.qty
            o.filled += q
            o.notional += q * ev.price
            o.fees += ev.fee
            if o.sign > 0:
                self.net += q
                self.buy_qty += q
                self.buy_notional += q * ev.price
            else:
                self.net -= q
                self.sell_qty += q
                self.sell_notional += q * ev.price
            self.fees += ev.fee
            self._fills.append((ev.ts, eid, o.sign, q, ev.price, o.cid, ev.fee))
            if o.filled > o.qty * (1 + _REL_EPS):
                self.overfills.append(o.cid)
        elif k == EventKind.ACK:
            o.acked = True
        elif k == EventKind.CANCEL:
            o.canceled = True
        elif k == EventKind.REJECT:
            o.rejected = True
        elif k == EventKind.STOP_AMEND:
            if o.role != Role.STOP:
                return True
            p = ev.price
            sp = o.stop_price
            if sp is None:
                o.stop_price = p
            elif o.sign < 0:  # sell stop protects a long: only up
                if p > sp:
                    o.stop_price = p
            elif p < sp:      # buy stop protects a short: only down
                o.stop_price = p
        return True

    def apply_many(self, events) -> int:
        """Apply events in order; returns how many were new."""
        ap = self.apply
        return sum(1 for e in events if ap(e))

    # -- views -------------------------------------------------------------------------
    def status(self, cid: str) -> Status:
        return self.orders[cid].status

    def view(self, cid: str) -> OrderView:
        o = self.orders[cid]
        return OrderView(cid, o.role, o.status, o.filled, o.qty, o.stop_price, o.parent)

    def active_protective(self) -> list[str]:
        """Stops / take-profits whose entry has a fill and which are not final."""
        out = []
        for o in self.orders.values():
            if o.role in (Role.STOP, Role.TAKE_PROFIT) and o.status not in FINAL_STATUSES:
                if self.orders[o.parent].filled > 0:
                    out.append(o.cid)
        return out

    def void_children(self) -> list[str]:
        """Children of entries that ended with nothing filled and that are not final (cancel them)."""
        out = []
        for o in self.orders.values():
            if o.role in (Role.STOP, Role.TAKE_PROFIT) and o.status not in FINAL_STATUSES:
                e = self.orders[o.parent]
                if e.filled <= 0 and e.status in FINAL_STATUSES:
                    out.append(o.cid)
        return out

    def canonical_fills(self) -> list[tuple[float, str, int, float, float, str, float]]:
        """Fills ``(ts, event_id, sign, qty, price, cid, fee)`` sorted by ``(ts, event_id)``."""
        return sorted(self._fills, key=lambda f: (f[0], f[1]))

    def average_entry_and_realized(self) -> tuple[float, float]:
        """Average-cost entry price of the open position and realized PnL (before fees)."""
        pos, avg, realized = 0.0, 0.0, 0.0
        for _, _, sign, q, px, _, _ in self.canonical_fills():
            dq = sign * q
            if pos == 0 or (pos > 0) == (dq > 0):
                avg = (avg * abs(pos) + px * q) / (abs(pos) + q)
                pos += dq
                continue
            close = min(q, abs(pos))
            realized += close * (px - avg) * (1 if pos > 0 else -1)
            pos += dq
            if abs(pos) <= _QTY_EPS + _REL_EPS * q:
                pos, avg = 0.0, 0.0
            elif (pos > 0) == (dq > 0):  # flipped: the remainder opened at px
                avg = px
        return avg, realized

    def snapshot(self) -> dict:
        """Order-independent summary. Sums use ``math.fsum`` (correctly rounded, hence
        independent of the order of the terms), unlike the running totals."""
        fills = self._fills
        per_order: dict[str, list[float]] = defaultdict(list)
        for f in fills:
            per_order[f[5]].append(f[3])
        return {
            "net": math.fsum(f[2] * f[3] for f in fills),
            "buy_qty": math.fsum(f[3] for f in fills if f[2] > 0),
            "sell_qty": math.fsum(f[3] for f in fills if f[2] < 0),
            "buy_notional": math.fsum(f[3] * f[4] for f in fills if f[2] > 0),
            "sell_notional": math.fsum(f[3] * f[4] for f in fills if f[2] < 0),
            "fees": math.fsum(f[6] for f in fills),
            "orders": {c: (o.status.name, math.fsum(per_order.get(c, [])), o.stop_price)
                       for c, o in sorted(self.orders.items())},
            "active_protective": sorted(self.active_protective()),
        }

"""A paper broker that fills orders against OHLCV bars and reports exchange-style events.

Orders submitted before a bar work during that bar (one-way position mode):

1. **Market** orders fill at the bar's open, adverse slippage ``open (1 + sign s)``,
   ``s = slippage_bps / 1e4``, taker fee.
2. The bar's path between open and close visits the low and the high; ``intrabar =
   pessimistic`` visits the extreme that hurts the position first (low first when long or
   flat, high first when short) -- so a bar touching both stop and take-profit stops out
   first; ``optimistic`` is the reverse.
3. At each extreme: a **buy limit** fills if ``low <= limit`` at ``min(limit, open)`` (a gap
   fills at the better open), a **sell limit** mirrors with ``high``; a **stop** (sell:
   ``low <= stop``; buy: ``high >= stop``) fills at ``min(stop, open)`` (sell) / ``max(stop,
   open)`` (buy) with adverse slippage, taker fee; a **take-profit** (sell: ``high >= trigger``)
   fills at its limit price, or at the open if the open already passed it (maker fee for
   ``take_profit_limit``, taker with slippage for ``take_profit_market``); ``stop_limit``
   triggers like a stop and fills like a limit at its price.
4. **Partial fills**: all orders together take at most ``participation * volume`` of a bar
   (no cap when the bar has no volume, e.g. mark-price bars); the rest works on the next
   bar. ``IOC`` cancels the unfilled rest after the first bar, ``FOK`` cancels unless the
   whole amount fits, ``PO`` (post-only) is rejected if marketable at submission.
5. **reduce_only** fills are capped at the open position; when the position is flat the
   remaining reduce-only orders are canceled (``POSITION_CLOSED``), which makes a stop and
   its take-profits one-cancels-the-others.

Fees are ``qty * price * fee_bps / 1e4`` in quote. Events (ACK, FILL with a unique trade
id, CANCEL, REJECT with the filter reason codes) are the same :class:`OrderEvent` an
exchange adapter emits. Re-submitting a known client id replays the original ACK (same
event id), so the book dedupes it -- the idempotent behaviour of ``clientOrderId``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.filters import ExchangeFilters, validate_order
from aurora_jax.execution.orders import (
    STOP_TYPES,
    TAKE_PROFIT_TYPES,
    EventKind,
    OrderEvent,
    OrderRequest,
)

INTRABAR = ("pessimistic", "optimistic")


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``ts`` is its open time (seconds). ``volume`` in base units or None."""

    ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None


@dataclass(frozen=True)
class PaperBrokerConfig:
    """``cfg.execution.paper_broker``."""

    slippage_bps: float
    taker_fee_bps: float
    maker_fee_bps: float
    participation: float
    intrabar: str

    def __post_init__(self) -> None:
        for k in ("slippage_bps", "taker_fee_bps", "maker_fee_bps"):
            if not getattr(self, k) >= 0:
                raise InvalidParameterError(f"paper_broker.{k}", getattr(self, k), ">= 0")
        if not 0 < self.participation <= 1:
            raise InvalidParameterError("paper_broker.participation", self.participation, "in (0, 1]")
        if self.intrabar not in INTRABAR:
            raise InvalidParameterError("paper_broker.intrabar", self.intrabar, f"one of {INTRABAR}")

    @classmethod
    def from_cfg(cls, c) -> PaperBrokerConfig:
        return cls(float(c.slippage_bps), float(c.taker_fee_bps), float(c.maker_fee_bps),
                   float(c.participation), str(c.intrabar))


class _Working:
    __slots__ = ("ack", "bars", "order", "remaining", "triggered")

    def __init__(self, order: OrderRequest, ack: OrderEvent):
        self.order, self.remaining, self.ack = order, order.amount, ack
        self.triggered = False
        self.bars = 0


class PaperBroker:
    """Simulated exchange for one symbol (one-way mode)."""

    def __init__(self, cfg: PaperBrokerConfig, filters: ExchangeFilters | None = None):
        self.cfg = cfg
        self.filters = filters
        self.position = 0.0
        self.working: dict[str, _Working] = {}
        self._acks: dict[str, OrderEvent] = {}
        self._n = 0
        self.last_price: float | None = None

    def _id(self, tag: str) -> str:
        self._n += 1
        return f"{tag}{self._n}"

    # -- order entry ---------------------------------------------------------------------
    def submit(self, order: OrderRequest, ts: float, ref_price: float | None = None) -> list[OrderEvent]:
        """Accept (ACK) or refuse (REJECT with reason codes) an order."""
        cid = order.client_order_id
        if not cid:
            raise InvalidParameterError("client_order_id", cid, "non-empty id")
        if cid in self._acks:
            return [self._acks[cid]]  # idempotent re-send: replay the original answer
        ref = ref_price if ref_price is not None else self.last_price
        if order.position_side not in (None, "BOTH"):
            rej = OrderEvent(EventKind.REJECT, cid, self._id("R"), ts, reason="POSITION_SIDE_INVALID")
            self._acks[cid] = rej
            return [rej]
        if self.filters is not None:
            problems = validate_order(order, self.filters, ref, "one_way")
            if problems:
                rej = OrderEvent(EventKind.REJECT, cid, self._id("R"), ts,
                                 reason=",".join(sorted({p.code.value for p in problems})))
                self._acks[cid] = rej
                return [rej]
        if order.time_in_force == "PO" and ref is not None and order.price is not None:
            marketable = order.price >= ref if order.side == "buy" else order.price <= ref
            if marketable:
                rej = OrderEvent(EventKind.REJECT, cid, self._id("R"), ts, reason="POST_ONLY_WOULD_TAKE")
                self._acks[cid] = rej
                return [rej]
        ack = OrderEvent(EventKind.ACK, cid, self._id("A"), ts)
        self._acks[cid] = ack
        self.working[cid] = _Working(order, ack)
        return [ack]

    def cancel(self, cid: str, ts: float, reason: str = "USER") -> list[OrderEvent]:
        """Cancel a working order (nothing if it is not working any more)."""
        w = self.working.pop(cid, None)
        if w is None:
            return []
        return [OrderEvent(EventKind.CANCEL, cid, self._id("C"), ts, reason=reason)]

    # -- matching ------------------------------------------------------------------------
    def _fill(self, w: _Working, price: float, qty: float, taker: bool, ts: float) -> OrderEvent:
        fee_bps = self.cfg.taker_fee_bps if taker else self.cfg.maker_fee_bps
        w.remaining -= qty
        if w.remaining <= w.order.amount * 1e-12:
            w.remaining = 0.0
        self.position += w.order.sign * qty
        if abs(self.position) < 1e-12:
            self.position = 0.0
        return OrderEvent(EventKind.FILL, w.order.client_order_id, self._id("T"), ts,
                          qty=qty, price=price, fee=qty * price * fee_bps / 1e4)

    def _qty(self, w: _Working, budget: list[float]) -> float:
        q = w.remaining
        if w.order.reduce_only:
            reducing = (self.position > 0 and w.order.side == "sell") or (self.position < 0 and w.order.side == "buy")
            q = min(q, abs(self.position)) if reducing else 0.0
        return min(q, budget[0])

    def _slip(self, price: float, sign: int) -> float:
        return price * (1 + sign * self.cfg.slippage_bps / 1e4)

    def _try(self, w: _Working, extreme: str, bar: Bar, budget: list[float], out: list[OrderEvent]) -> None:
        o = w.order
        t = o.type
        px = None
        taker = True
        if t == "limit" or (t == "stop_limit" and w.triggered) or (t == "take_profit_limit" and w.triggered):
            if o.side == "buy" and extreme == "low" and bar.low <= o.price:
                px, taker = min(o.price, bar.open), False
            elif o.side == "sell" and extreme == "high" and bar.high >= o.price:
                px, taker = max(o.price, bar.open), False
        elif t in STOP_TYPES:
            hit = (o.side == "sell" and extreme == "low" and bar.low <= o.stop_price) or \
                  (o.side == "buy" and extreme == "high" and bar.high >= o.stop_price)
            if hit:
                trig = min(o.stop_price, bar.open) if o.side == "sell" else max(o.stop_price, bar.open)
                if t == "stop_market":
                    px = self._slip(trig, o.sign)
                else:
                    w.triggered = True
                    ok = trig >= o.price if o.side == "sell" else trig <= o.price
                    if ok:
                        px, taker = trig, False
        elif t in TAKE_PROFIT_TYPES:
            hit = (o.side == "sell" and extreme == "high" and bar.high >= o.stop_price) or \
                  (o.side == "buy" and extreme == "low" and bar.low <= o.stop_price)
            if hit:
                trig = max(o.stop_price, bar.open) if o.side == "sell" else min(o.stop_price, bar.open)
                if t == "take_profit_market":
                    px = self._slip(trig, o.sign)
                else:
                    w.triggered = True
                    px, taker = (max(o.price, bar.open) if o.side == "sell" else min(o.price, bar.open)), False
        if px is None:
            return
        q = self._qty(w, budget)
        if q <= 0:
            return
        if o.time_in_force == "FOK" and q < w.remaining:
            return
        budget[0] -= q
        out.append(self._fill(w, px, q, taker, bar.ts))

    def on_bar(self, bar: Bar) -> list[OrderEvent]:
        """Work every open order through ``bar``; returns the events in time order."""
        if not (bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close)) or bar.low <= 0:
            raise InvalidParameterError("bar", bar, "low <= open, close <= high and low > 0")
        out: list[OrderEvent] = []
        budget = [self.cfg.participation * bar.volume if bar.volume else float("inf")]
        # 1. market orders at the open
        for w in list(self.working.values()):
            if w.order.type == "market" and w.remaining > 0:
                q = self._qty(w, budget)
                if q > 0 and not (w.order.time_in_force == "FOK" and q < w.remaining):
                    budget[0] -= q
                    out.append(self._fill(w, self._slip(bar.open, w.order.sign), q, True, bar.ts))
        # 2-3. the two extremes in the configured order
        down_first = self.position >= 0
        if self.cfg.intrabar == "optimistic":
            down_first = not down_first
        for extreme in (("low", "high") if down_first else ("high", "low")):
            for w in list(self.working.values()):
                if w.remaining > 0 and w.order.type != "market":
                    self._try(w, extreme, bar, budget, out)
            self._close_reduce_only(bar.ts, out)
        # 4. clean-up: finished orders, IOC/FOK remainders, reduce-only on a flat book
        for cid, w in list(self.working.items()):
            w.bars += 1
            if w.remaining <= 0:
                del self.working[cid]
            elif w.order.time_in_force in ("IOC", "FOK"):
                out += self.cancel(cid, bar.ts, reason=f"{w.order.time_in_force}_EXPIRED")
        self._close_reduce_only(bar.ts, out)
        self.last_price = bar.close
        return out

    def _close_reduce_only(self, ts: float, out: list[OrderEvent]) -> None:
        for cid, w in list(self.working.items()):
            if not w.order.reduce_only or w.remaining <= 0:
                continue
            reducing = (self.position > 0 and w.order.side == "sell") or (self.position < 0 and w.order.side == "buy")
            if not reducing:
                out += self.cancel(cid, ts, reason="POSITION_CLOSED")

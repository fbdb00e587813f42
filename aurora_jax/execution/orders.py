"""Order requests and the events an exchange (or the paper broker) reports about them.

Field names follow ccxt's unified ``create_order(symbol, type, side, amount, price, params)``:
``params`` carries ``stopPrice``, ``timeInForce``, ``reduceOnly``, ``positionSide`` and
``clientOrderId``, which are first-class fields here.

Order types: ``market``, ``limit``, ``stop_market`` / ``stop_limit`` (trigger when the price
moves *through* the stop: a buy stop sits above the reference price, a sell stop below) and
``take_profit_market`` / ``take_profit_limit`` (the mirror: a sell take-profit sits above).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop_market", "stop_limit", "take_profit_market", "take_profit_limit")
STOP_TYPES = ("stop_market", "stop_limit")
TAKE_PROFIT_TYPES = ("take_profit_market", "take_profit_limit")
TRIGGER_TYPES = STOP_TYPES + TAKE_PROFIT_TYPES
LIMIT_PRICED = ("limit", "stop_limit", "take_profit_limit")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PO")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order as sent to an exchange (amount in base units, prices in quote units)."""

    symbol: str
    side: str
    type: str
    amount: float
    price: float | None = None
    stop_price: float | None = None
    time_in_force: str | None = None
    reduce_only: bool = False
    position_side: str | None = None  # one-way: None/"BOTH"; hedge: "LONG"/"SHORT"
    client_order_id: str | None = None

    def with_(self, **kw) -> OrderRequest:
        return replace(self, **kw)

    @property
    def sign(self) -> int:
        return 1 if self.side == "buy" else -1


class EventKind(IntEnum):
    """What an exchange reports about an order."""

    ACK = 0         # accepted / new
    FILL = 1        # a (partial) fill with its own trade id
    CANCEL = 2      # canceled (a partial fill may have preceded it)
    REJECT = 3      # refused
    STOP_AMEND = 4  # the trigger price of a stop was moved


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One exchange event. ``event_id`` is unique per event (trade id for fills)."""

    kind: EventKind
    client_order_id: str
    event_id: str
    ts: float
    qty: float = 0.0        # FILL: filled amount (base)
    price: float = 0.0      # FILL: fill price; STOP_AMEND: new trigger price
    fee: float = 0.0        # FILL: fee in quote
    reason: str = ""        # REJECT / CANCEL reason code

"""Order validation and auto-quantization against exchange filters in ccxt's market format.

A ccxt market (``exchange.markets[symbol]``) gives ``precision.price`` / ``precision.amount``
(a tick/step size under ``TICK_SIZE`` precision mode, a number of decimals under
``DECIMAL_PLACES``), ``limits.{amount,price,cost,market}.{min,max}`` and the raw exchange
filters in ``info.filters`` (Binance: ``PERCENT_PRICE`` / ``PERCENT_PRICE_BY_SIDE``) plus the
supported ``info.orderTypes`` / ``info.timeInForce``.

Checks (each failure is a :class:`RejectCode` naming the field):
price on the tick grid and within ``[min, max]``; amount on the step grid and within
``[min, max]`` (``limits.market`` for market orders); notional ``amount * price >=
limits.cost.min`` (market orders priced at the reference price, stop-market at the stop);
percent-price band ``ref * down <= price <= ref * up``; time-in-force allowed for the order
type (:data:`TIF_RULES`); hedge mode needs ``position_side`` LONG/SHORT and forbids
``reduce_only``, one-way mode needs ``position_side`` None/BOTH; trigger price on the correct
side of the reference price (buy stop above, sell stop below; take-profit mirrored).

Quantization moves values onto the grids in the direction that never worsens the order for
the trader: amounts floor to the step (never more exposure than asked), buy limit prices
floor and sell limit prices ceil to the tick (never a worse price), trigger prices round to
the nearest tick; a limit order without time-in-force gets GTC; optionally the amount is
raised to reach the minimum notional. Each change is reported with its reason code.
Decimal arithmetic avoids float grid errors (``0.1 + 0.2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.orders import (
    LIMIT_PRICED,
    ORDER_TYPES,
    SIDES,
    STOP_TYPES,
    TRIGGER_TYPES,
    OrderRequest,
)

PRECISION_MODES = ("tick_size", "decimal_places")
POSITION_MODES = ("one_way", "hedge")

# Allowed time-in-force per order type (Binance USD-M semantics; None = not sent).
TIF_RULES: dict[str, frozenset] = {
    "market": frozenset({None}),
    "limit": frozenset({"GTC", "IOC", "FOK", "PO"}),
    "stop_market": frozenset({None, "GTC"}),
    "take_profit_market": frozenset({None, "GTC"}),
    "stop_limit": frozenset({"GTC", "IOC", "FOK"}),
    "take_profit_limit": frozenset({"GTC", "IOC", "FOK"}),
}
_CCXT_TYPES = {  # exchange type names (info.orderTypes) of our order types
    "market": "MARKET", "limit": "LIMIT", "stop_market": "STOP_MARKET", "stop_limit": "STOP",
    "take_profit_market": "TAKE_PROFIT_MARKET", "take_profit_limit": "TAKE_PROFIT",
}
_TIF_EXCHANGE = {"GTC": "GTC", "IOC": "IOC", "FOK": "FOK", "PO": "GTX"}


class RejectCode(StrEnum):
    UNKNOWN_SIDE = "UNKNOWN_SIDE"
    UNKNOWN_ORDER_TYPE = "UNKNOWN_ORDER_TYPE"
    ORDER_TYPE_NOT_SUPPORTED = "ORDER_TYPE_NOT_SUPPORTED"
    AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
    AMOUNT_STEP = "AMOUNT_STEP"
    AMOUNT_BELOW_MIN = "AMOUNT_BELOW_MIN"
    AMOUNT_ABOVE_MAX = "AMOUNT_ABOVE_MAX"
    PRICE_MISSING = "PRICE_MISSING"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    PRICE_TICK = "PRICE_TICK"
    PRICE_BELOW_MIN = "PRICE_BELOW_MIN"
    PRICE_ABOVE_MAX = "PRICE_ABOVE_MAX"
    PRICE_PERCENT = "PRICE_PERCENT"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    TIF_INVALID = "TIF_INVALID"
    TIF_NOT_SUPPORTED = "TIF_NOT_SUPPORTED"
    STOP_PRICE_MISSING = "STOP_PRICE_MISSING"
    STOP_PRICE_TICK = "STOP_PRICE_TICK"
    STOP_PRICE_SIDE = "STOP_PRICE_SIDE"
    REDUCE_ONLY_HEDGE_MODE = "REDUCE_ONLY_HEDGE_MODE"
    POSITION_SIDE_INVALID = "POSITION_SIDE_INVALID"
    REFERENCE_PRICE_MISSING = "REFERENCE_PRICE_MISSING"


@dataclass(frozen=True)
class Rejection:
    code: RejectCode
    field: str
    message: str


@dataclass(frozen=True)
class Change:
    """One quantization change: ``field`` went from ``old`` to ``new`` because of ``code``."""

    field: str
    old: object
    new: object
    code: RejectCode
    reason: str


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _opt(v) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class ExchangeFilters:
    """The filters of one market (``None`` = no such limit)."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float | None
    max_qty: float | None
    market_min_qty: float | None
    market_max_qty: float | None
    min_price: float | None
    max_price: float | None
    min_notional: float | None
    percent_up: float | None = None
    percent_down: float | None = None
    order_types: frozenset | None = None    # exchange names, e.g. {"LIMIT", "MARKET", ...}
    time_in_force: frozenset | None = None  # exchange names, e.g. {"GTC", "IOC", "FOK", "GTX"}

    @classmethod
    def from_ccxt_market(cls, market: dict, precision_mode: str) -> ExchangeFilters:
        """Read a ccxt unified market structure."""
        if precision_mode not in PRECISION_MODES:
            raise InvalidParameterError("precision_mode", precision_mode, f"one of {PRECISION_MODES}")
        try:
            prec, limits = market["precision"], market.get("limits", {})
            symbol = market["symbol"]
        except (KeyError, TypeError) as exc:
            raise InvalidParameterError("market", type(market).__name__, "a ccxt market dict with symbol/precision/limits") from exc

        def grid(v, name):
            if v is None:
                raise InvalidParameterError(f"market.precision.{name}", v, "a tick size or decimal places")
            return float(v) if precision_mode == "tick_size" else float(Decimal(1).scaleb(-int(v)))

        def lim(group, key):
            return _opt((limits.get(group) or {}).get(key))

        info = market.get("info") or {}
        up = down = None
        for f in info.get("filters", []) or []:
            if f.get("filterType") == "PERCENT_PRICE":
                up, down = _opt(f.get("multiplierUp")), _opt(f.get("multiplierDown"))
            elif f.get("filterType") == "PERCENT_PRICE_BY_SIDE" and up is None:
                # the tighter of bid/ask bands (one band for both sides, conservative)
                ups = [_opt(f.get(k)) for k in ("bidMultiplierUp", "askMultiplierUp") if f.get(k) is not None]
                downs = [_opt(f.get(k)) for k in ("bidMultiplierDown", "askMultiplierDown") if f.get(k) is not None]
                up = min(ups) if ups else None
                down = max(downs) if downs else None
        ot = info.get("orderTypes")
        tif = info.get("timeInForce")
        return cls(
            symbol=symbol,
            tick_size=grid(prec.get("price"), "price"),
            step_size=grid(prec.get("amount"), "amount"),
            min_qty=lim("amount", "min"), max_qty=lim("amount", "max"),
            market_min_qty=lim("market", "min"), market_max_qty=lim("market", "max"),
            min_price=lim("price", "min"), max_price=lim("price", "max"),
            min_notional=lim("cost", "min"),
            percent_up=up, percent_down=down,
            order_types=frozenset(ot) if ot else None,
            time_in_force=frozenset(tif) if tif else None,
        )


def on_grid(x: float, step: float) -> bool:
    """``x`` is an integer multiple of ``step`` (exact decimal arithmetic)."""
    return _d(x) % _d(step) == 0


def to_grid(x: float, step: float, mode: str) -> float:
    """Round ``x`` to a multiple of ``step``: ``floor``, ``ceil`` or ``nearest``."""
    rounding = {"floor": ROUND_FLOOR, "ceil": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}[mode]
    q = (_d(x) / _d(step)).to_integral_value(rounding=rounding)
    return float(q * _d(step))


def _trigger_side_ok(order: OrderRequest, ref: float) -> bool:
    sp = order.stop_price
    if order.type in STOP_TYPES:
        return sp > ref if order.side == "buy" else sp < ref
    return sp < ref if order.side == "buy" else sp > ref  # take-profit


def _notional_price(order: OrderRequest, ref: float | None) -> float | None:
    if order.type in LIMIT_PRICED:
        return order.price
    if order.type in TRIGGER_TYPES:
        return order.stop_price
    return ref


def validate_order(
    order: OrderRequest, filters: ExchangeFilters, ref_price: float | None, position_mode: str
) -> list[Rejection]:
    """Every filter the order violates (empty list = valid). ``ref_price``: last/mark price."""
    if position_mode not in POSITION_MODES:
        raise InvalidParameterError("position_mode", position_mode, f"one of {POSITION_MODES}")
    out: list[Rejection] = []

    def rej(code, field, msg):
        out.append(Rejection(code, field, msg))

    if order.side not in SIDES:
        rej(RejectCode.UNKNOWN_SIDE, "side", f"side {order.side!r} not in {SIDES}")
    if order.type not in ORDER_TYPES:
        rej(RejectCode.UNKNOWN_ORDER_TYPE, "type", f"type {order.type!r} not in {ORDER_TYPES}")
        return out
    if filters.order_types is not None and _CCXT_TYPES[order.type] not in filters.order_types:
        rej(RejectCode.ORDER_TYPE_NOT_SUPPORTED, "type", f"{_CCXT_TYPES[order.type]} not in {sorted(filters.order_types)}")
    # amount
    a = order.amount
    if not a > 0:
        rej(RejectCode.AMOUNT_NOT_POSITIVE, "amount", f"amount {a} must be > 0")
    else:
        if not on_grid(a, filters.step_size):
            rej(RejectCode.AMOUNT_STEP, "amount", f"amount {a} not a multiple of step {filters.step_size}")
        is_mkt = order.type in ("market", "stop_market", "take_profit_market")
        lo = (filters.market_min_qty if is_mkt and filters.market_min_qty is not None else filters.min_qty)
        hi = (filters.market_max_qty if is_mkt and filters.market_max_qty is not None else filters.max_qty)
        if lo is not None and a < lo:
            rej(RejectCode.AMOUNT_BELOW_MIN, "amount", f"amount {a} < min {lo}")
        if hi is not None and a > hi:
            rej(RejectCode.AMOUNT_ABOVE_MAX, "amount", f"amount {a} > max {hi}")
    # limit price
    if order.type in LIMIT_PRICED:
        p = order.price
        if p is None:
            rej(RejectCode.PRICE_MISSING, "price", f"{order.type} needs a price")
        elif not p > 0:
            rej(RejectCode.PRICE_NOT_POSITIVE, "price", f"price {p} must be > 0")
        else:
            if not on_grid(p, filters.tick_size):
                rej(RejectCode.PRICE_TICK, "price", f"price {p} not a multiple of tick {filters.tick_size}")
            if filters.min_price is not None and p < filters.min_price:
                rej(RejectCode.PRICE_BELOW_MIN, "price", f"price {p} < min {filters.min_price}")
            if filters.max_price is not None and p > filters.max_price:
                rej(RejectCode.PRICE_ABOVE_MAX, "price", f"price {p} > max {filters.max_price}")
            if ref_price is not None and filters.percent_up is not None and filters.percent_down is not None:
                if not ref_price * filters.percent_down <= p <= ref_price * filters.percent_up:
                    rej(RejectCode.PRICE_PERCENT, "price",
                        f"price {p} outside [{ref_price * filters.percent_down:g}, {ref_price * filters.percent_up:g}] "
                        f"(reference {ref_price} x [{filters.percent_down}, {filters.percent_up}])")
    # trigger price
    if order.type in TRIGGER_TYPES:
        sp = order.stop_price
        if sp is None or not sp > 0:
            rej(RejectCode.STOP_PRICE_MISSING, "stop_price", f"{order.type} needs a stop price > 0")
        else:
            if not on_grid(sp, filters.tick_size):
                rej(RejectCode.STOP_PRICE_TICK, "stop_price", f"stop price {sp} not a multiple of tick {filters.tick_size}")
            if ref_price is None:
                rej(RejectCode.REFERENCE_PRICE_MISSING, "ref_price", "the trigger side check needs a reference price")
            elif not _trigger_side_ok(order, ref_price):
                want = ("above" if order.side == "buy" else "below") if order.type in STOP_TYPES else (
                    "below" if order.side == "buy" else "above")
                rej(RejectCode.STOP_PRICE_SIDE, "stop_price",
                    f"{order.side} {order.type} stop {sp} must be {want} the reference price {ref_price}")
    # notional
    if filters.min_notional is not None and order.amount > 0:
        px = _notional_price(order, ref_price)
        if px is None:
            rej(RejectCode.REFERENCE_PRICE_MISSING, "ref_price", "the min-notional check of a market order needs a reference price")
        elif px > 0 and order.amount * px < filters.min_notional:
            rej(RejectCode.MIN_NOTIONAL, "amount", f"notional {order.amount * px:g} < min {filters.min_notional}")
    # time in force
    if order.time_in_force not in TIF_RULES[order.type]:
        allowed = sorted(str(t) for t in TIF_RULES[order.type])
        rej(RejectCode.TIF_INVALID, "time_in_force", f"{order.time_in_force!r} not allowed for {order.type} (allowed {allowed})")
    elif (order.time_in_force is not None and filters.time_in_force is not None
          and _TIF_EXCHANGE[order.time_in_force] not in filters.time_in_force):
        rej(RejectCode.TIF_NOT_SUPPORTED, "time_in_force", f"{order.time_in_force} not in {sorted(filters.time_in_force)}")
    # position mode
    if position_mode == "hedge":
        if order.reduce_only:
            rej(RejectCode.REDUCE_ONLY_HEDGE_MODE, "reduce_only", "reduceOnly is not accepted in hedge mode (close with positionSide)")
        if order.position_side not in ("LONG", "SHORT"):
            rej(RejectCode.POSITION_SIDE_INVALID, "position_side", f"hedge mode needs LONG/SHORT, got {order.position_side!r}")
    elif order.position_side not in (None, "BOTH"):
        rej(RejectCode.POSITION_SIDE_INVALID, "position_side", f"one-way mode needs None/BOTH, got {order.position_side!r}")
    return out


@dataclass(frozen=True)
class QuantizeResult:
    order: OrderRequest
    changes: tuple[Change, ...]


def quantize_order(
    order: OrderRequest, filters: ExchangeFilters, ref_price: float | None, bump_to_min_notional: bool
) -> QuantizeResult:
    """Move the order onto the exchange grids (rules in the module docstring)."""
    changes: list[Change] = []
    kw: dict = {}
    if order.amount > 0 and not on_grid(order.amount, filters.step_size):
        new = to_grid(order.amount, filters.step_size, "floor")
        changes.append(Change("amount", order.amount, new, RejectCode.AMOUNT_STEP,
                              f"floored to the step {filters.step_size} (never more than asked)"))
        kw["amount"] = new
    if order.type in LIMIT_PRICED and order.price is not None and order.price > 0 and not on_grid(order.price, filters.tick_size):
        mode = "floor" if order.side == "buy" else "ceil"
        new = to_grid(order.price, filters.tick_size, mode)
        changes.append(Change("price", order.price, new, RejectCode.PRICE_TICK,
                              f"{mode} to the tick {filters.tick_size} (never a worse limit)"))
        kw["price"] = new
    if order.type in TRIGGER_TYPES and order.stop_price is not None and order.stop_price > 0 \
            and not on_grid(order.stop_price, filters.tick_size):
        new = to_grid(order.stop_price, filters.tick_size, "nearest")
        changes.append(Change("stop_price", order.stop_price, new, RejectCode.STOP_PRICE_TICK,
                              f"rounded to the nearest tick {filters.tick_size}"))
        kw["stop_price"] = new
    if order.type in ("limit", "stop_limit", "take_profit_limit") and order.time_in_force is None:
        changes.append(Change("time_in_force", None, "GTC", RejectCode.TIF_INVALID, f"{order.type} needs a time-in-force; GTC assumed"))
        kw["time_in_force"] = "GTC"
    out = order.with_(**kw) if kw else order
    if bump_to_min_notional and filters.min_notional is not None and out.amount > 0:
        px = _notional_price(out, ref_price)
        if px and out.amount * px < filters.min_notional:
            new = to_grid(filters.min_notional / px, filters.step_size, "ceil")
            changes.append(Change("amount", out.amount, new, RejectCode.MIN_NOTIONAL,
                                  f"raised to reach the min notional {filters.min_notional} at price {px}"))
            out = out.with_(amount=new)
    return QuantizeResult(out, tuple(changes))

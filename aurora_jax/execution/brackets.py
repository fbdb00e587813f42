"""Bracket orders: an entry, a protective stop, and take-profit legs; stop management.

Client order ids are deterministic, so a re-sent order is recognised by the exchange and by
the idempotency ledger::

    cid = f"{prefix}-{leg}{seq}-" + base32(sha256(trace_id | leg | seq | spec_hash | attempt))

cut to 36 characters (the Binance limit; characters ``[A-Za-z0-9-]``). ``spec_hash`` is the
SHA-256 of the canonical JSON of the :class:`BracketSpec`, so a changed spec gets new ids and
an unchanged one the same ids; ``attempt`` is bumped only for a deliberate re-submission
after a definitive rejection (network retries reuse the id).

Geometry (long; short mirrored): ``stop < reference < TP_1 < ... < TP_k``; TP amounts are
``fraction_j * amount`` floored to the step, the last TP taking the remainder, so the TPs
close exactly the entry amount. Protective legs are ``reduce_only`` in one-way mode and
carry ``position_side`` in hedge mode.

Stop management only ever tightens the stop (long: the stop never decreases):

* break-even after TP1: ``stop = max(stop, entry (1 + offset_bps / 1e4))``,
* ATR trailing: ``stop = max(stop, extreme - k ATR)`` with ``extreme`` the highest price
  since entry (short: ``min(stop, lowest + k ATR)``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.filters import ExchangeFilters, quantize_order, to_grid
from aurora_jax.execution.orders import OrderRequest

LEGS = {"entry": "E", "stop": "S", "take_profit": "T"}
MAX_CID_LEN = 36


@dataclass(frozen=True)
class BracketSpec:
    """What to trade: ``side`` is the entry side (buy = long bracket)."""

    trace_id: str
    symbol: str
    side: str
    amount: float
    entry_type: str
    entry_price: float | None
    stop_price: float
    take_profits: tuple[tuple[float, float], ...]  # (price, fraction of amount)

    def validate(self, ref_price: float) -> None:
        if self.side not in ("buy", "sell"):
            raise InvalidParameterError("side", self.side, "buy (long) or sell (short)")
        if self.entry_type not in ("market", "limit"):
            raise InvalidParameterError("entry_type", self.entry_type, "market or limit")
        if self.entry_type == "limit" and not (self.entry_price and self.entry_price > 0):
            raise InvalidParameterError("entry_price", self.entry_price, "> 0 for a limit entry")
        if not self.amount > 0:
            raise InvalidParameterError("amount", self.amount, "> 0")
        if not self.take_profits:
            raise InvalidParameterError("take_profits", self.take_profits, "at least one (price, fraction)")
        fr = [f for _, f in self.take_profits]
        if any(not 0 < f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-9:
            raise InvalidParameterError("take_profits", fr, "fractions in (0, 1] summing to 1")
        ref = self.entry_price if self.entry_type == "limit" else ref_price
        tps = [p for p, _ in self.take_profits]
        s = 1 if self.side == "buy" else -1
        if not s * (ref - self.stop_price) > 0:
            raise InvalidParameterError("stop_price", self.stop_price,
                                        f"{'below' if s > 0 else 'above'} the entry reference {ref}")
        if any(not s * (p - ref) > 0 for p in tps) or any(s * (b - a) <= 0 for a, b in itertools.pairwise(tps)):
            raise InvalidParameterError("take_profits", tps,
                                        f"strictly {'increasing above' if s > 0 else 'decreasing below'} the entry reference {ref}")


def spec_hash(spec: BracketSpec) -> str:
    """SHA-256 (hex) of the canonical JSON of the spec."""
    blob = json.dumps(asdict(spec), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def client_order_id(trace_id: str, leg: str, seq: int, spec_digest: str, attempt: int, prefix: str) -> str:
    """Deterministic id ``hash(trace_id, leg, seq, spec, attempt)`` (module docstring)."""
    if leg not in LEGS:
        raise InvalidParameterError("leg", leg, f"one of {list(LEGS)}")
    if seq < 0 or attempt < 0:
        raise InvalidParameterError("seq/attempt", (seq, attempt), ">= 0")
    if not prefix.isalnum() or len(prefix) > 8:
        raise InvalidParameterError("client_id_prefix", prefix, "1-8 alphanumeric characters")
    h = hashlib.sha256(f"{trace_id}|{leg}|{seq}|{spec_digest}|{attempt}".encode()).digest()
    head = f"{prefix}-{LEGS[leg]}{seq}-"
    body = base64.b32encode(h).decode().rstrip("=").lower()
    return head + body[: MAX_CID_LEN - len(head)]


@dataclass(frozen=True)
class Bracket:
    spec: BracketSpec
    spec_hash: str
    attempt: int
    entry: OrderRequest
    stop: OrderRequest
    take_profits: tuple[OrderRequest, ...]

    @property
    def orders(self) -> tuple[OrderRequest, ...]:
        return (self.entry, self.stop, *self.take_profits)


def build_bracket(
    spec: BracketSpec,
    filters: ExchangeFilters,
    ref_price: float,
    attempt: int,
    prefix: str,
    position_mode: str,
) -> Bracket:
    """Entry + stop + take-profit orders with deterministic ids, quantized to the filters."""
    spec.validate(ref_price)
    digest = spec_hash(spec)
    exit_side = "sell" if spec.side == "buy" else "buy"
    hedge = position_mode == "hedge"
    pside = ("LONG" if spec.side == "buy" else "SHORT") if hedge else None
    cid = lambda leg, seq: client_order_id(spec.trace_id, leg, seq, digest, attempt, prefix)
    amount = to_grid(spec.amount, filters.step_size, "floor")
    if amount <= 0:
        raise InvalidParameterError("amount", spec.amount, f">= one step ({filters.step_size})")
    entry = OrderRequest(
        spec.symbol, spec.side, spec.entry_type, amount,
        price=spec.entry_price if spec.entry_type == "limit" else None,
        time_in_force="GTC" if spec.entry_type == "limit" else None,
        position_side=pside, client_order_id=cid("entry", 0),
    )
    stop = OrderRequest(spec.symbol, exit_side, "stop_market", amount, stop_price=spec.stop_price,
                        reduce_only=not hedge, position_side=pside, client_order_id=cid("stop", 0))
    tps = []
    left = amount
    for j, (px, frac) in enumerate(spec.take_profits):
        last = j == len(spec.take_profits) - 1
        qty = left if last else min(left, to_grid(amount * frac, filters.step_size, "floor"))
        left = to_grid(left - qty, filters.step_size, "nearest")
        if qty <= 0:
            continue
        tps.append(OrderRequest(spec.symbol, exit_side, "take_profit_limit", qty, price=px, stop_price=px,
                                time_in_force="GTC", reduce_only=not hedge, position_side=pside,
                                client_order_id=cid("take_profit", j)))
    q = lambda o: quantize_order(o, filters, ref_price, bump_to_min_notional=False).order
    return Bracket(spec, digest, attempt, q(entry), q(stop), tuple(q(o) for o in tps))


def break_even_stop(side: str, entry_price: float, current_stop: float, offset_bps: float) -> float:
    """Stop after TP1: entry +/- offset, but never looser than the current stop."""
    if side == "buy":
        return max(current_stop, entry_price * (1 + offset_bps / 1e4))
    return min(current_stop, entry_price * (1 - offset_bps / 1e4))


def atr_trailing_stop(side: str, current_stop: float, extreme: float, atr: float, k: float) -> float:
    """Chandelier stop ``extreme -/+ k ATR`` that only ever tightens."""
    if atr < 0 or k <= 0:
        raise InvalidParameterError("atr/atr_multiplier", (atr, k), "atr >= 0, k > 0")
    if side == "buy":
        return max(current_stop, extreme - k * atr)
    return min(current_stop, extreme + k * atr)


@dataclass(frozen=True)
class TrailingStop:
    """Trailing-stop state of one position: ``update`` with each bar's high/low and ATR."""

    side: str
    stop: float
    extreme: float
    k: float

    def update(self, high: float, low: float, atr: float) -> TrailingStop:
        ext = max(self.extreme, high) if self.side == "buy" else min(self.extreme, low)
        return TrailingStop(self.side, atr_trailing_stop(self.side, self.stop, ext, atr, self.k), ext, self.k)

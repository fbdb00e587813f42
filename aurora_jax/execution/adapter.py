"""Exchange-adapter interface, and a resilient wrapper: rate limit, retries, circuit breaker.

:class:`ExchangeAdapter` is what the trading loop talks to (``place_order``,
``cancel_order``, ``fetch_order``, all answering with :class:`OrderEvent` lists).
:class:`PaperExchangeAdapter` puts the :class:`PaperBroker` behind it.

:class:`ResilientAdapter` wraps any adapter:

* every call takes a token from a token bucket (``rate_per_s``, ``burst``) -- the
  ``TokenBucket`` of ``aurora_jax.data.connectors.ratelimit``;
* a transient failure (``TimeoutError``, ``ConnectionError``) is retried up to
  ``max_attempts`` calls in all, waiting ``Uniform(0, min(cap, base 2^k))`` before retry
  ``k`` (full jitter, ``aurora_jax.data.connectors.retry.backoff_delay``);
* a retried ``place_order`` re-sends the *same* client order id; if the exchange answers
  :class:`DuplicateOrderError` (the first attempt did arrive), the order is fetched instead
  of placed twice;
* ``circuit_failures`` consecutive timeouts open the circuit: calls fail fast with
  :class:`CircuitOpenError` without touching the exchange until ``circuit_reset_s`` have
  passed; then one trial call is let through (half-open) -- success closes the circuit, a
  timeout opens it again.

Definitive answers (rejections) are events, not exceptions, and are never retried.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from aurora_jax.data.connectors.ratelimit import TokenBucket
from aurora_jax.data.connectors.retry import backoff_delay
from aurora_jax.errors import AuroraError, InvalidParameterError
from aurora_jax.execution.orders import OrderEvent, OrderRequest
from aurora_jax.execution.paper_broker import PaperBroker


class CircuitOpenError(AuroraError):
    """The exchange circuit is open after repeated timeouts; retry after ``retry_in_s``."""

    status = 503

    def __init__(self, retry_in_s: float):
        self.retry_in_s = retry_in_s
        super().__init__(f"exchange circuit open after repeated timeouts; retry in {retry_in_s:.1f} s")


class ExchangeUnavailableError(AuroraError):
    """A call failed with transient errors on every attempt."""

    status = 503

    def __init__(self, operation: str, attempts: int, last: BaseException):
        self.operation, self.attempts, self.last = operation, attempts, last
        super().__init__(f"{operation} failed after {attempts} attempts: {type(last).__name__}: {last}")


class DuplicateOrderError(Exception):
    """Raised by an adapter when the client order id is already known to the exchange."""

    def __init__(self, client_order_id: str):
        self.client_order_id = client_order_id
        super().__init__(f"duplicate clientOrderId {client_order_id}")


class ExchangeAdapter(abc.ABC):
    """What the trading loop needs from an exchange."""

    @abc.abstractmethod
    def place_order(self, order: OrderRequest) -> list[OrderEvent]: ...

    @abc.abstractmethod
    def cancel_order(self, client_order_id: str) -> list[OrderEvent]: ...

    @abc.abstractmethod
    def fetch_order(self, client_order_id: str) -> list[OrderEvent]: ...


class PaperExchangeAdapter(ExchangeAdapter):
    """The paper broker behind the adapter interface (``clock`` stamps the events)."""

    def __init__(self, broker: PaperBroker, clock: Callable[[], float] = time.time):
        self.broker, self.clock = broker, clock
        self._events: dict[str, list[OrderEvent]] = {}

    def _log(self, events: list[OrderEvent]) -> list[OrderEvent]:
        for e in events:
            log = self._events.setdefault(e.client_order_id, [])
            if all(x.event_id != e.event_id for x in log):
                log.append(e)
        return events

    def place_order(self, order: OrderRequest) -> list[OrderEvent]:
        return self._log(self.broker.submit(order, self.clock()))

    def cancel_order(self, client_order_id: str) -> list[OrderEvent]:
        return self._log(self.broker.cancel(client_order_id, self.clock()))

    def fetch_order(self, client_order_id: str) -> list[OrderEvent]:
        return list(self._events.get(client_order_id, []))

    def record(self, events: list[OrderEvent]) -> list[OrderEvent]:
        """Log events produced by the broker's bar processing (fills, cancels)."""
        return self._log(events)


@dataclass(frozen=True)
class AdapterConfig:
    """``cfg.execution.adapter``."""

    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    rate_per_s: float
    burst: int
    circuit_failures: int
    circuit_reset_s: float

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidParameterError("adapter.max_attempts", self.max_attempts, ">= 1")
        if not 0 <= self.backoff_base_s <= self.backoff_cap_s:
            raise InvalidParameterError("adapter.backoff_base_s", self.backoff_base_s, f"in [0, backoff_cap_s = {self.backoff_cap_s}]")
        if self.circuit_failures < 1 or self.circuit_reset_s <= 0:
            raise InvalidParameterError("adapter.circuit_failures", self.circuit_failures, ">= 1 (and circuit_reset_s > 0)")

    @classmethod
    def from_cfg(cls, c) -> AdapterConfig:
        return cls(int(c.max_attempts), float(c.backoff_base_s), float(c.backoff_cap_s),
                   float(c.rate_per_s), int(c.burst), int(c.circuit_failures), float(c.circuit_reset_s))


class CircuitState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Circuit:
    """Consecutive-timeout circuit breaker (see module docstring)."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float]):
        self.failures, self.reset_s, self.clock = failures, reset_s, clock
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go through now."""
        if self.state == CircuitState.OPEN:
            waited = self.clock() - self.opened_at
            if waited < self.reset_s:
                raise CircuitOpenError(self.reset_s - waited)
            self.state = CircuitState.HALF_OPEN

    def success(self) -> None:
        self.state, self.consecutive = CircuitState.CLOSED, 0

    def timeout(self) -> None:
        self.consecutive += 1
        if self.state == CircuitState.HALF_OPEN or self.consecutive >= self.failures:
            self.state, self.opened_at = CircuitState.OPEN, self.clock()


class ResilientAdapter(ExchangeAdapter):
    """Rate-limited, retrying, circuit-protected wrapper of another adapter."""

    def __init__(
        self,
        inner: ExchangeAdapter,
        cfg: AdapterConfig,
        rng: np.random.Generator,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.inner, self.cfg, self.rng, self.sleep = inner, cfg, rng, sleep
        self.bucket = TokenBucket(cfg.rate_per_s, cfg.burst, clock=clock, sleep=sleep)
        self.circuit = Circuit(cfg.circuit_failures, cfg.circuit_reset_s, clock)
        self.retries = 0
        self.delays: list[float] = []

    def _call(self, op: str, fn: Callable[[], list[OrderEvent]],
              on_duplicate: Callable[[], list[OrderEvent]] | None = None) -> list[OrderEvent]:
        last: BaseException | None = None
        for attempt in range(self.cfg.max_attempts):
            self.circuit.check()
            self.bucket.acquire()
            try:
                out = fn()
            except DuplicateOrderError:
                self.circuit.success()
                if on_duplicate is None:
                    raise
                return on_duplicate()
            except TimeoutError as exc:
                self.circuit.timeout()
                last = exc
            except ConnectionError as exc:
                last = exc
            else:
                self.circuit.success()
                return out
            if attempt + 1 < self.cfg.max_attempts:
                d = backoff_delay(attempt, self.cfg.backoff_base_s, self.cfg.backoff_cap_s, "full", self.rng)
                self.delays.append(d)
                self.retries += 1
                self.sleep(d)
        raise ExchangeUnavailableError(op, self.cfg.max_attempts, last)

    def place_order(self, order: OrderRequest) -> list[OrderEvent]:
        if not order.client_order_id:
            raise InvalidParameterError("client_order_id", order.client_order_id, "set before sending (idempotent retries)")
        cid = order.client_order_id
        return self._call("place_order", lambda: self.inner.place_order(order),
                          on_duplicate=lambda: self.inner.fetch_order(cid))

    def cancel_order(self, client_order_id: str) -> list[OrderEvent]:
        return self._call("cancel_order", lambda: self.inner.cancel_order(client_order_id))

    def fetch_order(self, client_order_id: str) -> list[OrderEvent]:
        return self._call("fetch_order", lambda: self.inner.fetch_order(client_order_id))

"""Exchange adapter with injected faults: retries with jittered backoff, the same client id on
every retry, a token bucket, and a circuit that opens after repeated timeouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aurora_jax.execution.adapter import (
    AdapterConfig,
    CircuitOpenError,
    CircuitState,
    DuplicateOrderError,
    ExchangeAdapter,
    ExchangeUnavailableError,
    PaperExchangeAdapter,
    ResilientAdapter,
)
from aurora_jax.execution.orders import EventKind, OrderEvent, OrderRequest
from aurora_jax.execution.paper_broker import Bar, PaperBroker, PaperBrokerConfig


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


class FaultyExchange(ExchangeAdapter):
    """Fails according to a script of outcomes: 'timeout', 'conn', 'dup', or 'ok'."""

    def __init__(self, script):
        self.script = list(script)
        self.calls: list[tuple[str, str]] = []
        self.placed: dict[str, OrderEvent] = {}

    def _next(self, op, cid):
        self.calls.append((op, cid))
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome == "timeout":
            raise TimeoutError("read timed out")
        if outcome == "conn":
            raise ConnectionResetError("reset by peer")
        if outcome == "dup":
            self.placed.setdefault(cid, OrderEvent(EventKind.ACK, cid, f"ack-{cid}", 0.0))
            raise DuplicateOrderError(cid)

    def place_order(self, order):
        self._next("place", order.client_order_id)
        ev = self.placed.setdefault(order.client_order_id, OrderEvent(EventKind.ACK, order.client_order_id,
                                                                      f"ack-{order.client_order_id}", 0.0))
        return [ev]

    def cancel_order(self, cid):
        self._next("cancel", cid)
        return [OrderEvent(EventKind.CANCEL, cid, f"c-{cid}", 0.0)]

    def fetch_order(self, cid):
        self._next("fetch", cid)
        return [self.placed[cid]] if cid in self.placed else []


@pytest.fixture
def acfg(exec_cfg):
    return AdapterConfig.from_cfg(exec_cfg.adapter)


def make(script, cfg, seed=0):
    clock = FakeClock()
    inner = FaultyExchange(script)
    return ResilientAdapter(inner, cfg, np.random.default_rng(seed), clock=clock, sleep=clock.sleep), inner, clock


ORDER = OrderRequest("BTC/USDT:USDT", "buy", "market", 0.01, client_order_id="aj-E0-xyz")


def test_transient_failures_are_retried_with_the_same_client_id(acfg):
    ad, inner, clock = make(["timeout", "conn"], acfg)
    ev = ad.place_order(ORDER)
    assert ev[0].kind == EventKind.ACK and ad.retries == 2
    assert [c for c in inner.calls] == [("place", "aj-E0-xyz")] * 3
    # full jitter: delay k ~ Uniform(0, min(cap, base 2^k))
    for k, d in enumerate(ad.delays):
        assert 0 <= d <= min(acfg.backoff_cap_s, acfg.backoff_base_s * 2 ** k)
    assert clock.sleeps[: len(ad.delays)] == ad.delays
    assert ad.circuit.state == CircuitState.CLOSED and ad.circuit.consecutive == 0


def test_jitter_spreads_the_delays(acfg):
    first_delays = []
    for seed in range(40):
        ad, _, _ = make(["timeout"], acfg, seed=seed)
        ad.place_order(ORDER)
        first_delays.append(ad.delays[0])
    assert np.std(first_delays) > 0.2 * acfg.backoff_base_s / np.sqrt(12) * 2  # not a fixed delay
    assert max(first_delays) <= acfg.backoff_base_s


def test_duplicate_after_a_lost_answer_fetches_instead_of_placing_twice(acfg):
    ad, inner, _ = make(["timeout", "dup"], acfg)
    ev = ad.place_order(ORDER)
    assert ev[0].event_id == "ack-aj-E0-xyz"
    assert [op for op, _ in inner.calls] == ["place", "place", "fetch"]


def test_gives_up_after_max_attempts(acfg):
    cfg = dataclasses.replace(acfg, circuit_failures=100)
    ad, inner, _ = make(["conn"] * 50, cfg)
    with pytest.raises(ExchangeUnavailableError, match=f"after {cfg.max_attempts} attempts"):
        ad.cancel_order("c1")
    assert len(inner.calls) == cfg.max_attempts and ad.retries == cfg.max_attempts - 1


def test_circuit_opens_after_repeated_timeouts_and_half_opens(acfg):
    ad, inner, clock = make(["timeout"] * 100, acfg)
    with pytest.raises(CircuitOpenError):
        ad.place_order(ORDER)  # circuit_failures timeouts open the circuit mid-retry: stop retrying
    assert ad.circuit.state == CircuitState.OPEN
    n_calls = len(inner.calls)
    assert n_calls == acfg.circuit_failures
    with pytest.raises(CircuitOpenError) as exc:
        ad.fetch_order("aj-E0-xyz")
    assert len(inner.calls) == n_calls  # fails fast without touching the exchange
    assert 0 < exc.value.retry_in_s <= acfg.circuit_reset_s
    clock.t += acfg.circuit_reset_s
    inner.script = ["timeout"]
    with pytest.raises(CircuitOpenError):  # the half-open trial timed out: open again
        ad.fetch_order("aj-E0-xyz")
    assert len(inner.calls) == n_calls + 1 and ad.circuit.state == CircuitState.OPEN
    clock.t += acfg.circuit_reset_s
    inner.script = []
    ad.place_order(ORDER)  # trial succeeds: closed
    assert ad.circuit.state == CircuitState.CLOSED


def test_connection_errors_do_not_open_the_circuit(acfg):
    ad, _, _ = make(["conn"] * (acfg.max_attempts - 1), acfg)
    ad.place_order(ORDER)
    assert ad.circuit.state == CircuitState.CLOSED


def test_token_bucket_limits_the_rate(acfg):
    cfg = dataclasses.replace(acfg, rate_per_s=5.0, burst=2)
    ad, _, clock = make([], cfg)
    for k in range(12):
        ad.fetch_order(f"c{k}")
    # at most burst + rate * T calls in any window T: 12 calls need >= (12 - 2) / 5 = 2 s
    assert clock.t == pytest.approx((12 - 2) / 5.0)


def test_paper_exchange_behind_the_adapter(acfg, exec_cfg):
    clock = FakeClock()
    broker = PaperBroker(PaperBrokerConfig.from_cfg(exec_cfg.paper_broker))
    paper = PaperExchangeAdapter(broker, clock=clock)
    ad = ResilientAdapter(paper, acfg, np.random.default_rng(0), clock=clock, sleep=clock.sleep)
    ack = ad.place_order(ORDER)
    assert ad.place_order(ORDER) == ack  # idempotent re-send
    fills = paper.record(broker.on_bar(Bar(1.0, 100.0, 101.0, 99.0, 100.0)))
    assert fills[0].kind == EventKind.FILL
    assert [e.kind for e in ad.fetch_order(ORDER.client_order_id)] == [EventKind.ACK, EventKind.FILL]

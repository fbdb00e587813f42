"""The SQLite idempotency ledger: one creator per client id (also across threads and
restarts), forward-only statuses, restart reconciliation list."""

from __future__ import annotations

import threading

import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.ledger import OrderLedger


def test_reserve_is_idempotent_and_persistent(tmp_path, exec_cfg):
    path = tmp_path / "ledger.sqlite"
    led = OrderLedger(path, exec_cfg.ledger.busy_timeout_ms)
    rec, created = led.reserve("aj-E0-abc", "trace1", "entry", 0, {"amount": 0.01}, now=1.0)
    assert created and rec.status == "RESERVED"
    again, created2 = led.reserve("aj-E0-abc", "trace1", "entry", 0, {"amount": 999}, now=2.0)
    assert not created2 and again.payload == {"amount": 0.01}  # the first intent wins
    led.advance("aj-E0-abc", "SENT")
    led.advance("aj-E0-abc", "ACKED", exchange_order_id="123")
    led.close()
    reopened = OrderLedger(path, exec_cfg.ledger.busy_timeout_ms)  # a restarted process
    r = reopened.get("aj-E0-abc")
    assert r.status == "ACKED" and r.exchange_order_id == "123"
    _, created3 = reopened.reserve("aj-E0-abc", "trace1", "entry", 0, {})
    assert not created3
    assert [x.client_order_id for x in reopened.unfinished()] == ["aj-E0-abc"]


def test_statuses_only_move_forward(tmp_path, exec_cfg):
    led = OrderLedger(tmp_path / "l.sqlite", exec_cfg.ledger.busy_timeout_ms)
    led.reserve("c1", "t", "stop", 0, {})
    led.advance("c1", "FILLED")
    assert led.advance("c1", "ACKED").status == "FILLED"       # a late ACK replay is ignored
    assert led.advance("c1", "CANCELED").status == "FILLED"    # final states are final
    assert led.unfinished() == []
    with pytest.raises(InvalidParameterError, match="status"):
        led.advance("c1", "DONE")
    with pytest.raises(InvalidParameterError, match="client_order_id"):
        led.advance("nope", "SENT")


def test_concurrent_reservations_have_exactly_one_winner(tmp_path, exec_cfg):
    led = OrderLedger(tmp_path / "c.sqlite", exec_cfg.ledger.busy_timeout_ms)
    wins = []
    barrier = threading.Barrier(8)

    def worker(k):
        barrier.wait()
        for j in range(20):
            _, created = led.reserve(f"cid-{j}", "t", "entry", 0, {"worker": k})
            if created:
                wins.append((j, k))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for j, _ in wins) == list(range(20))  # each id created exactly once
    assert len(led.by_trace("t")) == 20

"""Idempotency ledger of orders in SQLite (WAL mode).

Before an order is sent, :meth:`OrderLedger.reserve` inserts its client order id with
``INSERT OR IGNORE`` inside a transaction: the first caller gets ``created=True`` and sends
the order; any later caller with the same id (a retry, a restarted process, a second worker)
gets the existing row and does not send again. Statuses move forward only
(``RESERVED -> SENT -> ACKED -> FILLED|CANCELED|REJECTED``); an out-of-order update to an
earlier status is ignored, so replays are harmless. :meth:`unfinished` lists the orders
to reconcile with the exchange after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aurora_jax.errors import InvalidParameterError

STATUSES = ("RESERVED", "SENT", "ACKED", "FILLED", "CANCELED", "REJECTED")
_RANK = {s: i for i, s in enumerate(STATUSES)}
FINAL = ("FILLED", "CANCELED", "REJECTED")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    exchange_order_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_trace ON orders(trace_id);
CREATE INDEX IF NOT EXISTS orders_rank ON orders(status_rank);
"""


@dataclass(frozen=True)
class LedgerRecord:
    client_order_id: str
    trace_id: str
    leg: str
    attempt: int
    payload: dict
    status: str
    exchange_order_id: str | None
    created_at: float
    updated_at: float


class OrderLedger:
    """SQLite-backed ledger; safe to share between threads (one connection per thread)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._local = threading.local()
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    @staticmethod
    def _row(r) -> LedgerRecord:
        return LedgerRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[7], r[8], r[9])

    def reserve(
        self, client_order_id: str, trace_id: str, leg: str, attempt: int, payload: dict,
        now: float | None = None,
    ) -> tuple[LedgerRecord, bool]:
        """Insert the order if new; returns the stored record and whether this call created it."""
        if not client_order_id:
            raise InvalidParameterError("client_order_id", client_order_id, "non-empty string")
        now = time.time() if now is None else now
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            cur = c.execute(
                "INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,?,?)",
                (client_order_id, trace_id, leg, attempt, json.dumps(payload, sort_keys=True, default=str),
                 "RESERVED", 0, None, now, now),
            )
            created = cur.rowcount == 1
            row = c.execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return self._row(row), created

    def advance(
        self, client_order_id: str, status: str, exchange_order_id: str | None = None,
        now: float | None = None,
    ) -> LedgerRecord:
        """Move the order forward to ``status`` (ignored if it is already at or past it)."""
        if status not in _RANK:
            raise InvalidParameterError("status", status, f"one of {STATUSES}")
        now = time.time() if now is None else now
        c = self._conn()
        c.execute(
            "UPDATE orders SET status=?, status_rank=?, updated_at=?, "
            "exchange_order_id=COALESCE(exchange_order_id, ?) "
            "WHERE client_order_id=? AND status_rank < ? AND status NOT IN ('FILLED','CANCELED','REJECTED')",
            (status, _RANK[status], now, exchange_order_id, client_order_id, _RANK[status]),
        )
        rec = self.get(client_order_id)
        if rec is None:
            raise InvalidParameterError("client_order_id", client_order_id, "an id reserved in the ledger")
        return rec

    def get(self, client_order_id: str) -> LedgerRecord | None:
        r = self._conn().execute("SELECT * FROM orders WHERE client_order_id=?", (client_order_id,)).fetchone()
        return None if r is None else self._row(r)

    def by_trace(self, trace_id: str) -> list[LedgerRecord]:
        rows = self._conn().execute(
            "SELECT * FROM orders WHERE trace_id=? ORDER BY created_at, client_order_id", (trace_id,)
        ).fetchall()
        return [self._row(r) for r in rows]

    def unfinished(self) -> list[LedgerRecord]:
        """Orders not yet FILLED/CANCELED/REJECTED (to reconcile after a restart)."""
        rows = self._conn().execute(
            "SELECT * FROM orders WHERE status NOT IN ('FILLED','CANCELED','REJECTED') ORDER BY created_at"
        ).fetchall()
        return [self._row(r) for r in rows]

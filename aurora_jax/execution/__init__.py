"""Execution: order/event types (orders), exchange-filter validation (filters), bracket orders
(brackets), the SQLite idempotency ledger (ledger), the position FSM (position), the paper
broker (paper_broker) and the resilient exchange adapter (adapter)."""

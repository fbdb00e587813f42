"""Evaluation: proper scores, the forecaster protocol, peers, the walk-forward harness, metrics,
Diebold–Mariano tests, reports and the TVF transfer check (``just eval``)."""

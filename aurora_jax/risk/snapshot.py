"""Atomic snapshots of the risk state (acceptance FSM + breakers) and restore on restart.

The file is one JSON document ``{"version", "saved_at", "acceptance", "breakers", "extra"}``
written with :func:`aurora_jax.atomic.atomic_write_json` (temp file, fsync, rename), so a
crash leaves either the previous or the new snapshot, never a torn one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from aurora_jax.atomic import atomic_write_json
from aurora_jax.errors import AuroraError, InvalidParameterError
from aurora_jax.risk.acceptance import AcceptanceState
from aurora_jax.risk.breakers import BreakerState

SNAPSHOT_VERSION = 1


class SnapshotError(AuroraError):
    """A snapshot exists but cannot be read (corrupt or from an unknown version)."""

    status = 500

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class RiskState:
    acceptance: AcceptanceState = field(default_factory=AcceptanceState)
    breakers: BreakerState = field(default_factory=BreakerState)
    extra: dict = field(default_factory=dict)  # e.g. equity peak, last bar time


def save_snapshot(path: str | Path, state: RiskState, now: dt.datetime | None = None) -> Path:
    """Write the state atomically."""
    now = now or dt.datetime.now(dt.UTC)
    return atomic_write_json(path, {
        "version": SNAPSHOT_VERSION,
        "saved_at": now.isoformat(),
        "acceptance": state.acceptance.to_dict(),
        "breakers": state.breakers.to_dict(),
        "extra": state.extra,
    })


def load_snapshot(path: str | Path) -> RiskState:
    """Restore the state; a missing file gives the initial state (PASS, no breakers)."""
    path = Path(path)
    if not path.exists():
        return RiskState()
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(path, f"unreadable snapshot: {exc}") from exc
    if doc.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(path, f"version {doc.get('version')!r}, expected {SNAPSHOT_VERSION}")
    try:
        return RiskState(AcceptanceState.from_dict(doc["acceptance"]),
                         BreakerState.from_dict(doc["breakers"]), dict(doc.get("extra", {})))
    except (KeyError, TypeError, ValueError, InvalidParameterError) as exc:
        raise SnapshotError(path, f"malformed snapshot: {exc}") from exc

"""One structured JSON log line per request.

Fields: ``ts`` (UTC), ``request_id``, ``route``, ``status``, ``outcome`` (ok | client_error |
server_error), ``latency_ms`` and, for forecasts, ``asset_id``, ``as_of``, ``input_hash`` (the
snapshot the forecast was built from), ``model_version``, ``calibration_version``, ``horizon``,
``num_paths`` and the P5/P50/P95 at the last step (``p05``/``p50``/``p95``); errors add
``error`` and ``detail``. Lines go to stderr, or are appended to ``serving.log.path``.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec


def outcome_of(status: int) -> str:
    return "ok" if status < 400 else ("client_error" if status < 500 else "server_error")


class RequestLog:
    def __init__(self, path: str | Path | None = None, stream: IO[str] | None = None):
        self.path = Path(path) if path else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = stream
        self._lock = threading.Lock()
        self._enc = msgspec.json.Encoder()

    def write(self, **fields) -> dict:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
        line = self._enc.encode(record).decode() + "\n"
        with self._lock:
            if self.path is not None:
                with open(self.path, "a") as fh:
                    fh.write(line)
            else:
                stream = self._stream or sys.stderr
                stream.write(line)
                stream.flush()
        return record

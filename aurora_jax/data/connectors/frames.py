"""What a connector returns: the store's long frame, the gaps it found, and request counts.

Long format (accepted by ``MarketStore.ingest_frame``): ``asset_id, timestamp, feature_group,
feature_name, value, source`` with ``timestamp`` tz-aware UTC = when the value became
observable (a bar's close = open time + interval; a funding event's ``fundingTime``).

Gaps: the values expected on a regular grid (``step``) between the requested start and end that
did not come back. They are reported, never filled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aurora_jax.data.connectors.http import ClientStats
from aurora_jax.errors import InvalidParameterError

LONG_FRAME_COLUMNS: tuple[str, ...] = (
    "asset_id", "timestamp", "feature_group", "feature_name", "value", "source",
)
TIMESTAMP_DTYPE = "datetime64[us, UTC]"


def to_ms(value: object, field_name: str) -> int:
    """Milliseconds since the epoch of a number (already epoch ms), a datetime/Timestamp or an
    ISO string (naive = UTC)."""
    if isinstance(value, bool):
        raise InvalidParameterError(field_name, value, "a timestamp (ms int, datetime or ISO str)")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):  # pandas would read a float as nanoseconds
        if not (np.isfinite(value) and float(value).is_integer()):
            raise InvalidParameterError(field_name, value, "a whole number of epoch ms")
        return int(value)
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            field_name, value, "a timestamp (ms int, datetime or ISO str)", str(exc)) from None
    if ts is pd.NaT:
        raise InvalidParameterError(field_name, value, "a timestamp, not NaT")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def ms_to_timestamp(ms: int) -> pd.Timestamp:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")


def now_ms(now: object | None) -> int:
    """``now`` as epoch ms; ``None`` is the current wall-clock time."""
    if now is None:
        return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return to_ms(now, "now")


@dataclass(frozen=True)
class Gap:
    """A run of ``count`` consecutive missing values: the timestamps they would have carried
    are ``first``, ``first + step``, ..., ``last`` (the frame's timestamp convention)."""

    first: pd.Timestamp
    last: pd.Timestamp
    count: int


@dataclass(frozen=True)
class FetchResult:
    """A connector's answer: the long ``frame``, the ``gaps`` found, and counters
    (``requests`` = HTTP attempts including retries, ``pages`` = successful pages)."""

    frame: pd.DataFrame
    gaps: tuple[Gap, ...]
    requests: int
    retries: int
    pages: int
    source: str
    backoff_s: float = 0.0
    dropped_incomplete: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        """True when no expected value is missing."""
        return not self.gaps

    @property
    def missing(self) -> int:
        return sum(g.count for g in self.gaps)


def find_gaps(
    present_ms: Sequence[int] | np.ndarray, first_ms: int, last_ms: int, step_ms: int,
    *, stamp_offset_ms: int = 0, tolerance_ms: int = 0,
) -> tuple[Gap, ...]:
    """Missing slots of the epoch-aligned grid ``k * step_ms`` inside ``[first_ms, last_ms]``.

    A slot counts as present when some time in ``present_ms`` lies within ``tolerance_ms`` of
    it. Gaps are reported with ``stamp_offset_ms`` added (a bar's slot is its open time, its
    timestamp the close).
    """
    if step_ms <= 0:
        raise ValueError(f"step_ms={step_ms} must be > 0")
    lo = -(-first_ms // step_ms)  # ceil
    hi = last_ms // step_ms
    if hi < lo:
        return ()
    slots = np.arange(lo, hi + 1, dtype=np.int64)
    have = np.zeros(slots.size, dtype=bool)
    t = np.asarray(present_ms, dtype=np.int64)
    if t.size:
        k = np.rint(t / step_ms).astype(np.int64)
        on_grid = np.abs(t - k * step_ms) <= tolerance_ms
        k = k[on_grid & (k >= lo) & (k <= hi)]
        have[k - lo] = True
    missing = np.flatnonzero(~have)
    if missing.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(missing) > 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [missing.size - 1]])
    gaps = []
    for a, b in zip(starts, ends, strict=True):
        s0 = int(slots[missing[a]]) * step_ms + stamp_offset_ms
        s1 = int(slots[missing[b]]) * step_ms + stamp_offset_ms
        gaps.append(Gap(ms_to_timestamp(s0), ms_to_timestamp(s1), int(b - a + 1)))
    return tuple(gaps)


def long_frame(
    asset_id: str, stamps_ms: np.ndarray, columns: Mapping[str, np.ndarray],
    groups: Mapping[str, str], source: str,
) -> pd.DataFrame:
    """One long block per feature (``columns``: feature name -> values aligned with
    ``stamps_ms``), concatenated in the order given, each block in time order."""
    ts = pd.to_datetime(np.asarray(stamps_ms, dtype=np.int64), unit="ms", utc=True)
    ts = pd.DatetimeIndex(ts).astype(TIMESTAMP_DTYPE)
    parts = [
        pd.DataFrame({
            "asset_id": asset_id,
            "timestamp": ts,
            "feature_group": groups[name],
            "feature_name": name,
            "value": np.asarray(values, dtype=np.float64),
            "source": source,
        })
        for name, values in columns.items()
    ]
    if not parts or len(stamps_ms) == 0:
        return empty_long_frame()
    return pd.concat(parts, ignore_index=True)


def empty_long_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "asset_id": pd.Series([], dtype="str"),
        "timestamp": pd.Series([], dtype=TIMESTAMP_DTYPE),
        "feature_group": pd.Series([], dtype="str"),
        "feature_name": pd.Series([], dtype="str"),
        "value": pd.Series([], dtype=np.float64),
        "source": pd.Series([], dtype="str"),
    })


def resolve_asset(
    key: str, aliases: Mapping[str, str] | None, asset_id: str | None, field_name: str,
) -> str:
    """``asset_id`` if given, else ``aliases[key]`` (the ``data.asset_aliases`` map)."""
    if asset_id is not None:
        if not isinstance(asset_id, str) or not asset_id:
            raise InvalidParameterError("asset_id", asset_id, "a non-empty string")
        return asset_id
    aliases = aliases or {}
    if key in aliases:
        return str(aliases[key])
    raise InvalidParameterError(
        field_name, key, f"a key of the alias map {sorted(aliases)} (data.asset_aliases), "
                         "or pass asset_id explicitly")


def check_request(
    symbol: str, start: object, end: object, aliases: Mapping[str, str] | None,
    asset_id: str | None,
) -> tuple[str, int, int]:
    """Validate a request: the asset id it maps to and ``start``/``end`` in epoch ms."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidParameterError("symbol", symbol, "a non-empty exchange symbol")
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if end_ms < start_ms:
        raise InvalidParameterError("end", end, f">= start ({start})")
    return resolve_asset(symbol, aliases, asset_id, "symbol"), start_ms, end_ms


def dedupe_in_range(t: np.ndarray, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique times within ``[start_ms, end_ms]`` and the indices that pick them
    (first occurrence wins)."""
    if t.size == 0:
        return t, np.zeros(0, dtype=np.int64)
    uniq, first = np.unique(t, return_index=True)
    inside = (uniq >= start_ms) & (uniq <= end_ms)
    return uniq[inside], first[inside]


def snapshot_stats(stats: ClientStats) -> ClientStats:
    """A copy of the client's counters, to report one fetch's share of them."""
    return ClientStats(stats.requests, stats.retries, stats.backoff_s)


def make_result(
    frame: pd.DataFrame, gaps: tuple[Gap, ...], stats: ClientStats, before: ClientStats,
    pages: int, source: str, dropped: int,
) -> FetchResult:
    """The result of one fetch: counters are the client's increase since ``before``."""
    return FetchResult(
        frame=frame, gaps=gaps, requests=stats.requests - before.requests,
        retries=stats.retries - before.retries, pages=pages, source=source,
        backoff_s=stats.backoff_s - before.backoff_s, dropped_incomplete=dropped,
    )

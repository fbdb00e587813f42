"""Retry policy: which answers are retried, how long to wait, and ``Retry-After`` parsing.

Retried: HTTP 429 (rate limited), 418 (Binance IP ban after ignoring 429s), every 5xx, and
transport failures (timeouts, refused/reset connections, truncated or invalid JSON). Any other
4xx is the caller's fault and is never retried.

Exponential backoff with full jitter: before retry ``k`` (0-based) wait
``d_k ~ Uniform(0, b_k)`` with ``b_k = min(cap, base * 2**k)``; with jitter ``"none"``,
``d_k = b_k``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Callable

import numpy as np

RETRYABLE_4XX: frozenset[int] = frozenset({418, 429})


def is_retryable_status(status: int) -> bool:
    """True for 429, 418 and every 5xx."""
    return status in RETRYABLE_4XX or 500 <= status <= 599


def backoff_bound(attempt: int, base_s: float, cap_s: float) -> float:
    """``min(cap, base * 2**attempt)``, the largest delay before retry ``attempt``."""
    if attempt < 0:
        raise ValueError(f"attempt={attempt} must be >= 0")
    # 2**attempt overflows float for huge attempts; the cap is reached long before
    exp = min(attempt, 1023)
    return float(min(cap_s, base_s * math.ldexp(1.0, exp)))


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, jitter: str, rng: np.random.Generator
) -> float:
    """Delay before retry ``attempt``: ``Uniform(0, bound)`` (full jitter) or ``bound``."""
    bound = backoff_bound(attempt, base_s, cap_s)
    if jitter == "none":
        return bound
    if jitter == "full":
        return float(rng.uniform(0.0, bound))
    raise ValueError(f"jitter={jitter!r}: allowed 'full' or 'none'")


def parse_retry_after(
    value: str | None, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    ``None`` when the header is absent or unparseable; negative waits become 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)

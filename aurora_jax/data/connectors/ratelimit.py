"""Token-bucket rate limiter with an injectable clock and sleep.

The bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; a request
takes one token, waiting ``(1 - tokens) / rate`` seconds when fewer than one is left. Hence in
any window of length ``T`` at most ``burst + rate * T`` requests start.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aurora_jax.errors import InvalidParameterError

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class TokenBucket:
    """``acquire()`` blocks (through ``sleep``) until a token is available and returns the
    ``clock()`` time at which the token was taken."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not rate_per_s > 0:
            raise InvalidParameterError("rate_limit_per_s", rate_per_s, "> 0")
        if not (isinstance(burst, int) and burst >= 1):
            raise InvalidParameterError("rate_limit_burst", burst, "an integer >= 1")
        self.rate = float(rate_per_s)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self.waited_s = 0.0

    def _refill(self, now: float) -> None:
        if now > self._last:  # a clock that reads earlier than the last refill credits nothing
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def acquire(self) -> float:
        self._refill(self._clock())
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / self.rate
            self.waited_s += wait
            self._sleep(wait)
            # credit exactly the time waited, even when the clock is too coarse to show it
            # (re-checking the clock in a loop could spin forever on a float that stops moving)
            self._refill(max(self._clock(), self._last + wait))
            self._tokens = max(self._tokens, 1.0)
        self._tokens -= 1.0
        return self._last

"""The generic batcher: coalescing, bucket padding, per-request error isolation, timeouts,
slow requests not stalling others, and a full queue."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.batcher import Batcher, BatchTimeoutError, OverloadedError, next_bucket


class Recorder:
    """batch_fn that squares numbers, records every call, and fails on request."""

    def __init__(self, delay_s: float = 0.0):
        self.calls: list[list] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            self.calls.append(list(items))
        if any(i == "poison" for i in items):
            raise RuntimeError("the whole batch fails")
        if any(i == "slow" for i in items):
            time.sleep(1.0)
        time.sleep(self.delay_s)
        return [ValueError(f"bad item {i}") if i == "bad" else (i * i if isinstance(i, int) else i) for i in items]


def run(coro):
    return asyncio.run(coro)


def test_next_bucket():
    assert [next_bucket(n, [1, 4, 8]) for n in (1, 2, 4, 5, 8)] == [1, 4, 4, 8, 8]
    with pytest.raises(ValueError):
        next_bucket(9, [1, 4, 8])


def test_concurrent_requests_are_coalesced_and_padded():
    rec = Recorder()

    async def main():
        b = Batcher(rec, window_ms=30, buckets=[1, 4, 8, 16], timeout_s=5)
        await b.start()
        out = await asyncio.gather(*(b.submit(i) for i in range(11)))
        await b.stop()
        return out, b

    out, b = run(main())
    assert out == [i * i for i in range(11)]           # each caller gets its own result
    assert len(rec.calls) == 1 and len(rec.calls[0]) == 16  # one call, padded 11 -> 16
    assert rec.calls[0][11:] == [10] * 5                # padding repeats the last request
    assert b.stats.items == 11 and b.stats.padded_items == 5


def test_no_padding_when_disabled_and_chunks_at_largest_bucket():
    rec = Recorder()

    async def main():
        b = Batcher(rec, window_ms=30, buckets=[1, 2, 4], timeout_s=5, pad=False, workers=1)
        await b.start()
        out = await asyncio.gather(*(b.submit(i) for i in range(7)))
        await b.stop()
        return out

    assert run(main()) == [i * i for i in range(7)]
    assert all(len(c) <= 4 for c in rec.calls) and sum(len(c) for c in rec.calls) == 7


def test_errors_stay_with_their_request():
    rec = Recorder()

    async def main():
        b = Batcher(rec, window_ms=30, buckets=[1, 8], timeout_s=5)
        await b.start()
        res = await asyncio.gather(b.submit(2), b.submit("bad"), b.submit(3), b.submit("poison"), b.submit(4),
                                   return_exceptions=True)
        await b.stop()
        return res, b

    res, b = run(main())
    assert res[0] == 4 and res[2] == 9 and res[4] == 16
    assert isinstance(res[1], ValueError) and "bad item" in str(res[1])
    assert isinstance(res[3], RuntimeError)             # only the poisoned request fails
    assert b.stats.isolated_retries == 5                # the crashed batch was retried item by item


def test_slow_request_times_out_without_stalling_others():
    rec = Recorder()

    async def main():
        b = Batcher(rec, window_ms=5, buckets=[1, 8], timeout_s=5, workers=2,
                    key=lambda i: "slow" if i == "slow" else "fast")
        await b.start()
        t0 = time.perf_counter()
        slow = asyncio.create_task(b.submit("slow", timeout_s=0.3))
        await asyncio.sleep(0.02)                       # the slow batch is running now
        fast = await asyncio.gather(*(b.submit(i) for i in range(5)))
        fast_done = time.perf_counter() - t0
        with pytest.raises(BatchTimeoutError, match="0.3 s"):
            await slow
        await b.stop()
        return fast, fast_done, b

    fast, fast_done, b = run(main())
    assert fast == [0, 1, 4, 9, 16]
    assert fast_done < 0.9                              # did not wait for the 1 s batch
    assert b.stats.timeouts == 1


def test_full_queue_is_refused():
    rec = Recorder(delay_s=0.3)

    async def main():
        b = Batcher(rec, window_ms=0, buckets=[1], timeout_s=5, workers=1, max_queue=2)
        await b.start()
        accepted, refused = [], 0
        for i in range(6):                              # the worker is busy for 0.3 s per item
            task = asyncio.create_task(b.submit(i))
            await asyncio.sleep(0.005)
            if task.done() and isinstance(task.exception(), OverloadedError):
                refused += 1
            else:
                accepted.append((i, task))
        res = await asyncio.gather(*(t for _, t in accepted))
        await b.stop()
        return accepted, res, refused

    accepted, res, refused = run(main())
    assert refused >= 1                                 # 6 arrivals, 1 running + 1 collected + 2 queued
    assert len(accepted) <= 4 and res == [i * i for i, _ in accepted]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=4))
def test_batch_fn_only_sees_bucket_sizes(waves):
    """Whatever the arrival pattern, a padded batch_fn sees only the configured shapes."""
    rec = Recorder()
    buckets = [1, 2, 4, 8]

    async def main():
        b = Batcher(rec, window_ms=2, buckets=buckets, timeout_s=5, workers=2)
        await b.start()
        results = []
        for n in waves:
            results.append(await asyncio.gather(*(b.submit(i) for i in range(n))))
        await b.stop()
        return results

    results = run(main())
    assert all(len(c) in buckets for c in rec.calls)
    assert results == [[i * i for i in range(n)] for n in waves]

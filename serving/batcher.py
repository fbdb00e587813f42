"""Request coalescing: concurrent submissions become one ``batch_fn(list_of_requests)`` call.

The collector takes the first waiting request, then keeps collecting for ``window_ms`` (or until
the largest bucket is full). The collected requests are split by ``key(request)`` (requests that
can share one call: same static shapes, same cost class), each group is cut into chunks of at
most ``max(buckets)`` and, when ``pad`` is on, padded to the next bucket size by repeating its
last request, so a jit-compiled ``batch_fn`` only ever sees ``len(buckets)`` batch shapes.

Each chunk runs in a worker thread (``workers`` at a time). ``batch_fn`` returns one result or
one exception per request; if it raises as a whole, every request of the chunk is retried alone,
so one bad request fails only itself. Every submission waits at most ``timeout_s``; a request
whose batch is slower gets :class:`BatchTimeoutError` while the batch goes on for the others,
and requests whose caller gave up are dropped before their batch starts.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aurora_jax.errors import InvalidParameterError, ModelUnavailableError

T = TypeVar("T")
R = TypeVar("R")


class BatchTimeoutError(ModelUnavailableError):
    """The request's batch did not finish within the timeout (HTTP 503)."""


class OverloadedError(ModelUnavailableError):
    """The queue is full (HTTP 503)."""


@dataclass
class BatchStats:
    """What the batcher has done (read by ``/metrics`` and the tests)."""

    batches: int = 0
    items: int = 0
    padded_items: int = 0
    isolated_retries: int = 0
    timeouts: int = 0
    dropped: int = 0
    sizes: list[int] = field(default_factory=list)  # real items per call, most recent last (bounded)


@dataclass
class _Entry(Generic[T]):
    item: T
    future: asyncio.Future
    enqueued: float


def next_bucket(n: int, buckets: Sequence[int]) -> int:
    """Smallest bucket ``>= n`` (``n <= max(buckets)``)."""
    i = bisect.bisect_left(buckets, n)
    if i == len(buckets):
        raise InvalidParameterError("batch size", n, f"<= {buckets[-1]} (largest bucket)")
    return buckets[i]


class Batcher(Generic[T, R]):
    """See the module docstring. Start it inside the event loop that will submit to it."""

    def __init__(
        self,
        batch_fn: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        window_ms: float,
        buckets: Sequence[int],
        timeout_s: float,
        workers: int = 1,
        max_queue: int = 1024,
        pad: bool = True,
        key: Callable[[T], Hashable] | None = None,
        on_batch: Callable[[int, int, float], None] | None = None,
        name: str = "batcher",
    ):
        buckets = sorted({int(b) for b in buckets})
        if not buckets or buckets[0] < 1:
            raise InvalidParameterError("batch.buckets", list(buckets), "a non-empty list of integers >= 1")
        if window_ms < 0:
            raise InvalidParameterError("batch.window_ms", window_ms, ">= 0")
        if timeout_s <= 0:
            raise InvalidParameterError("batch.timeout_s", timeout_s, "> 0")
        if workers < 1 or max_queue < 1:
            raise InvalidParameterError("batch.workers/max_queue", (workers, max_queue), ">= 1")
        self.batch_fn = batch_fn
        self.window_s = float(window_ms) / 1e3
        self.buckets = buckets
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.max_queue = int(max_queue)
        self.pad = bool(pad)
        self.key = key or (lambda _item: None)
        self.on_batch = on_batch
        self.name = name
        self.stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._queue: asyncio.Queue[_Entry[T]] | None = None
        self._collector: asyncio.Task | None = None
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._running: set[asyncio.Task] = set()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._collector is not None and not self._collector.done()

    async def start(self) -> None:
        if self.started:
            return
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._slots = asyncio.Semaphore(self.workers)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
        self._collector = asyncio.create_task(self._collect(), name=f"{self.name}-collector")

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            try:
                await self._collector
            except asyncio.CancelledError:
                pass
            self._collector = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._queue is not None:
            while not self._queue.empty():
                entry = self._queue.get_nowait()
                if not entry.future.done():
                    entry.future.set_exception(ModelUnavailableError("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- submitting -------------------------------------------------------------------------------
    async def submit(self, item: T, timeout_s: float | None = None) -> R:
        """The result for ``item``; raises its exception, or :class:`BatchTimeoutError`."""
        if not self.started or self._queue is None:
            raise ModelUnavailableError(f"{self.name} is not running")
        fut = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Entry(item, fut, time.perf_counter()))
        except asyncio.QueueFull:
            raise OverloadedError(f"{self.name}: {self.max_queue} requests already queued") from None
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            self.stats.timeouts += 1
            fut.cancel()  # dropped if its batch has not started yet
            raise BatchTimeoutError(f"the forecast did not finish within {limit:g} s") from None
        except asyncio.CancelledError:
            fut.cancel()
            raise

    # -- collecting and running -------------------------------------------------------------------
    async def _collect(self) -> None:
        assert self._queue is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        max_bucket = self.buckets[-1]
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.window_s
            while len(batch) < max_bucket:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            groups: dict[Hashable, list[_Entry[T]]] = {}
            for entry in batch:
                if entry.future.done():  # the caller gave up while queued
                    self.stats.dropped += 1
                    continue
                groups.setdefault(self._safe_key(entry), []).append(entry)
            for entries in groups.values():
                for i in range(0, len(entries), max_bucket):
                    chunk = entries[i:i + max_bucket]
                    await self._slots.acquire()
                    task = asyncio.create_task(self._run(chunk))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)

    def _safe_key(self, entry: _Entry[T]) -> Hashable:
        try:
            return self.key(entry.item)
        except Exception:  # noqa: BLE001 - a request the key function cannot classify runs alone
            return ("__unkeyed__", id(entry))

    async def _run(self, chunk: list[_Entry[T]]) -> None:
        assert self._slots is not None
        try:
            live = [e for e in chunk if not e.future.done()]
            self.stats.dropped += len(chunk) - len(live)
            if not live:
                return
            items = [e.item for e in live]
            t0 = time.perf_counter()
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._call, items)
            elapsed = time.perf_counter() - t0
            for entry, res in zip(live, results):
                if entry.future.done():
                    continue
                if isinstance(res, BaseException):
                    entry.future.set_exception(res)
                else:
                    entry.future.set_result(res)
            if self.on_batch is not None:
                self.on_batch(len(live), self._padded_size(len(live)), elapsed)
        except BaseException as exc:  # never leave a caller waiting on a crashed batch
            for entry in chunk:
                if not entry.future.done():
                    entry.future.set_exception(ModelUnavailableError(f"batch failed: {exc!r}"))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._slots.release()

    def _padded_size(self, n: int) -> int:
        return next_bucket(n, self.buckets) if self.pad else n

    def _call(self, items: list[T]) -> list[R | BaseException]:
        """Runs in a worker thread: one padded call, or one call per item if that one raised."""
        n = len(items)
        size = self._padded_size(n)
        padded = items + [items[-1]] * (size - n)
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.items += n
            self.stats.padded_items += size - n
            self.stats.sizes.append(n)
            del self.stats.sizes[:-1000]
        try:
            out = list(self.batch_fn(padded))
            if len(out) != size:
                raise RuntimeError(f"batch_fn returned {len(out)} results for {size} requests")
            return out[:n]
        except Exception as whole:  # noqa: BLE001 - isolated below
            if n == 1:
                return [whole]
        results: list[R | BaseException] = []
        for item in items:  # isolate: each request alone (padded to the smallest bucket)
            with self._stats_lock:
                self.stats.isolated_retries += 1
            alone = [item] * self._padded_size(1)
            try:
                res = list(self.batch_fn(alone))
                results.append(res[0] if res else RuntimeError("batch_fn returned no result"))
            except Exception as exc:  # noqa: BLE001 - this request's own error
                results.append(exc)
        return results

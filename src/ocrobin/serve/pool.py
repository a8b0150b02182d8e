"""A bounded pool of model runs with a bounded waiting queue, and the per-request time limit.

A request takes a place when it arrives, before its body is read, and keeps it until its work has ended,
so at most ``workers + queue`` bodies and pages are held at once; past that it gets 503 with
``Retry-After`` at once instead of piling up memory. A request over the time limit gets 504: work still
waiting for a thread is cancelled, work already running is told to stop at its next stage (see
:mod:`.page`) and its result is dropped. Its place is given back only when its thread is free again, so
abandoned work can never pile up beyond the pool.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .errors import ApiError

T = TypeVar("T")

#: Weight of the latest run in the running mean of run times (what ``Retry-After`` is made from).
_MEAN_WEIGHT = 0.2


class Slot:
    """One admitted request's place in the pool.

    Attributes:
        cancelled: set when the request is over (answered, timed out or gone); work checks it between
            stages and stops early.
        admitted: ``time.perf_counter()`` at admission.
    """

    def __init__(self, pool: RunPool) -> None:
        self._pool = pool
        self._future: Future | None = None
        self._released = False
        self.cancelled = threading.Event()
        self.admitted = time.perf_counter()

    async def run(self, fn: Callable[[threading.Event], T]) -> T:
        """Run ``fn(cancelled)`` in a pool thread (waiting for one if all are busy) and return its result.

        Raises:
            RuntimeError: a slot runs one piece of work.
        """
        if self._future is not None:
            raise RuntimeError("a slot runs one piece of work")
        self._future = self._pool._submit(fn, self.cancelled)
        return await asyncio.wrap_future(self._future)

    def _release(self) -> None:
        with self._pool._lock:
            if self._released:
                return
            self._released = True
            self._pool._busy -= 1

    def _leave(self) -> None:
        """Give the place back now, or when the work's thread is done with it."""
        self.cancelled.set()
        if self._future is None:
            self._release()
        else:
            self._future.cancel()  # succeeds only while it waits for a thread
            self._future.add_done_callback(lambda _: self._release())


class RunPool:
    """``workers`` threads running model work, ``queue`` more requests waiting, and a time limit.

    Args:
        workers: threads, i.e. model runs at the same time.
        queue: admitted requests beyond the running ones.
        timeout: seconds from admission to answer.
    """

    def __init__(self, workers: int, queue: int, timeout: float) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ocrobin-serve")
        self._lock = threading.Lock()
        self._busy = 0
        self._mean_seconds = 1.0

    @property
    def busy(self) -> int:
        """Requests holding a place: running, waiting, or abandoned but still running."""
        return self._busy

    def retry_after(self) -> int:
        """Seconds to suggest in ``Retry-After``: about one run's time, when the first place frees."""
        return max(1, math.ceil(self._mean_seconds))

    def _admit(self) -> Slot:
        with self._lock:
            if self._busy >= self.capacity:
                raise ApiError(503, f"busy: {self.capacity} requests running or waiting; retry later",
                               {"Retry-After": str(self.retry_after())})
            self._busy += 1
        return Slot(self)

    def _submit(self, fn: Callable[[threading.Event], T], cancelled: threading.Event) -> Future:
        def timed() -> T:
            t0 = time.perf_counter()
            try:
                return fn(cancelled)
            finally:
                dt = time.perf_counter() - t0
                self._mean_seconds += _MEAN_WEIGHT * (dt - self._mean_seconds)

        return self._executor.submit(timed)

    async def handle(self, work: Callable[[Slot], Awaitable[T]]) -> T:
        """Admit a request and run ``work(slot)`` under the time limit.

        Raises:
            ApiError: 503 (with ``Retry-After``) when every place is taken, 504 past the time limit; and
                whatever ``work`` raises.
        """
        slot = self._admit()
        try:
            return await asyncio.wait_for(work(slot), self.timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than {self.timeout:g} s; it was cancelled") from None
        finally:
            slot._leave()

    def close(self) -> None:
        """Stop taking work; waiting work is cancelled, running work finishes in its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)

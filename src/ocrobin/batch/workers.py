"""Worker processes: decoding, the model and encoding of several pages at once, in input order.

Each worker process (forked from a server that imported this code once, see :mod:`ocrobin.runtime`)
loads the model once and runs whole pages (read → model → encode → write), so the
decoding and writing of one page overlap the model of another and every core is busy. Tasks are handed
out a few at a time (never the whole list at once, so claims are made just before a page starts) and
their results come back in input order. With one worker everything runs in this process.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..infer import DEFAULT_OVERLAP, Binarizer
from ..runtime import cpu_count, worker_context

#: Results of later items a slow item may keep waiting, per worker.
BUFFERED = 16
#: Seconds between looks at the workers when no task has ended meanwhile.
POLL = 1.0

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BinarizerSpec:
    """How to build a binarizer, so that worker processes can each build their own.

    Attributes mirror :class:`ocrobin.infer.Binarizer`; ``backend`` is ``torch`` or ``onnxruntime``.
    """

    model: str | None = None
    device: str = "cpu"
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    threads: int | None = None
    polarity: str = "auto"
    tta: bool = False
    precision: str = "fp32"
    backend: str = "torch"
    resize: float = 1.0

    def build(self) -> Binarizer:
        """The binarizer (raises :class:`ocrobin.exceptions.ModelError` when the model cannot be loaded)."""
        if self.backend == "onnxruntime":
            from ..onnx import OnnxBinarizer

            b: Binarizer = OnnxBinarizer(self.model, threads=self.threads, tile=self.tile, overlap=self.overlap)
            b.polarity, b.tta, b.resize = self.polarity, self.tta, self.resize
            return b
        return Binarizer(self.model, device=self.device, tile=self.tile, overlap=self.overlap, threads=self.threads,
                         polarity=self.polarity, tta=self.tta, precision=self.precision, resize=self.resize)


def default_workers(device: str = "cpu") -> int:
    """Workers when none are asked for: one per CPU up to 4 (one on a GPU, which batches by itself)."""
    return 1 if device != "cpu" else max(1, min(4, cpu_count()))


_WORKER: dict[str, Any] = {}


def _init(spec: BinarizerSpec) -> None:
    import torch

    from ..runtime import release_freed_memory

    release_freed_memory()
    torch.set_num_threads(spec.threads or 1)
    _WORKER["binarizer"] = spec.build()


def _call(fn: Callable[[Binarizer, Any], Any], item: Any) -> Any:
    return fn(_WORKER["binarizer"], item)


class Runner:
    """Runs ``fn(binarizer, item)`` over items, in this process or in worker processes, results in order.

    Args:
        binarizer: used when there is one worker (and built from ``spec`` when None).
        spec: how worker processes build theirs (required with ``workers`` > 1).
        workers: processes; 1 runs everything here.
    """

    def __init__(self, binarizer: Binarizer | None, spec: BinarizerSpec | None = None, workers: int = 1) -> None:
        self.workers = max(1, workers)
        if self.workers > 1 and spec is None:
            raise ValueError("worker processes need a BinarizerSpec")
        self.spec = spec
        self._binarizer = binarizer
        self._pool: Any = None
        self._pending = 0  # tasks handed out whose results have not been taken

    @property
    def binarizer(self) -> Binarizer:
        if self._binarizer is None:
            assert self.spec is not None
            self._binarizer = self.spec.build()
        return self._binarizer

    def _start(self) -> Any:
        if self._pool is None:
            ctx = worker_context()  # forked from a clean server (torch's thread pools do not survive a fork)
            self._pool = ctx.Pool(self.workers, initializer=_init, initargs=(self.spec,))
        return self._pool

    def map(self, fn: Callable[[Binarizer, T], R], items: Iterable[T],
            window: int | None = None) -> Iterator[tuple[T, R]]:
        """(item, result) pairs in item order; at most ``window`` items (default 2 per worker) run or wait
        in the workers at once.

        ``items`` is read lazily: an item is taken only when a worker is about to get it. A slow item does
        not hold the others up: while it runs, the other workers go on with later items and their results
        wait here (at most :data:`BUFFERED` per worker) until it is done.
        """
        if self.workers == 1:
            for item in items:
                yield item, fn(self.binarizer, item)
            return
        pool = self._start()
        out: deque[tuple[T, Any, int]] = deque()
        it = iter(items)
        limit = window or 2 * self.workers
        cap = max(limit, BUFFERED * self.workers)
        wake = threading.Event()  # set by the pool's result thread whenever a task ends
        # Tasks that have ended, by number. The pool's result thread runs a task's callback before it marks
        # the task ready, so ``ready()`` can still be False right after the wake-up: relying on it alone left
        # a finished result waiting for the next wake-up or the timeout (a second at the end of every run).
        ended: set[int] = set()

        def on_end(k: int) -> Callable[[object], None]:
            def note(_: object) -> None:
                ended.add(k)
                wake.set()

            return note

        exhausted = False
        n = 0
        while True:
            wake.clear()
            while not exhausted and len(out) < cap and sum(k not in ended for _, _, k in out) < limit:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                note = on_end(n)
                out.append((item, pool.apply_async(_call, (fn, item), callback=note, error_callback=note), n))
                n += 1
                self._pending += 1
            if not out:
                return
            if out[0][2] in ended:
                item, res, k = out.popleft()
                ended.discard(k)
                self._pending -= 1
                yield item, res.get()  # waits only for the pool to mark it ready, just after its callback
            else:
                wake.wait(POLL)

    def close(self, abort: bool = False) -> None:
        """Stop the worker processes (``abort``: at once, dropping what they do).

        Once every result has come back the workers hold nothing, so they are stopped at once either way
        instead of each tearing down torch (a third of a second at the end of a run).
        """
        if self._pool is not None:
            if abort or not self._pending:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(abort=exc_type is not None)

"""Worker processes: decoding, the model and encoding of several pages at once, in input order.

Each worker process loads the model once and runs whole pages (read → model → encode → write), so the
decoding and writing of one page overlap the model of another and every core is busy. Tasks are handed
out a few at a time (never the whole list at once, so claims are made just before a page starts) and
their results come back in input order. With one worker everything runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..infer import DEFAULT_OVERLAP, Binarizer

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

    def build(self) -> Binarizer:
        """The binarizer (raises :class:`ocrobin.exceptions.ModelError` when the model cannot be loaded)."""
        if self.backend == "onnxruntime":
            from ..onnx import OnnxBinarizer

            b: Binarizer = OnnxBinarizer(self.model, threads=self.threads, tile=self.tile, overlap=self.overlap)
            b.polarity, b.tta = self.polarity, self.tta
            return b
        return Binarizer(self.model, device=self.device, tile=self.tile, overlap=self.overlap, threads=self.threads,
                         polarity=self.polarity, tta=self.tta, precision=self.precision)


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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

    @property
    def binarizer(self) -> Binarizer:
        if self._binarizer is None:
            assert self.spec is not None
            self._binarizer = self.spec.build()
        return self._binarizer

    def _start(self) -> Any:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # torch's thread pools do not survive a fork
            self._pool = ctx.Pool(self.workers, initializer=_init, initargs=(self.spec,))
        return self._pool

    def map(self, fn: Callable[[Binarizer, T], R], items: Iterable[T],
            window: int | None = None) -> Iterator[tuple[T, R]]:
        """(item, result) pairs in item order; at most ``window`` items (default 2 per worker) are out at once.

        ``items`` is read lazily: an item is taken only when a worker is about to get it.
        """
        if self.workers == 1:
            for item in items:
                yield item, fn(self.binarizer, item)
            return
        pool = self._start()
        out: deque[tuple[T, Any]] = deque()
        it = iter(items)
        limit = window or 2 * self.workers
        exhausted = False
        while True:
            while not exhausted and len(out) < limit:
                try:
                    item = next(it)
                except StopIteration:
                    exhausted = True
                    break
                out.append((item, pool.apply_async(_call, (fn, item))))
            if not out:
                return
            item, res = out.popleft()
            yield item, res.get()

    def close(self, abort: bool = False) -> None:
        """Stop the worker processes (``abort``: at once, dropping what they do)."""
        if self._pool is not None:
            if abort:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(abort=exc_type is not None)

"""Process-wide settings for long batch runs: memory freed by a page goes back to the system, and worker
processes that start without importing everything again.

glibc's malloc serves large blocks with ``mmap`` and returns them on ``free`` — until a large block has
been freed, after which it raises its threshold (up to 32 MiB) and keeps later blocks of that size in its
heap, which it seldom gives back. A huge page's buffers are such blocks, so the resident size of a run
would creep up by a page's worth of memory or more. Fixing the threshold at 4 MiB keeps page-sized
buffers mapped (returned the moment they are freed) while a tile's smaller blocks are reused from the
heap (mapping and unmapping those costs a third more time per page, measured on 2–10 MP pages), and
``malloc_trim`` between pages hands back what a page left in the heap.

Worker processes are forked from a *fork server*, a process that has imported torch and the batch code
once and never ran a torch operation (forking a process whose thread pools have started is unsafe, which
is why they are not forked from this one). Spawned workers would each import torch afresh, about a second
per process after this one has done the same; workers forked from a server started as the command begins
are ready when this process is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import sys
from typing import Any

#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mapped and unmapped on their own (``OCROBIN_MMAP_THRESHOLD`` in bytes
#: overrides it; 0 leaves glibc's own adaptive threshold: memory then grows with a run's pages).
MMAP_THRESHOLD = 4 << 20

_done = False
_trim: Any = None


def _glibc() -> Any:
    """The C library when it is glibc on Linux (``mallopt`` and ``malloc_trim`` exist), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> bool:
    """Fix glibc's mmap threshold (once per process); False where the C library is not glibc."""
    global _done
    if _done:
        return True
    threshold = int(os.environ.get("OCROBIN_MMAP_THRESHOLD", MMAP_THRESHOLD))
    libc = _glibc() if threshold > 0 else None
    _done = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    return _done


def trim_freed_memory() -> None:
    """Give the pages of freed heap blocks back to the system (``malloc_trim``): called between pages.

    Blocks under the mmap threshold stay in the heap once freed, and the next page, of another size,
    cannot always reuse them; without this a long run's memory creeps up page by page.
    """
    global _trim
    if _trim is None:
        libc = _glibc()
        _trim = libc.malloc_trim if libc is not None else False
    if _trim:
        _trim(0)


#: What the fork server imports before it forks workers: everything a worker runs on every page. (SciPy,
#: which only pages with light-on-dark regions need, is left to the worker that meets one: importing it
#: first would hold every run's first page up by a sixth of a second.)
WORKER_MODULES = ("ocrobin.batch",)


def cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_context() -> Any:
    """The multiprocessing context worker pools use: the fork server where the platform has one (it imports
    :data:`WORKER_MODULES` once), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_MODULES))
    return ctx


def start_worker_server() -> None:
    """Start the fork server now, so that it imports torch while this process does the same (a command that
    will run worker processes calls this before its own heavy imports). Does nothing without a fork server."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()

"""Process-wide settings for long batch runs: memory freed by a page goes back to the system.

glibc's malloc serves large blocks with ``mmap`` and returns them on ``free`` — until a large block has
been freed, after which it raises its threshold and keeps later blocks of that size in its heap, which it
seldom gives back. One page's tiles are exactly such blocks, so the resident size of a run would creep up
by a tile's worth of memory or more. Fixing the threshold at 1 MiB keeps it at what the current page needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mapped and unmapped on their own (``OCROBIN_MMAP_THRESHOLD`` in bytes
#: overrides it; 0 leaves glibc's own adaptive threshold: faster, but memory grows with a run's tiles).
MMAP_THRESHOLD = 1 << 20

_done = False


def release_freed_memory() -> bool:
    """Fix glibc's mmap threshold (once per process); False where the C library is not glibc."""
    global _done
    if _done:
        return True
    threshold = int(os.environ.get("OCROBIN_MMAP_THRESHOLD", MMAP_THRESHOLD))
    if threshold <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    return _done

"""The allocator settings of long runs: page-sized blocks mapped, what a page leaves in the heap handed back."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")

# Allocates blocks through the C library's own malloc (below or above the threshold), touches them, frees
# them with small blocks kept between them (so the heap top cannot shrink by itself), and prints the
# resident size after the free and after ``trim_freed_memory``.
PROBE = r"""
import ctypes, sys
from ocrobin import runtime
size = int(sys.argv[1])
print(runtime.release_freed_memory())
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 >> 20
blocks, keep = [], []
for _ in range(100):
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    blocks.append(p)
    keep.append(libc.malloc(128 << 10))
before = rss()
for p in blocks:
    libc.free(p)
freed = rss()
runtime.trim_freed_memory()
print(before, freed, rss())
"""


def probe(size: int, env: dict[str, str] | None = None) -> tuple[bool, int, int, int]:
    import os

    r = subprocess.run([sys.executable, "-c", PROBE, str(size)], capture_output=True, text=True, check=True,
                       env={**os.environ, **(env or {})})
    first, second = r.stdout.split("\n")[:2]
    before, freed, trimmed = (int(v) for v in second.split())
    return first == "True", before, freed, trimmed


def test_page_sized_blocks_are_returned_on_free() -> None:
    fixed, before, freed, _ = probe(8 << 20)  # above the 4 MiB threshold: mapped on their own
    assert fixed
    assert before - freed > 700


def test_trim_hands_back_what_freed_heap_blocks_hold() -> None:
    fixed, before, freed, trimmed = probe(2 << 20)  # below the threshold: heap blocks, kept after free
    assert fixed
    assert before - freed < 50
    assert freed - trimmed > 150


def test_zero_keeps_glibcs_own_threshold() -> None:
    fixed, *_ = probe(1 << 20, {"OCROBIN_MMAP_THRESHOLD": "0"})
    assert not fixed


def test_every_page_trims_once_it_is_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files, shards, Ray, OCR-D and the server all take a page through ``binarize_page``."""
    import numpy as np

    from ocrobin.batch import page as page_mod
    from ocrobin.batch.common import Options
    from ocrobin.imageio import Page
    from ocrobin.infer import Binarizer

    calls: list[int] = []
    monkeypatch.setattr(page_mod, "trim_freed_memory", lambda: calls.append(1))
    b = Binarizer("default", threads=1)
    for shard in (False, True):
        page_mod.binarize_page(b, Page(np.full((40, 60), 200, np.uint8), None), Options(), shard=shard)
    assert len(calls) == 2

"""Worker processes (``ocrobin.batch.workers``, ``ocrobin.runtime``): order, no head-of-line blocking, fork server."""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import pytest

from ocrobin.batch.workers import BUFFERED, BinarizerSpec, Runner
from ocrobin.runtime import WORKER_MODULES, worker_context


def mark_and_wait(_binarizer: object, item: tuple[str, int, int]) -> tuple[int, int]:
    """Item 0 waits (up to 60 s) until the other items have all run; returns (item, items seen meanwhile)."""
    folder, i, others = item
    Path(folder, f"{i}.started").touch()
    seen = 0
    if i == 0:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = len(list(Path(folder).glob("*.started"))) - 1
            if seen >= others:
                break
            time.sleep(0.05)
    return i, seen


def test_a_slow_item_does_not_hold_up_the_others_and_results_keep_their_order(tmp_path: Path) -> None:
    n = 10  # more than the 2 items per worker that may wait in the pool at once
    items = [(str(tmp_path), i, n - 1) for i in range(n)]
    with Runner(None, BinarizerSpec(model="lstm2-seed"), workers=2) as runner:
        out = list(runner.map(mark_and_wait, items))
    assert [item for item, _ in out] == items
    assert [r[0] for _, r in out] == list(range(n))
    assert out[0][1][1] == n - 1  # every other item ran while the first one was still going


def test_map_takes_items_lazily(tmp_path: Path) -> None:
    taken: list[int] = []
    n = 200

    def items():
        for i in range(n):
            taken.append(i)
            yield (str(tmp_path), i + 1, 0)

    with Runner(None, BinarizerSpec(model="lstm2-seed"), workers=2) as runner:
        it = runner.map(mark_and_wait, items())
        next(it)
        assert len(taken) <= BUFFERED * 2 + 1 < n  # at most the results that may wait, never the whole list
        rest = list(it)
    assert len(rest) == n - 1 and taken == list(range(n))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used where it exists")
def test_workers_fork_from_a_server_that_preloaded_the_batch_code() -> None:
    ctx = worker_context()
    assert ctx.get_start_method() == "forkserver"
    assert "forkserver" in multiprocessing.get_all_start_methods()
    from multiprocessing import forkserver

    assert list(WORKER_MODULES) == forkserver._forkserver._preload_modules  # what the server imports first

"""Worker processes (``ocrobin.batch.workers``, ``ocrobin.runtime``): order, no head-of-line blocking, fork server."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from pathlib import Path

import pytest

from ocrobin.batch import workers
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


class LateReadyPool:
    """A pool that, like multiprocessing's, runs a task's callback on another thread before the task reads as
    ready (here 0.1 s later)."""

    class Result:
        def __init__(self, value: object) -> None:
            self.value, self.event = value, threading.Event()

        def ready(self) -> bool:
            return self.event.is_set()

        def get(self) -> object:
            self.event.wait()
            return self.value

    def apply_async(self, fn, args, callback, error_callback):  # noqa: ANN001, ANN201 - Pool's signature
        res = self.Result(fn(*args))

        def finish() -> None:
            callback(res.value)
            time.sleep(0.1)
            res.event.set()

        threading.Thread(target=finish).start()
        return res

    def terminate(self) -> None:
        pass

    def join(self) -> None:
        pass


def double(_binarizer: object, item: int) -> int:
    return 2 * item


def test_a_result_is_taken_as_soon_as_its_task_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "POLL", 60.0)  # a result missed at its wake-up would wait this long
    monkeypatch.setitem(workers._WORKER, "binarizer", None)
    runner = Runner(None, BinarizerSpec(model="lstm2-seed"), workers=2)
    runner._pool = LateReadyPool()
    t0 = time.monotonic()
    assert [r for _, r in runner.map(double, range(6))] == [0, 2, 4, 6, 8, 10]
    assert time.monotonic() - t0 < 30  # not left waiting for the next look


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is used where it exists")
def test_workers_fork_from_a_server_that_preloaded_the_batch_code() -> None:
    ctx = worker_context()
    assert ctx.get_start_method() == "forkserver"
    assert "forkserver" in multiprocessing.get_all_start_methods()
    from multiprocessing import forkserver

    assert list(WORKER_MODULES) == forkserver._forkserver._preload_modules  # what the server imports first


def test_the_command_ends_at_once_with_everything_written(tmp_path: Path) -> None:
    """Run as a command, binarize skips the interpreter's teardown: outputs, report rows, the summary line and
    the exit status are all there, and multiprocessing's exit handlers still ran (no leaked semaphores)."""
    import json
    import subprocess

    import numpy as np
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        page = np.full((60, 90), 220, np.uint8)
        page[20:40, 10 + 20 * i:25 + 20 * i] = 30
        Image.fromarray(page).save(src / f"p{i}.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out, report = tmp_path / "out", tmp_path / "run.jsonl"
    r = subprocess.run([sys.executable, "-W", "always", "-m", "ocrobin", "binarize", str(src), "-o", str(out),
                        "--workers", "2", "--threads", "1", "--no-progress", "--report", str(report)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # one page failed
    assert "done 3, skipped 0, failed 1" in r.stderr
    assert "leaked" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.bin.png", "p1.bin.png", "p2.bin.png"]
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(row["status"] for row in rows) == ["done", "done", "done", "failed"]


def test_the_command_line_is_parsed_before_anything_heavy_is_imported() -> None:
    """The fork server starts right after parsing; numpy, Pillow or torch imported by then delay every run."""
    import subprocess

    probe = ("import sys; from ocrobin.cli import build_parser; "
             "build_parser().parse_args(['binarize', 'x.png', '-o', 'out']); "
             "print(sorted(m for m in ('numpy', 'PIL', 'torch', 'scipy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_worker_processes_start_early_only_for_several_files(tmp_path: Path) -> None:
    from ocrobin.cli.binarize import several_files

    one = tmp_path / "one"
    (one / "sub").mkdir(parents=True)
    (one / "sub" / "p.png").write_bytes(b"x")
    (one / ".hidden.png").write_bytes(b"x")
    assert not several_files([str(one)])  # a folder of one page: no fork server for nothing
    assert several_files([str(one), str(tmp_path / "other.png")])
    (one / "q.tif").write_bytes(b"x")
    assert several_files([str(one)])  # found in the nested folder and beside it
    assert not several_files([str(one / "sub" / "p.png")])
    many = tmp_path / "many"
    many.mkdir()
    for i in range(30):
        (many / f".h{i}").write_bytes(b"x")
    assert several_files([str(many)], scan=10)  # past the scan budget: assumed several

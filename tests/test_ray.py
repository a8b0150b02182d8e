"""Ray Data shard binarization on one machine: every input key ends up exactly once in outputs or errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")
pytest.importorskip("ray.data", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")

from ocrobin import shards  # noqa: E402
from ocrobin.distributed import (  # noqa: E402
    _host_port,
    _keep_errors,
    _plan_workers,
    _State,
    _stuck_stage,
    binarize_shards_ray,
    read_shard,
)
from ocrobin.exceptions import ClusterError  # noqa: E402
from ocrobin.imageio import encode_png  # noqa: E402

from .conftest import text_page  # noqa: E402

# Ray Data warns about its own deprecated settings when it copies its context; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

N_SHARDS, PER_SHARD = 3, 3
CORRUPT = ("in-000000.tar", "s0p1")
WRONG_KEY = ("in-000001.tar", "s1p0")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Three small shards (one corrupt sample, one sample without gray.png); shard 3 is missing."""
    d = tmp_path_factory.mktemp("shards")
    pages: dict[str, np.ndarray] = {}
    for s in range(N_SHARDS):
        with shards.ShardSink(str(d / "in-%06d.tar"), maxcount=1000, start=s) as sink:
            for k in range(PER_SHARD):
                key = f"s{s}p{k}"
                if (f"in-{s:06d}.tar", key) == CORRUPT:
                    sink.write({"__key__": key, "gray.png": b"\x89PNG but not really"})
                elif (f"in-{s:06d}.tar", key) == WRONG_KEY:
                    sink.write({"__key__": key, "txt": b"no page here"})
                else:
                    pages[key] = text_page(48 + 8 * k, 80 + 8 * s, seed=10 * s + k)
                    sink.write({"__key__": key, "gray.png": encode_png(pages[key]), "json": b"{}"})
    return d, pages


def _all_input_keys() -> set[str]:
    return {f"s{s}p{k}" for s in range(N_SHARDS) for k in range(PER_SHARD)}


def _outputs(out: Path) -> dict[int, dict[str, dict[str, bytes]]]:
    found: dict[int, dict[str, dict[str, bytes]]] = {}
    for i in range(N_SHARDS + 1):
        p = out / f"out-{i:06d}.tar"
        if p.exists():
            found[i] = {s["__key__"]: s for s in shards.iter_samples([str(p)])}
    return found


def _errors(path: Path) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(src: Path, out: Path, **kw: object):
    return binarize_shards_ray("lstm2-seed", [str(src / "in-{000000..000003}.tar")],
                               str(out / "out-%06d.tar"), num_workers=2, batch_size=2, progress=False, **kw)


def test_read_shard_rows(inputs: tuple[Path, dict[str, np.ndarray]]) -> None:
    src, _ = inputs
    rows = list(read_shard({"shard": 1, "url": str(src / "in-000001.tar")}))
    assert [r["kind"] for r in rows] == ["error", "page", "page", "end"]
    assert rows[0]["key"] == "s1p0" and "has no 'gray.png'" in rows[0]["reason"]
    assert rows[-1]["count"] == 3 and rows[-1]["readable"]
    missing = list(read_shard({"shard": 3, "url": str(src / "in-000003.tar")}))
    assert [r["kind"] for r in missing] == ["error", "end"] and not missing[-1]["readable"]


def test_keep_errors_drops_only_redone_shards(tmp_path: Path) -> None:
    p = tmp_path / "errors.jsonl"
    a = '{"shard": "a", "key": "1", "reason": "x"}\n'
    b = '{"shard": "b", "key": "2", "reason": "y"}\n'
    p.write_text(a + b + "not json\n")
    _keep_errors(p, {"a"})
    assert p.read_text() == b + "not json\n"


def test_every_key_once_in_outputs_or_errors(inputs: tuple[Path, dict[str, np.ndarray]],
                                             tmp_path: Path) -> None:
    src, pages = inputs
    out = tmp_path / "out"
    summary = _run(src, out)
    assert not ray.is_initialized(), "a Ray instance started by the call must be stopped by it"
    outputs = _outputs(out)
    errors = _errors(out / "errors.jsonl")
    assert sorted(outputs) == [0, 1, 2], "no output shard for the missing input shard"
    written = [k for i in outputs for k in outputs[i]]
    failed = [e["key"] for e in errors if e["key"]]
    assert sorted(written + failed) == sorted(_all_input_keys())
    for i, samples in outputs.items():  # output shard i holds input shard i's samples
        assert all(k.startswith(f"s{i}p") for k in samples)
    by_key = {e["key"]: e for e in errors}
    assert by_key[CORRUPT[1]]["shard"].endswith(CORRUPT[0])
    assert "has no 'gray.png'" in by_key[WRONG_KEY[1]]["reason"]
    assert [e["shard"] for e in errors if e["key"] is None] == [str(src / "in-000003.tar")]
    assert (summary.done, summary.failed, summary.skipped) == (7, 3, 0)
    assert summary.pixels == sum(p.size for p in pages.values())
    for key, gray in pages.items():
        sample = outputs[int(key[1])][key]
        assert {k for k in sample if not k.startswith("__")} == {"bin.png"}
        binary = np.asarray(Image.open(io.BytesIO(sample["bin.png"])))
        assert binary.shape == gray.shape and set(np.unique(binary)) <= {0, 255}
        dark = gray < 128
        assert (binary[dark] == 0).mean() > 0.5 and (binary[~dark] == 255).mean() > 0.9


@pytest.fixture
def ray_session():
    """A small local Ray instance shared by several calls (the function then leaves it running)."""
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_rerun_skips_finished_shards(inputs: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
                                     ray_session: None) -> None:
    src, _ = inputs
    out = tmp_path / "out"
    first = _run(src, out, prob=True)
    assert ray.is_initialized(), "a Ray instance the caller started stays up"
    assert first.done == 7
    assert all("prob.png" in s for samples in _outputs(out).values() for s in samples.values())
    before = _errors(out / "errors.jsonl")
    (out / "out-000001.tar").unlink()
    again = _run(src, out, prob=True)
    assert again.skipped == 2 + 3  # shards 0 and 2 are done; shard 1 and the missing shard 3 are redone
    assert again.done == 2 and again.failed == 2
    after = _errors(out / "errors.jsonl")
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, before)), "errors lost or repeated"
    assert sorted(_outputs(out)) == [0, 1, 2]


def test_plan_workers_keeps_room_for_the_readers(ray_session: None) -> None:
    notes: list[str] = []
    assert _plan_workers(None, 1, "this instance", notes.append) == 2  # 3 CPUs, 1 kept for the readers
    assert _plan_workers(2, 1, "this instance", notes.append) == 2 and notes == []
    assert _plan_workers(5, 1, "this instance", notes.append) == 2
    assert notes == ["5 model workers requested, 2 started: this instance has 3 CPUs, 1 per worker and 1 kept "
                     "for the shard readers"]
    assert _plan_workers(None, 2, "this instance", notes.append) == 1
    with pytest.raises(ClusterError, match="this instance has 3 CPUs: a model worker needs 3 on one node"):
        _plan_workers(1, 3, "this instance", notes.append)


def test_stuck_stage_names_the_stage_that_waits() -> None:
    idle = _State()
    counts = {"read": 0, "shards": 0, "ready": 0, "binarized": 0}
    assert _stuck_stage(None, idle, 3, 2) == "waiting for the model workers to start (0 of 2 running)"
    assert _stuck_stage(counts, idle, 3, 2).startswith("waiting for the model workers")
    up = dict(counts, ready=2)
    assert _stuck_stage(up, idle, 3, 2) == "reading shards (0 of 3 read to the end)"
    assert _stuck_stage(dict(up, read=5, binarized=1), idle, 3, 2) == "binarizing (4 pages at 2 model workers)"
    assert _stuck_stage(dict(up, read=5, binarized=5, shards=3), idle, 3, 2) == "passing results to the driver"
    assert _stuck_stage(up, _State(stage="writing out-000001.tar"), 3, 2) == "writing out-000001.tar"


def test_host_port() -> None:
    assert _host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert _host_port("ray://head:10001") == ("head", 10001)
    assert _host_port("[::1]:6379") == ("::1", 6379)
    assert _host_port("auto") is None


@pytest.fixture
def blocked_reader(tmp_path: Path):
    """A shard URL whose reader waits for data that never come (a hung mount or download)."""
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    yield f"pipe:timeout 120 cat {fifo}"
    import psutil

    for proc in psutil.process_iter(["cmdline"]):  # the reader's processes, found by the unique FIFO path
        if str(fifo) in " ".join(proc.info["cmdline"] or []):
            proc.kill()


def test_stall_stops_with_the_stuck_stage(blocked_reader: str, tmp_path: Path, ray_session: None) -> None:
    out = tmp_path / "out"
    with pytest.raises(ClusterError, match=r"^no progress for 4 s while (reading shards \(0 of 1|waiting for the "
                       r"model workers).*stopped \(see --stall-timeout\)$"):
        binarize_shards_ray("lstm2-seed", [blocked_reader], str(out / "out-%06d.tar"), num_workers=1,
                            progress=False, stall_timeout=4)
    assert not (out / "out-000000.tar").exists()

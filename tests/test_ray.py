"""Ray Data shard binarization on one machine: every input key once in its output shard, as the local engine does."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")
pytest.importorskip("ray.data", reason="the ray engine needs the ray extra: pip install 'ocrobin[ray]'")

from ocrobin import shards  # noqa: E402
from ocrobin.batch import Report, binarize_shards, read_report  # noqa: E402
from ocrobin.distributed import (  # noqa: E402
    _host_port,
    _keep_errors,
    _plan_workers,
    _State,
    _stuck_stage,
    binarize_shards_ray,
    read_shard,
)
from ocrobin.exceptions import ClusterError, UsageError  # noqa: E402
from ocrobin.imageio import encode_png  # noqa: E402
from ocrobin.infer import Binarizer  # noqa: E402

from .conftest import text_page  # noqa: E402

# Ray Data warns about its own deprecated settings when it copies its context; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

N_SHARDS, PER_SHARD = 3, 3  # shards that read to the end
TRUNCATED, MISSING = 3, 4  # shard 3 is cut in the middle, shard 4 does not exist
CORRUPT = ("in-000000.tar", "s0p1")
WRONG_KEY = ("in-000001.tar", "s1p0")
INVERTED = "s2p1"  # light text on a dark ground


@dataclass
class Inputs:
    dir: Path
    pages: dict[str, np.ndarray]  # the upright page of every sample that binarizes
    truncated: list[str]  # keys of the truncated shard that can still be read


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Three small shards (one corrupt sample, one without gray.png, one light-on-dark page), a truncated
    shard and a missing one."""
    d = tmp_path_factory.mktemp("shards")
    pages: dict[str, np.ndarray] = {}
    for s in range(N_SHARDS + 1):
        with shards.ShardSink(str(d / "in-%06d.tar"), maxcount=1000, start=s) as sink:
            for k in range(PER_SHARD):
                key = f"s{s}p{k}"
                if (f"in-{s:06d}.tar", key) == CORRUPT:
                    sink.write({"__key__": key, "gray.png": b"\x89PNG but not really"})
                elif (f"in-{s:06d}.tar", key) == WRONG_KEY:
                    sink.write({"__key__": key, "txt": b"no page here"})
                else:
                    pages[key] = text_page(48 + 8 * k, 80 + 8 * s, seed=10 * s + k)
                    gray = 255 - pages[key] if key == INVERTED else pages[key]
                    sink.write({"__key__": key, "gray.png": encode_png(gray), "json": b"{}"})
    cut = d / f"in-{TRUNCATED:06d}.tar"
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    problems: list[Exception] = []
    readable = [x["__key__"] for x in shards.iter_samples([str(cut)], handler=lambda e: problems.append(e) or True)]
    assert problems and 0 < len(readable) < PER_SHARD
    return Inputs(d, pages, readable)


def _complete_keys() -> set[str]:
    """Every key of the shards that can be read to the end."""
    return {f"s{s}p{k}" for s in range(N_SHARDS) for k in range(PER_SHARD)}


def _outputs(out: Path, name: str = "out") -> dict[int, dict[str, dict[str, bytes]]]:
    found: dict[int, dict[str, dict[str, bytes]]] = {}
    for i in range(MISSING + 1):
        p = out / f"{name}-{i:06d}.tar"
        if p.exists():
            found[i] = {s["__key__"]: {k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")}
                        for s in shards.iter_samples([str(p)])}
    return found


def _errors(path: Path) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SPEC = f"in-{{000000..{MISSING:06d}}}.tar"


def _run(src: Path, out: Path, **kw: object):
    return binarize_shards_ray("lstm2-seed", [str(src / SPEC)], str(out / "out-%06d.tar"), num_workers=2,
                               batch_size=2, progress=False, **kw)


def _ink(sample: dict[str, bytes]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample["bin.png"]))) == 0


def test_read_shard_rows(inputs: Inputs) -> None:
    src = inputs.dir
    rows = list(read_shard({"shard": 1, "url": str(src / "in-000001.tar")}))
    assert [r["kind"] for r in rows] == ["error", "page", "page", "end"]
    assert rows[0]["key"] == "s1p0" and "has no 'gray.png'" in rows[0]["reason"]
    assert rows[-1]["count"] == 3 and rows[-1]["readable"]
    missing = list(read_shard({"shard": MISSING, "url": str(src / f"in-{MISSING:06d}.tar")}))
    assert [r["kind"] for r in missing] == ["error", "end"] and not missing[-1]["readable"]
    url = str(src / f"in-{TRUNCATED:06d}.tar")
    cut = list(read_shard({"shard": TRUNCATED, "url": url}))
    n = len(inputs.truncated)
    assert [r["kind"] for r in cut] == ["page"] * n + ["error", "end"]
    assert [r["key"] for r in cut[:n]] == inputs.truncated
    assert cut[n]["key"] == "" and cut[n]["reason"].startswith(f"{url}: corrupt or truncated tar archive (")
    assert "<_io" not in cut[n]["reason"]
    assert cut[-1]["count"] == n + 1 and not cut[-1]["readable"], "a truncated shard must not count as complete"


def test_keep_errors_drops_only_redone_shards(tmp_path: Path) -> None:
    p = tmp_path / "errors.jsonl"
    a = '{"shard": "a", "key": "1", "reason": "x"}\n'
    b = '{"shard": "b", "key": "2", "reason": "y"}\n'
    p.write_text(a + b + "not json\n")
    _keep_errors(p, {"a"})
    assert p.read_text() == b + "not json\n"


def test_every_key_once_in_its_output_shard_as_the_local_engine(inputs: Inputs, tmp_path: Path) -> None:
    """Each readable input shard gives an output shard holding every input key once: its page, or an
    ``error.txt`` with the reason; the bytes and report rows are the local engine's."""
    src, pages = inputs.dir, inputs.pages
    out = tmp_path / "out"
    summary = _run(src, out, report=tmp_path / "run.jsonl")
    assert not ray.is_initialized(), "a Ray instance started by the call must be stopped by it"
    outputs = _outputs(out)
    assert sorted(outputs) == [0, 1, 2], "no output shard for the truncated and the missing input shards"
    assert sorted(k for i in outputs for k in outputs[i]) == sorted(_complete_keys())
    for i, samples in outputs.items():  # output shard i holds input shard i's samples
        assert all(k.startswith(f"s{i}p") for k in samples)
    errors = _errors(out / "errors.jsonl")
    by_key = {e["key"]: e for e in errors if e["key"]}
    assert sorted(by_key) == sorted([CORRUPT[1], WRONG_KEY[1]])
    for shard, key in (CORRUPT, WRONG_KEY):
        sample = outputs[int(key[1])][key]
        assert {k for k in sample if not k.startswith("__")} == {"error.txt"}
        assert sample["error.txt"].decode() == by_key[key]["reason"]
        assert by_key[key]["shard"].endswith(shard)
    assert "has no 'gray.png'" in by_key[WRONG_KEY[1]]["reason"]
    gone = {e["shard"]: e["reason"] for e in errors if e["key"] is None}
    assert sorted(gone) == [str(src / f"in-{i:06d}.tar") for i in (TRUNCATED, MISSING)]
    for i in (TRUNCATED, MISSING):
        url = str(src / f"in-{i:06d}.tar")
        assert gone[url].endswith(f"; {out / f'out-{i:06d}.tar'} not written (a rerun redoes it)")
    assert "corrupt or truncated tar archive" in gone[str(src / f"in-{TRUNCATED:06d}.tar")]
    assert "shard not found" in gone[str(src / f"in-{MISSING:06d}.tar")]
    # the truncated shard's pages are not done: its output is not written
    assert (summary.done, summary.failed, summary.skipped) == (7, 4, 0)
    assert summary.pixels == sum(pages[k].size for k in pages if k[1] != str(TRUNCATED))
    for key, gray in pages.items():
        if key[1] == str(TRUNCATED):
            continue
        sample = outputs[int(key[1])][key]
        assert {k for k in sample if not k.startswith("__")} == {"bin.png"}
        binary = np.asarray(Image.open(io.BytesIO(sample["bin.png"])))
        assert binary.shape == gray.shape and set(np.unique(binary)) <= {0, 255}
        dark = gray < 128  # the upright page: the inverted one too comes out as dark text on white
        assert (binary[dark] == 0).mean() > 0.5 and (binary[~dark] == 255).mean() > 0.9, key

    # the local engine on the same shards, one torch thread like each Ray worker
    threads = torch.get_num_threads()
    try:
        with Report(tmp_path / "local.jsonl") as rep:
            local = binarize_shards(Binarizer("lstm2-seed", threads=1), [str(src / SPEC)],
                                    str(tmp_path / "loc-%06d.tar"), handler=lambda name, exn: None, report=rep)
    finally:
        torch.set_num_threads(threads)
    assert (local.done, local.skipped) == (summary.done, summary.skipped)
    assert _outputs(tmp_path, "loc") == outputs, "the engines wrote different bytes"

    def rows(path: Path) -> dict[tuple[str, str], dict[str, object]]:
        def name(out: str) -> str:
            return Path(out).name.replace("loc", "out")

        return {(r["input"], r["key"]): dict(r, seconds=None, output=name(r["output"]),
                                             error=r["error"] and r["error"].replace(r["output"], name(r["output"])))
                for r in read_report(path)}

    ray_rows = rows(tmp_path / "run.jsonl")
    assert len(read_report(tmp_path / "run.jsonl")) == len(ray_rows), "one row per sample"
    assert ray_rows == rows(tmp_path / "local.jsonl")
    lost = {Path(i).name: r for (i, k), r in ray_rows.items() if k is None}  # one failed row per unreadable shard
    assert sorted(lost) == [f"in-{i:06d}.tar" for i in (TRUNCATED, MISSING)]
    assert {r["status"] for r in lost.values()} == {"failed"}
    by = {k: r for (_, k), r in ray_rows.items() if k is not None}
    assert sorted(by) == sorted(_complete_keys())  # a shard not read to the end has no rows: none of it is done
    assert {k: r["status"] for k, r in by.items() if r["status"] != "done"} == {CORRUPT[1]: "failed",
                                                                               WRONG_KEY[1]: "failed"}
    assert by[CORRUPT[1]]["error"] == by_key[CORRUPT[1]]["reason"]
    assert by[INVERTED]["polarity"] == "inverted" and "inverted" in by[INVERTED]["flags"]
    assert by["s2p0"]["polarity"] == "normal"


@pytest.fixture
def ray_session():
    """A small local Ray instance shared by several calls (the function then leaves it running)."""
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_rerun_skips_finished_shards(inputs: Inputs, tmp_path: Path, ray_session: None) -> None:
    src = inputs.dir
    out = tmp_path / "out"
    report = tmp_path / "run.csv"
    first = _run(src, out, prob=True, polarity="normal", report=report)
    assert ray.is_initialized(), "a Ray instance the caller started stays up"
    assert first.done == 7 and first.redone == 0
    outputs = _outputs(out)
    assert all("prob.png" in s for samples in outputs.values() for s in samples.values() if "bin.png" in s)
    strokes = inputs.pages[INVERTED] < 128  # light on its dark ground: with "normal" they do not come out as ink
    assert _ink(outputs[2][INVERTED])[strokes].mean() < 0.5, "polarity 'normal' takes pages as they are"
    before = _errors(out / "errors.jsonl")
    rows = len(read_report(report))
    # shard 1 redone as after a run that died while writing it: its temporary file is still there
    (out / "out-000001.tar").unlink()
    leftover = out / ".out-000001.tar.99999999.tmp"
    leftover.write_bytes(b"half a shard")
    again = _run(src, out, prob=True, polarity="normal", report=report)
    assert not leftover.exists()
    assert again.skipped == 2 * PER_SHARD  # shards 0 and 2 are done; 1, the truncated and the missing redone
    assert (again.done, again.failed, again.redone) == (2, 1 + 2, PER_SHARD)
    after = _errors(out / "errors.jsonl")
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, before)), "errors lost or repeated"
    assert _outputs(out) == outputs
    new = read_report(report)[rows:]
    assert sorted(r["key"] for r in new if r["status"] == "skipped") == sorted(
        f"s{s}p{k}" for s in (0, 2) for k in range(PER_SHARD))
    assert sorted((r["key"], r["status"]) for r in new if r["status"] != "skipped" and r["key"]) == sorted(
        [(WRONG_KEY[1], "failed"), ("s1p1", "done"), ("s1p2", "done")])
    assert sorted(Path(r["input"]).name for r in new if r["key"] is None) == [  # the unreadable shards, again
        f"in-{i:06d}.tar" for i in (TRUNCATED, MISSING)]


def test_report_and_errors_file_are_never_input_shards(inputs: Inputs, tmp_path: Path) -> None:
    shard = inputs.dir / "in-000000.tar"
    data = shard.read_bytes()
    with pytest.raises(UsageError, match=r"^report .*in-000000\.tar is the input .*in-000000\.tar"):
        _run(inputs.dir, tmp_path / "out", report=shard)
    with pytest.raises(UsageError, match=r"^errors file .*in-000000\.tar is the input"):
        _run(inputs.dir, tmp_path / "out", errors_path=shard)
    assert shard.read_bytes() == data and not (tmp_path / "out").exists()
    assert not ray.is_initialized()


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

"""Shard batches (``ocrobin.batch.shards``) from the command line: report rows, interrupted runs, input
shards that cannot be read to the end, several runs on one set of shards, worker processes."""

import hashlib
import os
import re
import tarfile
from collections import Counter

import pytest
import webdataset as wds

import ocrobin.batch.shards as batch_shards
from ocrobin.batch import read_report
from ocrobin.cli import main
from ocrobin.imageio import encode_png
from ocrobin.paths import resolved

from .conftest import hold_then_release, text_page

FAST = ["-m", "lstm2-seed", "--no-progress"]
ONE = [*FAST, "--workers", "1"]


def make_shard(path, samples):
    with wds.TarWriter(str(path)) as w:
        for s in samples:
            w.write(s)
    return path


def pages(prefix, n, seed=0):
    return [{"__key__": f"{prefix}{i}", "gray.png": encode_png(text_page(seed=seed + i))} for i in range(n)]


def members(path):
    """(key, member suffixes) per sample, in shard order."""
    out: dict[str, list[str]] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            k, ext = m.name.split(".", 1)
            out.setdefault(k, []).append(ext)
    return out


def summary_counts(err):
    m = re.search(r"done (\d+), skipped (\d+), failed (\d+)(?:, (\d+) done by other runs)?"
                  r"(?:, (\d+) redone after an interrupted run)?", err)
    assert m, err
    return tuple(int(g or 0) for g in m.groups())


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_rows_of_a_shard_run(tmp_path, capsys):
    make_shard(tmp_path / "in-000000.tar", pages("a", 2))
    make_shard(tmp_path / "in-000001.tar", [*pages("b", 1, seed=5), {"__key__": "bad", "gray.png": b"garbage"},
                                            {"__key__": "neg", "gray.png": encode_png(255 - text_page(seed=9))}])
    spec = str(tmp_path / "in-{000000..000001}.tar")
    pattern = str(tmp_path / "out-%06d.tar")
    report = tmp_path / "run.jsonl"
    assert main(["binarize", "--shards", spec, "-o", pattern, "--report", str(report), *ONE]) == 1
    capsys.readouterr()
    rows = read_report(report)
    assert [(os.path.basename(r["input"]), r["key"], r["status"]) for r in rows] == [
        ("in-000000.tar", "a0", "done"), ("in-000000.tar", "a1", "done"), ("in-000001.tar", "b0", "done"),
        ("in-000001.tar", "bad", "failed"), ("in-000001.tar", "neg", "done")]
    for r in rows:
        out = pattern % int(r["input"][-10:-4])
        assert r["input"] == str(tmp_path / os.path.basename(r["input"])) and r["output"] == f"{out}:{r['key']}"
        if r["status"] == "done":
            assert (r["width"], r["height"]) == (160, 96) and r["seconds"] > 0 and r["error"] is None
            assert 0 < r["ink_fraction"] < 0.5 and 0 <= r["confidence"] <= 1 and isinstance(r["flags"], list)
            assert r["page"] is None
    bad = rows[3]
    assert "bad" in bad["error"] and "in-000001.tar" in bad["error"] and bad["width"] is None
    assert rows[4]["polarity"] == "inverted" and "inverted" in rows[4]["flags"]
    # the output shard holds every key: pages, and the failed one's reason
    assert members(tmp_path / "out-000001.tar") == {"b0": ["bin.png"], "bad": ["error.txt"], "neg": ["bin.png"]}
    # a rerun skips the finished shards, with a skipped row for each key, the failed one too
    assert main(["binarize", "--shards", spec, "-o", pattern, "--report", str(report), *ONE]) == 0
    assert summary_counts(capsys.readouterr().err)[:3] == (0, 5, 0)
    again = read_report(report)[len(rows):]
    assert [(r["key"], r["status"], r["output"]) for r in again] == [
        (r["key"], "skipped", r["output"]) for r in rows]


def interrupt_at(monkeypatch, n):
    """Make the n-th sample of the run raise KeyboardInterrupt, as Ctrl-C would."""
    real = batch_shards.run_sample
    seen = []

    def run_sample(binarizer, task):
        seen.append(task.sample["__key__"])
        if len(seen) == n:
            raise KeyboardInterrupt
        return real(binarizer, task)

    monkeypatch.setattr(batch_shards, "run_sample", run_sample)
    return seen


def test_ctrl_c_leaves_no_partial_shard_and_the_rerun_redoes_it(tmp_path, monkeypatch, capsys):
    make_shard(tmp_path / "in-000000.tar", pages("a", 5))
    make_shard(tmp_path / "in-000001.tar", pages("b", 2, seed=10))
    report = tmp_path / "run.jsonl"
    args = ["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o", str(tmp_path / "out-%06d.tar"),
            "--report", str(report), *ONE]
    seen = interrupt_at(monkeypatch, 3)
    assert main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert seen == ["a0", "a1", "a2"]
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".out", "out")))
    assert not any(n.startswith("out-") for n in left)  # nothing under a final name
    assert len(left) <= 1 and all(re.fullmatch(r"\.out-000000\.tar\..*\.tmp", n) for n in left)
    assert read_report(report) == []  # no page of the unfinished shard is reported done
    monkeypatch.undo()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert summary_counts(err) == (7, 0, 0, 0, 5) and "5 redone after an interrupted run" in err
    assert members(tmp_path / "out-000000.tar") == {f"a{i}": ["bin.png"] for i in range(5)}
    assert members(tmp_path / "out-000001.tar") == {"b0": ["bin.png"], "b1": ["bin.png"]}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert Counter((r["key"], r["status"]) for r in read_report(report)) == {
        (k, "done"): 1 for k in ("a0", "a1", "a2", "a3", "a4", "b0", "b1")}
    assert main(args) == 0
    assert summary_counts(capsys.readouterr().err) == (0, 7, 0, 0, 0)


@pytest.mark.parametrize("cut", ["middle", "member boundary", "inside a header"])
def test_a_truncated_input_shard_gets_no_output(tmp_path, capsys, cut):
    good = make_shard(tmp_path / "in-000000.tar", pages("a", 2))
    whole = make_shard(tmp_path / "whole.tar", pages("b", 6, seed=3))
    data = whole.read_bytes()
    with tarfile.open(whole) as tf:
        fourth = [m.offset for m in tf][3]
    at = {"middle": len(data) // 2, "member boundary": fourth, "inside a header": fourth + 100}[cut]
    (tmp_path / "in-000001.tar").write_bytes(data[:at])
    report = tmp_path / "run.jsonl"
    args = ["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o", str(tmp_path / "out-%06d.tar"),
            "--report", str(report), *ONE]
    for _ in range(2):  # the rerun redoes it, it does not skip it
        assert main(args) == 1
        err = capsys.readouterr().err
        assert str(tmp_path / "in-000001.tar") in err and "not written" in err
        assert not (tmp_path / "out-000001.tar").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert summary_counts(err)[:3] == (0, 2, 1)  # only the good shard is skipped; the cut one fails, once
    lines = [ln for ln in err.splitlines() if "in-000001.tar" in ln]
    assert len(lines) == 1 and "<_io" not in lines[0], lines  # one line per unreadable shard, in words
    rows = [r for r in read_report(report) if r["input"].endswith("in-000001.tar")]
    assert {r["status"] for r in rows} == {"failed"} and len(rows) == 2  # one per run, naming the lost output
    assert rows[-1]["output"] == str(tmp_path / "out-000001.tar") and "not written" in rows[-1]["error"]
    assert members(tmp_path / "out-000000.tar").keys() == {"a0", "a1"} and good.exists()


def test_a_shard_that_is_not_a_tar_is_one_clear_error(tmp_path, capsys):
    make_shard(tmp_path / "in-000000.tar", pages("a", 1))
    (tmp_path / "in-000001.tar").write_bytes(b"not a tar at all " * 200)
    assert main(["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o",
                 str(tmp_path / "out-%06d.tar"), *ONE]) == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "in-000001.tar" in ln]
    assert len(lines) == 1 and "corrupt or truncated tar archive" in lines[0] and "<_io" not in lines[0], lines
    assert summary_counts(err)[:3] == (1, 0, 1)
    assert not (tmp_path / "out-000001.tar").exists()


def test_a_missing_input_shard_gets_no_output(tmp_path, capsys):
    make_shard(tmp_path / "in-000000.tar", pages("a", 2))
    args = ["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o", str(tmp_path / "out-%06d.tar"),
            *ONE]
    for skipped in (0, 2):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"{tmp_path / 'in-000001.tar'}: shard not found" in err
        assert summary_counts(err)[:2] == (2 - skipped, skipped)
        assert not (tmp_path / "out-000001.tar").exists()
    # once it is there, the rerun does it
    make_shard(tmp_path / "in-000001.tar", pages("b", 1))
    assert main(args) == 0
    assert summary_counts(capsys.readouterr().err)[:3] == (1, 2, 0)
    assert members(tmp_path / "out-000001.tar") == {"b0": ["bin.png"]}


def test_two_workers_give_the_same_shards_rows_and_counts(tmp_path, capsys):
    make_shard(tmp_path / "in-000000.tar", pages("a", 4))
    make_shard(tmp_path / "in-000001.tar", [*pages("b", 2, seed=7), {"__key__": "bad", "gray.png": b"x"},
                                            {"__key__": "neg", "gray.png": encode_png(255 - text_page(seed=9))}])
    got = {}
    for w in ("1", "2"):
        rc = main(["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o",
                   str(tmp_path / f"w{w}-%06d.tar"), "--prob", "--report", str(tmp_path / f"r{w}.jsonl"), *FAST,
                   "--workers", w])
        assert rc == 1
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in read_report(tmp_path / f"r{w}.jsonl")]
        for r in rows:
            r["output"] = r["output"] and r["output"].replace(f"w{w}-", "w-")
        got[w] = ([digest(tmp_path / f"w{w}-{i:06d}.tar") for i in range(2)], rows,
                  summary_counts(capsys.readouterr().err))
    assert got["1"] == got["2"]
    assert [r["key"] for r in got["2"][1]] == ["a0", "a1", "a2", "a3", "b0", "b1", "bad", "neg"]  # input order
    assert got["2"][2] == (7, 0, 1, 0, 0)


@pytest.mark.parametrize("other_finishes", [True, False])
def test_a_shard_claimed_by_another_run(tmp_path, capsys, other_finishes):
    make_shard(tmp_path / "in-000000.tar", pages("a", 2))
    make_shard(tmp_path / "in-000001.tar", pages("b", 3, seed=4))
    out1 = tmp_path / "out-000001.tar"
    theirs = make_shard(tmp_path / "theirs.tar", pages("b", 3, seed=4))
    t = hold_then_release(tmp_path, str(resolved(out1)), (tmp_path / "out-000000.tar").exists,
                          (lambda: os.replace(theirs, out1)) if other_finishes else None)
    try:
        rc = main(["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o",
                   str(tmp_path / "out-%06d.tar"), "--report", str(tmp_path / "r.jsonl"), *ONE])
    finally:
        t.join()
    assert rc == 0
    counts = summary_counts(capsys.readouterr().err)
    rows = Counter(r["status"] for r in read_report(tmp_path / "r.jsonl"))
    if other_finishes:  # done by the other run: waited for, counted, not done again
        assert counts == (2, 0, 0, 3, 0) and rows == {"done": 2, "elsewhere": 3}
        assert members(out1) == {"b0": ["gray.png"], "b1": ["gray.png"], "b2": ["gray.png"]}
    else:  # the other run let it go unfinished (Ctrl-C): done here
        assert counts == (5, 0, 0, 0, 0) and rows == {"done": 5}
        assert members(out1) == {f"b{i}": ["bin.png"] for i in range(3)}

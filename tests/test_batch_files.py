"""File batches (``ocrobin.batch.inputs`` / ``files`` / ``claims`` / ``workers``) from the command line.

Nothing given or found is skipped in silence; several runs on one output folder split the pages between
them (claims, takeover of a dead run's claims); worker processes give the same outputs, rows and counts.
"""

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image

from ocrobin.batch import CLAIMS_DIR, read_report
from ocrobin.cli import main

from .conftest import hold_then_release, text_page

FAST = ["-m", "lstm2-seed", "--no-progress"]
ONE = [*FAST, "--workers", "1"]
OCROBIN = [sys.executable, "-m", "ocrobin"]


def write_page(path, seed=0, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(text_page(seed=seed)).save(path, **kw)
    return path


def make_folder(root, n):
    for i in range(n):
        write_page(root / f"p{i:02d}.png", seed=i)
    return root


def summary_counts(err):
    """(done, skipped, failed, done by other runs) of a run's summary line."""
    m = re.search(r"done (\d+), skipped (\d+), failed (\d+)(?:, (\d+) done by other runs)?", err)
    assert m, err
    return tuple(int(g or 0) for g in m.groups())


def outputs(out):
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


# --- no silent skips (issue 13.4) --------------------------------------------------------------------------


def test_nothing_given_or_found_is_skipped_in_silence(tmp_path, capsys):
    d = tmp_path / "in"
    write_page(d / "a.png")
    write_page(d / "sub" / "b.png", seed=1)
    (d / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a dangling link
    (d / "sub" / "gone-dir").symlink_to(tmp_path / "no-dir", target_is_directory=True)
    (d / "notes.txt").write_text("hello")
    (d / "README").write_text("x")
    write_page(d / ".hidden.png", seed=2)
    (d / "fake.jpg").write_bytes(b"this is not a JPEG")
    pattern = str(tmp_path / "elsewhere" / "*.tif")
    out = tmp_path / "out"
    rc = main(["binarize", str(d), pattern, "-o", str(out), *ONE])
    assert rc == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith("ocrobin: error:")]
    assert len(errors) == 4, err

    def one(*words):
        hits = [ln for ln in errors if all(w in ln for w in words)]
        assert len(hits) == 1, (words, err)

    one(str(d / "gone.png"), "broken symbolic link")
    one(str(d / "sub" / "gone-dir"), "broken symbolic link")
    one(str(d / "fake.jpg"), "not an image")
    one(pattern)
    # suffixes that are not an image's, and hidden files: one line with the count, not one line each
    assert "ocrobin: 3 non-image or hidden file(s) ignored" in lines
    assert not any("notes.txt" in ln or "README" in ln or ".hidden" in ln for ln in lines)
    assert summary_counts(err) == (2, 0, 4, 0)
    assert outputs(out).keys() == {"a.bin.png", "sub/b.bin.png"}


def test_a_dangling_link_given_by_name_or_matched_by_a_glob(tmp_path, capsys):
    good = write_page(tmp_path / "a.png")
    (tmp_path / "l.png").symlink_to(tmp_path / "nowhere.png")
    rc = main(["binarize", str(good), str(tmp_path / "l.png"), "-o", str(tmp_path / "o1"), *ONE])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"ocrobin: error: {tmp_path / 'l.png'}: broken symbolic link" in err
    rc = main(["binarize", str(tmp_path / "*.png"), "-o", str(tmp_path / "o2"), *ONE])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"ocrobin: error: {tmp_path / 'l.png'}: broken symbolic link" in err
    assert (tmp_path / "o2" / "a.bin.png").exists() and summary_counts(err)[:3] == (1, 0, 1)


def test_a_glob_that_matches_nothing_is_an_error(tmp_path, capsys):
    good = write_page(tmp_path / "a.png")
    (tmp_path / "d.tif").mkdir()  # matches, but only a folder
    for pattern in (str(tmp_path / "*.jpg"), str(tmp_path / "*.tif")):
        rc = main(["binarize", str(good), pattern, "-o", str(tmp_path / "o"), *ONE])
        assert rc == 1
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if ln.startswith("ocrobin: error:")]
        assert len(errors) == 1 and pattern in errors[0], err


# --- several processes on one folder (issue 12.4) ------------------------------------------------------------


def test_two_runs_on_one_folder_split_the_pages(tmp_path):
    n = 30
    src = make_folder(tmp_path / "in", n)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --tta makes each tiny page take long enough that the two runs overlap for certain
    procs = [subprocess.Popen([*OCROBIN, "binarize", str(src), "-o", str(out), *FAST, "--workers", "1",
                               "--threads", "1", "--tta", "--report", str(tmp_path / f"run{i}.jsonl")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    counts = [summary_counts(e) for e in errs]
    # each page binarized once: the done counts add up, and each run names the pages the other did since
    # it started (those done before it looked at the folder are skipped, as after an earlier run: with a
    # simultaneous start there are none or few)
    assert counts[0][0] + counts[1][0] == n, errs
    for (_, skipped, failed, other), (other_done, *_) in zip(counts, counts[::-1], strict=True):
        assert failed == 0 and skipped + other == other_done, errs
        assert other > 0 and f"{other} done by other runs" in "".join(errs), errs
    reports = [read_report(tmp_path / f"run{i}.jsonl") for i in range(2)]
    done = [r["input"] for rows in reports for r in rows if r["status"] == "done"]
    assert sorted(done) == sorted(str(src / f"p{i:02d}.png") for i in range(n))
    for rows, (_, _, _, nother) in zip(reports, counts, strict=True):
        assert len(rows) == n  # a row for every page in each report: done here or elsewhere
        assert sum(r["status"] == "elsewhere" for r in rows) == nother
    assert outputs(out).keys() == {f"p{i:02d}.bin.png" for i in range(n)}
    assert not (out / CLAIMS_DIR).exists()  # every claim released


def test_a_page_done_by_another_run_after_this_one_started_counts_as_theirs(tmp_path, capsys, monkeypatch):
    import ocrobin.batch.files as batch_files

    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    write_page(out / "p00.bin.png", seed=9)  # done by an earlier run
    marker = b"written by the other run"
    real = batch_files.run_file

    def run_file(binarizer, task):  # while this run works on p01, the other run finishes p02
        if task.job.rel.name == "p01":
            (out / "p02.bin.png").write_bytes(marker)
        return real(binarizer, task)

    monkeypatch.setattr(batch_files, "run_file", run_file)
    assert main(["binarize", str(src), "-o", str(out), *ONE, "--report", str(tmp_path / "r.jsonl")]) == 0
    assert summary_counts(capsys.readouterr().err) == (1, 1, 0, 1)
    assert (out / "p02.bin.png").read_bytes() == marker
    rows = [(os.path.basename(r["input"]), r["status"]) for r in read_report(tmp_path / "r.jsonl")]
    assert rows == [("p00.png", "skipped"), ("p01.png", "done"), ("p02.png", "elsewhere")]


def write_claim(out, key, pid, host=None):
    d = out / CLAIMS_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / (hashlib.sha1(key.encode()).hexdigest()[:32] + ".claim")
    path.write_text(json.dumps({"key": key, "host": host or socket.gethostname(), "pid": pid, "token": "dead",
                                "time": time.time()}))
    return path


def test_a_dead_runs_claim_is_taken_over(tmp_path, capsys):
    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    dead = subprocess.Popen(["true"])
    dead.wait()
    claim = write_claim(out, "p01", dead.pid)
    t0 = time.monotonic()
    rc = main(["binarize", str(src), "-o", str(out), *ONE, "--claim-timeout", "30", "--report",
               str(tmp_path / "r.jsonl")])
    assert rc == 0
    assert time.monotonic() - t0 < 15  # taken over at once, not after the timeout
    assert summary_counts(capsys.readouterr().err) == (3, 0, 0, 0)
    assert (out / "p01.bin.png").exists() and not claim.exists()
    rows = read_report(tmp_path / "r.jsonl")
    assert sorted((r["input"], r["status"]) for r in rows) == [(str(src / f"p{i:02d}.png"), "done") for i in range(3)]


def test_a_dead_runs_claim_on_a_page_it_had_written_is_removed_at_the_end(tmp_path, capsys):
    # killed after writing p01 and before letting go of its claim: nobody takes p01 over, the claim must still go
    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert main(["binarize", str(src / "p01.png"), "-o", str(out), *ONE]) == 0
    capsys.readouterr()
    dead = subprocess.Popen(["true"])
    dead.wait()
    claim = write_claim(out, "p01", dead.pid)
    half = claim.with_name(claim.name + ".dead.tmp")  # a take-over the dead run never finished
    half.write_text("{}")
    os.utime(half, (time.time() - 120, time.time() - 120))
    live = write_claim(out, "p09", os.getpid())  # another run here still works on p09: its claim stays
    assert main(["binarize", str(src), "-o", str(out), *ONE, "--claim-timeout", "30"]) == 0
    assert summary_counts(capsys.readouterr().err) == (2, 1, 0, 0)
    assert not claim.exists() and not half.exists() and live.exists()
    live.unlink()
    assert main(["binarize", str(src), "-o", str(out), *ONE]) == 0
    assert not (out / CLAIMS_DIR).exists()  # a finished folder holds outputs only


def test_a_live_runs_claim_makes_the_run_wait_and_count_it_as_done_elsewhere(tmp_path, capsys):
    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    marker = b"written by the other run"
    t = hold_then_release(out, "p01", (out / "p02.bin.png").exists, lambda: (out / "p01.bin.png").write_bytes(marker))
    try:
        rc = main(["binarize", str(src), "-o", str(out), *ONE, "--report", str(tmp_path / "r.jsonl")])
    finally:
        t.join()
    assert rc == 0
    err = capsys.readouterr().err
    assert summary_counts(err) == (2, 0, 0, 1) and "1 done by other runs" in err
    assert (out / "p01.bin.png").read_bytes() == marker  # not done twice
    rows = {r["input"]: r["status"] for r in read_report(tmp_path / "r.jsonl")}
    assert rows == {str(src / "p00.png"): "done", str(src / "p01.png"): "elsewhere", str(src / "p02.png"): "done"}


def test_a_claim_let_go_without_the_page_done_is_done_here(tmp_path, capsys):
    # the other run was interrupted (Ctrl-C releases its claims) before it wrote the page
    src = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out"
    t = hold_then_release(out, "p01", (out / "p02.bin.png").exists)
    try:
        rc = main(["binarize", str(src), "-o", str(out), *ONE, "--report", str(tmp_path / "r.jsonl")])
    finally:
        t.join()
    assert rc == 0
    assert summary_counts(capsys.readouterr().err) == (3, 0, 0, 0)
    assert outputs(out).keys() == {"p00.bin.png", "p01.bin.png", "p02.bin.png"}
    assert sorted(r["status"] for r in read_report(tmp_path / "r.jsonl")) == ["done"] * 3


# --- worker processes (issue 12.3) --------------------------------------------------------------------------


def rows_without_seconds(path, root, out):
    """The report's rows without the timing, paths relative to ``root`` and the output folder called ``out``."""
    rows = []
    for r in read_report(path):
        r = {k: v for k, v in r.items() if k != "seconds"}
        for k in ("input", "output"):
            if r.get(k):
                r[k] = os.path.relpath(r[k], root).replace(out, "out", 1)
        rows.append(r)
    return rows


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_two_workers_give_what_one_gives(tmp_path, capsys, fmt):
    src = make_folder(tmp_path / "in", 7)
    frames = [Image.fromarray(text_page(seed=s)) for s in (20, 21)]
    frames[0].save(src / "m.tif", save_all=True, append_images=frames[1:], dpi=(300, 300))
    (src / "bad.png").write_bytes(b"garbage")
    write_page(src / "z" / "inv.png", seed=22)
    Image.fromarray(255 - text_page(seed=23)).save(src / "z" / "neg.png")
    got = {}
    for w in ("1", "2"):
        out = tmp_path / f"out{w}"
        rc = main(["binarize", str(src), "-o", str(out), *FAST, "--workers", w, "--format", fmt, "--prob",
                   "--report", str(tmp_path / f"r{w}.jsonl")])
        assert rc == 1
        err = capsys.readouterr().err
        got[w] = (outputs(out), rows_without_seconds(tmp_path / f"r{w}.jsonl", tmp_path, f"out{w}"),
                  summary_counts(err))
    assert got["1"][0] == got["2"][0]  # byte-identical outputs
    assert got["1"][1] == got["2"][1]  # the same rows (but the seconds), in the same order
    assert got["1"][2] == got["2"][2] == (11, 0, 1, 0)
    # the report follows the input order (the walk's sorted order), multi-page pages in page order
    order = [(r["input"], r["page"]) for r in got["2"][1]]
    assert order == [("in/bad.png", None), ("in/m.tif", 1), ("in/m.tif", 2),
                     *[(f"in/p{i:02d}.png", None) for i in range(7)], ("in/z/inv.png", None), ("in/z/neg.png", None)]
    assert [r["polarity"] for r in got["2"][1] if r["input"] == "in/z/neg.png"] == ["inverted"]

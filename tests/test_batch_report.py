"""The run report (``ocrobin binarize --report``, ``ocrobin report``): a row per page, kept across kills."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from ocrobin.batch import read_report
from ocrobin.cli import main

from .conftest import text_page

ONE = ["-m", "lstm2-seed", "--no-progress", "--workers", "1"]
FIELDS = {"input", "key", "page", "output", "status", "width", "height", "dpi", "seconds", "ink_fraction",
          "polarity", "confidence", "flags", "error"}


def make_inputs(d):
    """A single page with its DPI, a two-page TIFF of other sizes and DPI, a negative page, a broken file."""
    d.mkdir(parents=True)
    Image.fromarray(text_page(seed=1)).save(d / "a.png", dpi=(300, 300))
    frames = [Image.fromarray(text_page(80, 120, seed=2)), Image.fromarray(text_page(64, 100, seed=3))]
    frames[1].encoderinfo = {"dpi": (150, 150)}
    frames[0].save(d / "m.tif", save_all=True, append_images=frames[1:], dpi=(200, 200))
    Image.fromarray(255 - text_page(seed=4)).save(d / "neg.png")
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but no more")
    return d


def by_page(rows):
    return {(os.path.basename(r["input"]), r["page"]): r for r in rows}


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_rows_of_done_failed_and_skipped_pages(tmp_path, capsys, suffix):
    src = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    report = tmp_path / f"run.{suffix}"
    assert main(["binarize", str(src), "-o", str(out), "--report", str(report), *ONE]) == 1
    capsys.readouterr()
    rows = read_report(report)
    assert all(set(r) == FIELDS for r in rows)
    got = by_page(rows)
    assert list(got) == [("a.png", None), ("bad.png", None), ("m.tif", 1), ("m.tif", 2), ("neg.png", None)]
    expect = {("a.png", None): ("a.bin.png", 160, 96, [300, 300]),
              ("m.tif", 1): ("m-0001.bin.png", 120, 80, [200, 200]),
              ("m.tif", 2): ("m-0002.bin.png", 100, 64, [150, 150]),
              ("neg.png", None): ("neg.bin.png", 160, 96, None)}
    for k, (name, w, h, dpi) in expect.items():
        r = got[k]
        assert r["status"] == "done" and r["error"] is None
        assert r["input"] == str(src / k[0]) and r["output"] == str(out / name) and (out / name).exists()
        assert (r["width"], r["height"]) == (w, h)
        assert r["dpi"] == (pytest.approx(dpi, abs=0.1) if dpi else None)
        assert r["seconds"] > 0
        ink = np.asarray(Image.open(out / name)) == 0
        assert r["ink_fraction"] == pytest.approx(ink.mean(), abs=1e-5)
        assert 0.0 <= r["confidence"] <= 1.0 and isinstance(r["flags"], list)
        assert ("low-confidence" in r["flags"]) == (r["confidence"] < 0.8)
    assert got[("a.png", None)]["polarity"] == "normal"
    assert got[("neg.png", None)]["polarity"] == "inverted" and "inverted" in got[("neg.png", None)]["flags"]
    bad = got[("bad.png", None)]
    assert bad["status"] == "failed" and bad["output"] is None and str(src / "bad.png") in bad["error"]
    # a rerun appends: skipped rows for the pages done, the failed page fails again
    assert main(["binarize", str(src), "-o", str(out), "--report", str(report), *ONE]) == 1
    capsys.readouterr()
    rows2 = read_report(report)
    assert rows2[: len(rows)] == rows
    again = by_page(rows2[len(rows):])
    assert list(again) == list(got)
    for k in expect:
        assert again[k]["status"] == "skipped" and again[k]["output"] == got[k]["output"]
    assert again[("bad.png", None)]["status"] == "failed"


def test_jsonl_and_csv_reports_hold_the_same_rows(tmp_path, capsys):
    src = make_inputs(tmp_path / "in")
    for suffix in ("jsonl", "csv"):
        assert main(["binarize", str(src), "-o", str(tmp_path / suffix), "--report", str(tmp_path / f"r.{suffix}"),
                     *ONE]) == 1
    capsys.readouterr()
    a, b = (read_report(tmp_path / f"r.{s}") for s in ("jsonl", "csv"))
    for r in a + b:
        r["seconds"] = None
        r["flags"] = r["flags"] or []  # a failed row has none: null in JSON, an empty cell in CSV
        r["output"] = r["output"] and os.path.basename(r["output"])
    assert len(a) == len(b) == 5
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            if isinstance(v, float) or (k == "dpi" and v):
                assert rb[k] == pytest.approx(v, rel=1e-5), k  # the CSV writes the DPI with 6 digits
            else:
                assert rb[k] == v, k


def test_ocrobin_report_prints_the_summary_and_the_least_confident_pages(tmp_path, capsys):
    src = make_inputs(tmp_path / "in")
    report = tmp_path / "run.jsonl"
    main(["binarize", str(src), "-o", str(tmp_path / "out"), "--report", str(report), *ONE])
    main(["binarize", str(src), "-o", str(tmp_path / "out"), "--report", str(report), *ONE])  # skipped rows
    capsys.readouterr()
    rows = [r for r in read_report(report)[:5] if r["status"] == "done"]
    worst = sorted(rows, key=lambda r: r["confidence"])
    plot = tmp_path / "conf.png"
    assert main(["report", str(report), "-n", "2", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    # a page reported twice (done, then skipped) counts once, as done
    assert lines[0] == "5 page(s): 4 done, 0 skipped, 1 failed, 0 elsewhere"
    i = lines.index("least confident 2:")
    for line, r in zip(lines[i + 1:i + 3], worst[:2], strict=True):
        assert line.split()[0] == f"{r['confidence']:.3f}" and r["input"] in line
        assert (f" page {r['page']}" in line) == (r["page"] is not None)
    assert f"confidence: min {worst[0]['confidence']:.3f}" in text
    assert "failed 1:" in text and str(src / "bad.png") in text
    assert f"confidence histogram in {plot}" in text
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size[0] > 100
    # --plot onto the report itself is refused
    assert main(["report", str(report), "--plot", str(report)]) == 2
    assert read_report(report)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_report_cut_by_a_kill_is_read_and_completed_by_the_rerun(tmp_path, capsys, suffix):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(text_page(seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "out"
    report = tmp_path / f"run.{suffix}"
    assert main(["binarize", str(src), "-o", str(out), "--report", str(report), *ONE]) == 0
    # as if the run had been killed while writing the last row, before writing its output
    data = report.read_bytes()
    report.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 25])
    (out / "p3.bin.png").unlink()
    rows = read_report(report)
    assert [os.path.basename(r["input"]) for r in rows] == ["p0.png", "p1.png", "p2.png"]
    assert main(["report", str(report)]) == 0
    assert capsys.readouterr().out.startswith("3 page(s): 3 done,")
    # the rerun appends after the cut line: its rows are read, every page has one done row
    assert main(["binarize", str(src), "-o", str(out), "--report", str(report), *ONE]) == 0
    capsys.readouterr()
    rows = read_report(report)
    status = Counter((os.path.basename(r["input"]), r["status"]) for r in rows)
    assert status == {("p0.png", "done"): 1, ("p1.png", "done"): 1, ("p2.png", "done"): 1,
                      ("p0.png", "skipped"): 1, ("p1.png", "skipped"): 1, ("p2.png", "skipped"): 1,
                      ("p3.png", "done"): 1}
    assert main(["report", str(report)]) == 0
    assert capsys.readouterr().out.startswith("4 page(s): 4 done,")


def test_a_killed_run_and_its_rerun_report_every_page_done_once(tmp_path):
    n = 40
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        Image.fromarray(text_page(seed=i)).save(src / f"p{i:02d}.png")
    out = tmp_path / "out"
    report = tmp_path / "run.jsonl"
    cmd = [sys.executable, "-m", "ocrobin", "binarize", str(src), "-o", str(out), "--report", str(report),
           "--threads", "1", *ONE]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            if report.exists() and report.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    first = read_report(report)
    done1 = [r["input"] for r in first if r["status"] == "done"]
    assert 3 <= len(done1) < n, "the run was to be killed midway"
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_report(report)
    assert rows[: len(first)] == first
    done = Counter(r["input"] for r in rows if r["status"] == "done")
    assert done == {str(src / f"p{i:02d}.png"): 1 for i in range(n)}  # every page done exactly once
    skipped = [r["input"] for r in rows[len(first):] if r["status"] == "skipped"]
    assert sorted(skipped) == sorted(done1)
    assert f"done {n - len(done1)}, skipped {len(done1)}, failed 0" in rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"p{i:02d}.bin.png" for i in range(n)]
    assert json.loads(report.read_text().splitlines()[-1])["status"] in ("done", "skipped")

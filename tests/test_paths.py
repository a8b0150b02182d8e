"""Outputs never overwrite or re-read inputs: ``paths.check_no_clash`` and every command that writes files.

Each command is driven from the command line: a clash is exit status 2 with one line naming the output and
the input, whatever ``--overwrite`` says, and nothing is written.
"""

import hashlib
import os

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from ocrobin.cli import main
from ocrobin.exceptions import UsageError
from ocrobin.imageio import encode_png
from ocrobin.paths import check_no_clash, inside, resolved

from .conftest import text_page

FAST = ["-m", "lstm2-seed", "--no-progress", "--workers", "1"]


def write_page(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(text_page(seed=seed)).save(path)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_lines(err):
    return [ln for ln in err.splitlines() if "error" in ln]


def assert_one_clash_line(err, *paths):
    """Exactly one error line, and it names every path (the output and the input it would overwrite)."""
    lines = error_lines(err)
    assert len(lines) == 1, err
    for p in paths:
        assert str(p) in lines[0], (p, lines[0])
    return lines[0]


# --- check_no_clash -----------------------------------------------------------------------------------


def test_same_path_and_different_paths(tmp_path):
    a = write_page(tmp_path / "a.png")
    with pytest.raises(UsageError, match=f"report {tmp_path / 'a.png'} is the input {a}"):
        check_no_clash([a], [tmp_path / "b.png", a], "report")
    check_no_clash([a], [tmp_path / "a.bin.png", tmp_path / "b" / "a.png"])  # no clash: no error
    check_no_clash([], [a])  # nothing read: nothing to clash with


def test_symlinked_folder_is_resolved_even_where_the_files_do_not_exist(tmp_path):
    # names only (no file on disk yet), so only the resolution of the link can see it
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(UsageError, match="is the input"):
        check_no_clash([tmp_path / "real" / "x-000000.tar"], [tmp_path / "link" / "x-000000.tar"])
    with pytest.raises(UsageError, match="is the input"):
        check_no_clash([tmp_path / "link" / "x.png"], [tmp_path / "real" / "x.png"])


def test_symlinked_file(tmp_path):
    a = write_page(tmp_path / "a.png")
    (tmp_path / "l.png").symlink_to(a)
    with pytest.raises(UsageError, match="is the input"):
        check_no_clash([a], [tmp_path / "l.png"])


def test_dotdot_in_the_path(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    with pytest.raises(UsageError, match="is the input"):
        check_no_clash([tmp_path / "d" / "x.tar"], [tmp_path / "d" / "sub" / ".." / "x.tar"])
    # a relative path and its absolute form are the same file
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UsageError, match="is the input"):
            check_no_clash(["d/x.tar"], [tmp_path / "d" / "sub" / ".." / "x.tar"])
    finally:
        os.chdir(cwd)


def test_dotdot_through_a_symlink_goes_where_the_link_points(tmp_path):
    # link/.. is the parent of the link's target, not the folder holding the link
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b", target_is_directory=True)
    with pytest.raises(UsageError, match="is the input"):
        check_no_clash([tmp_path / "a" / "x.tar"], [tmp_path / "link" / ".." / "x.tar"])
    check_no_clash([tmp_path / "x.tar"], [tmp_path / "link" / ".." / "x.tar"])


def test_hard_link_is_the_same_file(tmp_path):
    a = write_page(tmp_path / "a.png")
    os.link(a, tmp_path / "hard.png")
    with pytest.raises(UsageError, match=f"hard.png is the input {a}"):
        check_no_clash([a], [tmp_path / "hard.png"])


def test_urls_are_ignored(tmp_path):
    url = "https://example.org/books-000000.tar"
    check_no_clash([url], [url])
    check_no_clash([url, "pipe://curl -s x"], [url, "pipe://curl -s x"])
    a = write_page(tmp_path / "a.png")
    with pytest.raises(UsageError):  # a local input next to a URL is still checked
        check_no_clash([url, a], [a])


def test_inside():
    assert inside("/x/y", "/x/y") and inside("/x/y/z", "/x/y") and inside("/x/y/../y/z", "/x/y")
    assert not inside("/x/yz", "/x/y") and not inside("/x", "/x/y")
    assert resolved("/x/./y/../z") == resolved("/x/z")


# --- binarize --------------------------------------------------------------------------------------------


def make_shard(path, keys):
    with wds.TarWriter(str(path)) as w:
        for i, k in enumerate(keys):
            w.write({"__key__": k, "gray.png": encode_png(text_page(seed=i))})
    return path


@pytest.mark.parametrize("overwrite", [False, True])
def test_shard_output_pattern_equal_to_the_inputs(tmp_path, capsys, overwrite):
    d = tmp_path / "books"
    d.mkdir()
    ins = [make_shard(d / f"books-{i:06d}.tar", [f"k{i}a", f"k{i}b"]) for i in range(2)]
    before = [digest(p) for p in ins]
    (tmp_path / "link").symlink_to(d, target_is_directory=True)
    (d / "sub").mkdir()
    cases = [
        (str(d / "books-%06d.tar"), d / "books-000000.tar"),                    # the same pattern
        (str(tmp_path / "link" / "books-%06d.tar"), tmp_path / "link" / "books-000000.tar"),  # through a link
        (str(d / "sub" / ".." / "books-%06d.tar"), d / "sub" / ".." / "books-000000.tar"),  # through ..
    ]
    for pattern, first_out in cases:
        rc = main(["binarize", "--shards", str(d / "books-{000000..000001}.tar"), "-o", pattern, *FAST,
                   *(["--overwrite"] if overwrite else [])])
        assert rc == 2, pattern
        assert_one_clash_line(capsys.readouterr().err, first_out, d / "books-000000.tar")
        assert [digest(p) for p in ins] == before  # the inputs are unchanged, byte for byte
        assert sorted(p.name for p in d.iterdir()) == ["books-000000.tar", "books-000001.tar", "sub"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_binarize_a_folder_into_itself_with_an_earlier_output_there(tmp_path, capsys, overwrite):
    d = tmp_path / "dir"
    write_page(d / "a.png")
    write_page(d / "a.bin.png", seed=1)  # an earlier output, now among the inputs
    before = {p.name: digest(p) for p in d.iterdir()}
    rc = main(["binarize", f"{d}/", "-o", f"{d}/", *FAST, *(["--overwrite"] if overwrite else [])])
    assert rc == 2
    line = assert_one_clash_line(capsys.readouterr().err, d / "a.bin.png")
    assert line.count(str(d / "a.bin.png")) == 2  # as the output and as the input
    assert {p.name: digest(p) for p in d.iterdir()} == before
    # the same through a glob
    rc = main(["binarize", str(d / "*.png"), "-o", str(d), *FAST, *(["--overwrite"] if overwrite else [])])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, d / "a.bin.png")
    assert {p.name: digest(p) for p in d.iterdir()} == before


def test_binarize_a_folder_into_itself_writes_beside_the_pages(tmp_path, capsys):
    d = tmp_path / "dir"
    write_page(d / "a.png")
    assert main(["binarize", str(d), "-o", str(d), *FAST]) == 0
    assert "done 1," in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == ["a.bin.png", "a.png"]


def test_prob_output_equal_to_an_input(tmp_path, capsys):
    src = write_page(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    write_page(out / "a.prob.png", seed=3)
    before = digest(out / "a.prob.png")
    rc = main(["binarize", str(src), str(out / "a.prob.png"), "-o", str(out), "--prob", "--overwrite", *FAST])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, out / "a.prob.png")
    assert digest(out / "a.prob.png") == before and not (out / "a.bin.png").exists()


def test_report_equal_to_an_input(tmp_path, capsys):
    src = write_page(tmp_path / "a.png")
    before = digest(src)
    rc = main(["binarize", str(src), "-o", str(tmp_path / "out"), "--report", str(src), *FAST])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, src)
    assert digest(src) == before and not (tmp_path / "out").exists()
    # a report named .csv that is given as an input
    csvfile = tmp_path / "list.csv"
    csvfile.write_text("not a report\n")
    rc = main(["binarize", str(src), str(csvfile), "-o", str(tmp_path / "out"), "--report", str(csvfile), *FAST])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, csvfile)
    assert csvfile.read_text() == "not a report\n"
    # shards: the report may not be one of the input shards
    shard = make_shard(tmp_path / "in-000000.tar", ["k"])
    before = digest(shard)
    link = tmp_path / "again.tar"
    link.symlink_to(shard)
    rc = main(["binarize", "--shards", str(shard), "-o", str(tmp_path / "o-%06d.tar"), "--report",
               str(tmp_path / "sub" / ".." / "in-000000.tar"), *FAST])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, shard)
    assert digest(shard) == before and not (tmp_path / "o-000000.tar").exists()


def test_output_folder_inside_the_input_folder_is_left_out(tmp_path, capsys):
    scans = tmp_path / "scans"
    write_page(scans / "a.png")
    write_page(scans / "x" / "b.png", seed=1)
    assert main(["binarize", f"{scans}/", "-o", f"{scans}/bin/", *FAST]) == 0
    assert "done 2," in capsys.readouterr().err
    for _ in range(2):  # reruns resume: they neither read the outputs nor write into bin/bin/
        assert main(["binarize", f"{scans}/", "-o", f"{scans}/bin/", *FAST]) == 0
        err = capsys.readouterr().err
        assert "left out of the inputs" in err and str(scans / "bin") in err
        assert "done 0, skipped 2, failed 0" in err
    assert not (scans / "bin" / "bin").exists()
    assert sorted(str(p.relative_to(scans)) for p in scans.rglob("*") if p.is_file()) == [
        "a.png", "bin/a.bin.png", "bin/x/b.bin.png", "x/b.png"]
    # a glob over the whole tree leaves the output folder out too (glob outputs are not mirrored: b is new)
    assert main(["binarize", str(scans / "**" / "*.png"), "-o", str(scans / "bin"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "left out of the inputs" in err and "done 1, skipped 1, failed 0" in err
    assert not list(scans.rglob("*.bin.bin.png"))
    # and so does a shell-expanded scans/* that names the output folder beside the pages
    assert main(["binarize", *sorted(str(p) for p in scans.iterdir()), "-o", str(scans / "bin"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "left out of the inputs" in err and "done 0, skipped 2, failed 0" in err
    assert not list(scans.rglob("*.bin.bin.png")) and not (scans / "bin" / "bin").exists()


# --- the other commands ----------------------------------------------------------------------------------


def make_set(root, stems=("p0", "p1")):
    for i, stem in enumerate(stems):
        g = text_page(64, 64, seed=i)
        for sub, arr in (("img", g), ("gt", np.where(g < 120, 0, 255).astype(np.uint8))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / sub / f"{stem}.png")
    return root


def snapshot(root):
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_degrade_out_or_preview_equal_to_a_clean_page(tmp_path, capsys):
    clean = tmp_path / "clean"
    write_page(clean / "p-000000.png")
    write_page(clean / "q.png", seed=1)
    before = snapshot(tmp_path)
    rc = main(["degrade", "--pages", "1", "--size", "64..64", "--clean", str(clean),
               "--out", str(clean / "p-%06d.png")])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, clean / "p-000000.png")
    rc = main(["degrade", "--size", "64..64", "--clean", str(clean), "--preview", str(clean / "x" / ".." / "q.png")])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, clean / "q.png")
    assert snapshot(tmp_path) == before


def test_shards_out_equal_to_a_pairs_file(tmp_path, capsys):
    make_set(tmp_path / "sets" / "S", stems=("p-000000", "b"))
    before = snapshot(tmp_path)
    out = tmp_path / "sets" / "S" / "gt" / "p-%06d.png"
    rc = main(["shards", "--pairs", str(tmp_path / "sets"), "--out", str(out)])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, tmp_path / "sets" / "S" / "gt" / "p-000000.png")
    assert snapshot(tmp_path) == before


def test_bench_save_pred_onto_an_input(tmp_path, capsys):
    # benchmarking saved predictions again into the same folder: OUT/pred/S/img/p.bin.png is the input
    # image of page "p.bin" of set S under --data OUT/pred
    out = tmp_path / "bench"
    make_set(out / "pred" / "S", stems=("p", "p.bin"))
    before = snapshot(tmp_path)
    rc = main(["bench", "--data", str(out / "pred"), "--out", str(out), "--methods", "img", "--save-pred",
               "--no-progress"])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, out / "pred" / "S" / "img" / "p.bin.png")
    assert snapshot(tmp_path) == before


def test_eval_json_or_csv_equal_to_a_prediction(tmp_path, capsys):
    make_set(tmp_path / "gtset")
    pred = tmp_path / "pred"
    write_page(pred / "p0.bin.png")
    write_page(pred / "p1.bin.png", seed=1)
    before = snapshot(tmp_path)
    for flag in ("--json", "--csv"):
        rc = main(["eval", "--pred", str(pred), "--gt", str(tmp_path / "gtset" / "gt"), flag, str(pred / "p1.bin.png")])
        assert rc == 2
        assert_one_clash_line(capsys.readouterr().err, pred / "p1.bin.png")
    assert snapshot(tmp_path) == before


TRAIN = ["--ntrain", "4", "-b", "4", "--patch", "64", "--no-progress"]
TINY = ["--hparams", '{"widths": [8, 8, 8, 8], "head": 4}']


def test_train_log_or_plot_onto_a_data_file(tmp_path, capsys):
    data = make_set(tmp_path / "d" / "S", stems=("p0", "m.plot"))
    before = snapshot(tmp_path)
    rc = main(["train", "-d", str(tmp_path / "d"), "-o", str(data / "img" / "m"), *TRAIN, *TINY])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, data / "img" / "m.plot.png")
    # a shard named like the log
    shard = tmp_path / "run.log.csv"
    g = text_page(64, 64)
    with wds.TarWriter(str(shard)) as w:
        w.write({"__key__": "k", "gray.png": encode_png(g),
                 "bin.png": encode_png(np.where(g < 120, 0, 255).astype(np.uint8))})
    before = snapshot(tmp_path)
    rc = main(["train", "-d", str(shard), "-o", str(tmp_path / "run"), *TRAIN, *TINY])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, shard)
    assert snapshot(tmp_path) == before


def test_train_resume_that_would_overwrite_its_checkpoint(tmp_path, capsys):
    make_set(tmp_path / "d" / "S")
    prefix = tmp_path / "c" / "m"
    assert main(["train", "-d", str(tmp_path / "d"), "-o", str(prefix), *TRAIN, *TINY]) == 0
    ck = capsys.readouterr().out.split("last checkpoint: ")[1].strip()
    before = snapshot(tmp_path)
    rc = main(["train", "-d", str(tmp_path / "d"), "-m", ck, "-o", str(prefix), "--ntrain", "0", "-b", "4",
               "--patch", "64", "--no-progress"])
    assert rc == 2
    assert_one_clash_line(capsys.readouterr().err, ck)
    assert snapshot(tmp_path) == before

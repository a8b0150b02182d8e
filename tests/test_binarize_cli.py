"""End-to-end tests of ``ocrobin binarize`` and ``ocrobin-pred``: one per input mode, plus bad inputs."""

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from ocrobin.cli import main
from ocrobin.cli.pred import main as pred_main
from ocrobin.imageio import encode_png
from ocrobin.infer import Binarizer
from ocrobin.shards import iter_samples

from .conftest import text_page

FAST = ["-m", "lstm2-seed", "--no-progress"]


def write_page(path, seed=0, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(text_page(seed=seed)).save(path, **kw)
    return path


def test_files_png_with_dpi_and_prob(tmp_path):
    src = write_page(tmp_path / "in" / "a.png", dpi=(300, 300))
    out = tmp_path / "out"
    assert main(["binarize", str(src), "-o", str(out), "--prob", *FAST]) == 0
    with Image.open(out / "a.bin.png") as im:
        assert im.mode == "1" and im.size == (160, 96)
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        ink = np.asarray(im) == 0
    prob = np.asarray(Image.open(out / "a.prob.png"))
    assert prob.dtype == np.uint8
    assert np.array_equal(ink, prob >= 128)
    assert 0.02 < ink.mean() < 0.5


def test_directory_layout_is_mirrored_and_glob(tmp_path):
    write_page(tmp_path / "in" / "x" / "p1.png")
    write_page(tmp_path / "in" / "y" / "z" / "p2.jpg", seed=1)
    out = tmp_path / "out"
    assert main(["binarize", str(tmp_path / "in"), "-o", str(out), *FAST]) == 0
    assert (out / "x" / "p1.bin.png").exists() and (out / "y" / "z" / "p2.bin.png").exists()
    out2 = tmp_path / "out2"
    assert main(["binarize", str(tmp_path / "in" / "**" / "*.jpg"), "-o", str(out2), *FAST]) == 0
    assert [p.name for p in out2.iterdir()] == ["p2.bin.png"]


def test_tif_output_is_g4(tmp_path):
    src = write_page(tmp_path / "a.png")
    assert main(["binarize", str(src), "-o", str(tmp_path / "o"), "--format", "tif", *FAST]) == 0
    with Image.open(tmp_path / "o" / "a.bin.tif") as im:
        assert im.mode == "1" and im.info["compression"] == "group4"


def test_multipage_tiff_gives_one_output_per_page(tmp_path):
    frames = [Image.fromarray(text_page(seed=s)) for s in range(3)]
    src = tmp_path / "m.tif"
    frames[0].save(src, save_all=True, append_images=frames[1:])
    assert main(["binarize", str(src), "-o", str(tmp_path / "o"), *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "m-0001.bin.png", "m-0002.bin.png", "m-0003.bin.png"]


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, capsys):
    d = tmp_path / "in"
    write_page(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    (d / "junk.png").write_bytes(b"not an image at all")
    good = d / "good.png"
    (d / "cut.png").write_bytes(good.read_bytes()[:300])
    Image.new("L", (50, 40), 200).save(d / "blank.png")
    rc = main(["binarize", str(d), str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"), *FAST])
    assert rc == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("ocrobin: error:")]
    assert len(lines) == 4
    for name in ("empty.png", "junk.png", "cut.png", "missing.png"):
        assert sum(name in ln for ln in lines) == 1
    assert "done 2, skipped 0, failed 4" in err
    assert (tmp_path / "o" / "good.bin.png").exists()
    blank = np.asarray(Image.open(tmp_path / "o" / "blank.bin.png"))
    assert blank.all()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, capsys):
    src = write_page(tmp_path / "a.png")
    out = tmp_path / "o"
    assert main(["binarize", str(src), "-o", str(out), *FAST]) == 0
    (out / "a.bin.png").write_bytes(b"marker")
    assert main(["binarize", str(src), "-o", str(out), *FAST]) == 0
    assert "skipped 1" in capsys.readouterr().err
    assert (out / "a.bin.png").read_bytes() == b"marker"
    assert main(["binarize", str(src), "-o", str(out), "--overwrite", *FAST]) == 0
    assert (out / "a.bin.png").read_bytes() != b"marker"


def test_tiling_mode_matches_untiled(tmp_path):
    src = write_page(tmp_path / "a.png")
    assert main(["binarize", str(src), "-o", str(tmp_path / "full"), "--tile", "0", *FAST]) == 0
    assert main(["binarize", str(src), "-o", str(tmp_path / "tiled"), "--tile", "64", "--overlap", "16",
                 *FAST]) == 0
    a = np.asarray(Image.open(tmp_path / "full" / "a.bin.png"))
    b = np.asarray(Image.open(tmp_path / "tiled" / "a.bin.png"))
    assert (a == b).mean() > 0.98


def make_shard(path, samples):
    with wds.TarWriter(str(path)) as w:
        for s in samples:
            w.write(s)


def test_shards_mode(tmp_path, capsys):
    good = [{"__key__": f"k{i}", "gray.png": encode_png(text_page(seed=i))} for i in range(3)]
    make_shard(tmp_path / "in-000000.tar", good[:2])
    make_shard(tmp_path / "in-000001.tar", [
        good[2],
        {"__key__": "jpg", "gray.jpg": encode_png(text_page(seed=5))},
        {"__key__": "wrongkey", "color.png": encode_png(text_page(seed=6))},
        {"__key__": "corrupt", "gray.png": b"garbage"},
    ])
    pattern = str(tmp_path / "out-%06d.tar")
    rc = main(["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o", pattern, "--prob", *FAST])
    assert rc == 1
    err = capsys.readouterr().err
    assert "wrongkey" in err and "corrupt" in err
    keys = {}
    for s in iter_samples(str(tmp_path / "out-{000000..000001}.tar")):
        keys[s["__key__"]] = s
    # every input key is in the output once: its pages, or the reason it failed
    assert sorted(keys) == ["corrupt", "jpg", "k0", "k1", "k2", "wrongkey"]
    for k in ("jpg", "k0", "k1", "k2"):
        assert set(keys[k]) >= {"bin.png", "prob.png"} and "error.txt" not in keys[k]
    for k in ("corrupt", "wrongkey"):
        assert "bin.png" not in keys[k] and k in keys[k]["error.txt"].decode()
    assert "color.png" in keys["wrongkey"]["error.txt"].decode()  # the keys it has are named
    binimg = np.asarray(Image.open(__import__("io").BytesIO(keys["k0"]["bin.png"])))
    assert set(np.unique(binimg)) <= {0, 255}
    # rerun skips finished shards
    assert main(["binarize", "--shards", str(tmp_path / "in-{000000..000001}.tar"), "-o", pattern, *FAST]) == 0
    assert "skipped 6" in capsys.readouterr().err


def test_ocrobin_pred_compatible_entry(tmp_path):
    make_shard(tmp_path / "in.tar", [{"__key__": "a", "gray.png": encode_png(text_page())}])
    rc = pred_main([str(tmp_path / "in.tar"), "-o", str(tmp_path / "o-%04d.tar"), "-m", "lstm2-seed",
                    "--batchsize", "4", "--invert"])
    assert rc == 0
    (s,) = list(iter_samples(str(tmp_path / "o-0000.tar")))
    got = np.asarray(Image.open(__import__("io").BytesIO(s["bin.png"]))) == 0
    expected = Binarizer("lstm2-seed", polarity="normal").binarize(255 - text_page()) > 0.5
    assert np.array_equal(got, expected)


def test_usage_errors(tmp_path, capsys):
    assert main(["binarize", "-o", str(tmp_path)]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert main(["binarize", "x.png", "-o", str(tmp_path), "--threshold", "2"]) == 2
    assert main(["binarize", "x.png", "-o", str(tmp_path), "-m", "nosuchmodel"]) == 2
    assert "no packaged model" in capsys.readouterr().err


def test_invert_in_files_mode(tmp_path):
    src = write_page(tmp_path / "a.png")
    assert main(["binarize", str(src), "-o", str(tmp_path / "o"), "--invert", *FAST]) == 0
    got = np.asarray(Image.open(tmp_path / "o" / "a.bin.png")) == 0
    expected = Binarizer("lstm2-seed", polarity="normal").binarize(255 - text_page()) > 0.5
    assert np.array_equal(got, expected)


def test_multipage_tiff_pages_give_their_own_outputs_and_dpi(tmp_path):
    """Each page of a TIFF is binarized from its own pixels and keeps its own DPI."""
    pages = [text_page(96, 160, seed=1), text_page(80, 120, seed=2)[:, ::-1].copy(), text_page(110, 140, seed=3)]
    dpis = [(300, 300), (200, 200), (150, 120)]
    frames = [Image.fromarray(a) for a in pages]
    for frame, dpi in zip(frames[1:], dpis[1:], strict=True):
        frame.encoderinfo = {"dpi": dpi}
    src = tmp_path / "scan.tif"
    frames[0].save(src, save_all=True, append_images=frames[1:], dpi=dpis[0])
    out = tmp_path / "out"
    assert main(["binarize", str(src), "-o", str(out), *FAST]) == 0
    seed = Binarizer("lstm2-seed")
    got = []
    for i, (page, dpi) in enumerate(zip(pages, dpis, strict=True), start=1):
        with Image.open(out / f"scan-{i:04d}.bin.png") as im:
            assert im.info["dpi"] == pytest.approx(dpi, abs=0.05)  # PNG stores pixels per metre
            ink = np.asarray(im) == 0
        assert np.array_equal(ink, seed.binarize(page) > 0.5), f"page {i}"
        got.append(ink)
    assert got[0].shape != got[1].shape and 0.02 < got[2].mean() < 0.5


def test_prob_asked_on_a_rerun_is_written_for_every_page(tmp_path, capsys):
    """A rerun with --prob (no --overwrite) adds the probability maps that the first run did not write."""
    single = write_page(tmp_path / "in" / "a.png", seed=4)
    frames = [Image.fromarray(text_page(seed=s)) for s in (5, 6)]
    frames[0].save(tmp_path / "in" / "m.tif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    assert main(["binarize", str(tmp_path / "in"), "-o", str(out), *FAST]) == 0
    assert not list(out.glob("*.prob.png"))
    assert main(["binarize", str(tmp_path / "in"), "-o", str(out), "--prob", *FAST]) == 0
    capsys.readouterr()
    seed = Binarizer("lstm2-seed")
    for stem, page in [("a", text_page(seed=4)), ("m-0001", text_page(seed=5)), ("m-0002", text_page(seed=6))]:
        p = seed.binarize(page)
        assert np.array_equal(np.asarray(Image.open(out / f"{stem}.prob.png")), np.floor(p * 255).astype(np.uint8))
        assert np.array_equal(np.asarray(Image.open(out / f"{stem}.bin.png")) == 0, p > 0.5), stem
    assert single.exists()
    # now every output exists: a third run skips all three pages
    assert main(["binarize", str(tmp_path / "in"), "-o", str(out), "--prob", *FAST]) == 0
    assert "skipped 3" in capsys.readouterr().err

"""``ocrobin shards``: DIBCO-style folders packed into training shards."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrobin.cli import main
from ocrobin.cli.pack import safe_key
from ocrobin.datasets import find_pairs
from ocrobin.shards import iter_samples

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _gt(h: int = 40, w: int = 50, top: int = 10) -> np.ndarray:
    a = np.full((h, w), 255, np.uint8)
    a[top : top + 10, 5:45] = 0
    return a


def _colour_page(gt: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*gt.shape, 3), np.uint8)
    rgb[...] = (200, 180, 150)
    rgb[gt == 0] = (60, 40, 30)
    return rgb


@pytest.fixture
def dibco(tmp_path: Path) -> Path:
    """root/SetA (3 pages: one good, one without gt, one of another size), root/Set.B (colour page with a
    dotted name), root/deep/SetC (only an orphan gt)."""
    root = tmp_path / "data"
    a = root / "SetA"
    (a / "img").mkdir(parents=True)
    (a / "gt").mkdir()
    Image.fromarray(np.where(_gt() == 0, 50, 210).astype(np.uint8)).save(a / "img" / "p1.png")
    Image.fromarray(_gt()).save(a / "gt" / "p1.png")
    Image.fromarray(np.full((40, 50), 200, np.uint8)).save(a / "img" / "nogt.png")
    Image.fromarray(np.full((40, 50), 200, np.uint8)).save(a / "img" / "small.png")
    Image.fromarray(_gt(30, 50)).save(a / "gt" / "small.png")
    b = root / "Set.B"
    (b / "img").mkdir(parents=True)
    (b / "gt").mkdir()
    Image.fromarray(_colour_page(_gt(top=20))).save(b / "img" / "x.y.jpg", quality=95)
    Image.fromarray(_gt(top=20)).save(b / "gt" / "x.y_gt.png")
    c = root / "deep" / "SetC"
    (c / "gt").mkdir(parents=True)
    Image.fromarray(_gt()).save(c / "gt" / "orphan.png")
    return root


def _pack(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["shards", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_find_pairs_recurses_and_matches_stems(dibco: Path) -> None:
    pages = {(p.set, p.stem): p for p in find_pairs(dibco)}
    assert set(pages) == {
        ("SetA", "p1"),
        ("SetA", "nogt"),
        ("SetA", "small"),
        ("Set.B", "x.y"),
        ("deep/SetC", "orphan"),
    }
    assert pages["Set.B", "x.y"].gt is not None and pages["Set.B", "x.y"].gt.name == "x.y_gt.png"
    assert pages["SetA", "nogt"].gt is None and pages["deep/SetC", "orphan"].img is None


def test_pack_writes_good_pairs_and_reports_bad_ones(
    dibco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _pack(capsys, "--pairs", str(dibco), "--out", str(tmp_path / "real-%06d.tar"))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert any("nogt.png" in ln and "no ground truth" in ln for ln in lines)
    assert any("small.png" in ln and "differs" in ln for ln in lines)
    assert any("orphan.png" in ln and "no image" in ln for ln in lines)
    assert out.startswith("2 pairs from 2 set(s) into 1 shard(s)")
    samples = {s["__key__"]: s for s in iter_samples(str(tmp_path / "real-000000.tar"))}
    assert set(samples) == {"SetA_p1", "Set_B_x_y"}
    s = samples["SetA_p1"]
    gray = np.asarray(Image.open(io.BytesIO(s["gray.png"])))
    gt = np.asarray(Image.open(io.BytesIO(s["bin.png"])))
    assert gray.ndim == 2 and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, np.where(_gt() == 0, 50, 210))
    np.testing.assert_array_equal(gt, _gt())
    meta = json.loads(s["json"])
    assert meta["set"] == "SetA" and meta["stem"] == "p1" and meta["size"] == [40, 50]
    b = samples["Set_B_x_y"]
    assert Image.open(io.BytesIO(b["gray.png"])).mode == "L"  # colour pages become grey by default
    assert set(np.unique(np.asarray(Image.open(io.BytesIO(b["bin.png"]))))) == {0, 255}
    assert json.loads(b["json"])["set"] == "Set.B"


def test_rgb_keeps_colour_pages_in_colour(
    dibco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, _ = _pack(capsys, "--pairs", str(dibco / "Set.B"), "--out", str(tmp_path / "r-%03d.tar"), "--rgb")
    assert rc == 0
    (s,) = list(iter_samples(str(tmp_path / "r-000.tar")))
    img = Image.open(io.BytesIO(s["gray.png"]))
    assert img.mode == "RGB"
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert r > b + 20
    assert s["__key__"] == "Set_B_x_y"  # DIR is itself a set: its own name is the set name


def test_shard_size_splits_output(dibco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _pack(
        capsys, "--pairs", str(dibco), "--out", str(tmp_path / "r-%03d.tar"), "--shard-size", "1"
    )
    assert rc == 1 and "into 2 shard(s)" in out
    assert sorted(p.name for p in tmp_path.glob("r-*.tar")) == ["r-000.tar", "r-001.tar"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--pairs", "{root}/nowhere", "--out", "{tmp}/r-%03d.tar"], "no such directory"),
        (["--pairs", "{tmp}/empty", "--out", "{tmp}/r-%03d.tar"], "no DIBCO-style sets"),
        (["--pairs", "{root}", "--out", "{tmp}/real.tar"], "needs one integer field"),
        (
            ["--pairs", "{root}", "--out", "{tmp}/r-%03d.tar", "--shard-size", "0"],
            "--shard-size must be at least 1",
        ),
    ],
)
def test_bad_arguments(
    argv: list[str], message: str, dibco: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    rc, _, err = _pack(capsys, *[a.format(root=dibco, tmp=tmp_path) for a in argv])
    assert rc == 2
    assert err.startswith("ocrobin shards: error:") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.tar"))


def test_safe_key_has_no_dots_or_slashes() -> None:
    assert safe_key("train/DIBCO.2009", "H01.v2") == "train_DIBCO_2009_H01_v2"
    assert "." not in safe_key("a.b", "c.d.e")


@pytest.mark.skipif(not (SHARED / "data" / "train" / "DIBCO2009").is_dir(), reason="../shared/data is absent")
def test_pack_a_real_dibco_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _pack(
        capsys,
        "--pairs",
        str(SHARED / "data" / "train" / "DIBCO2009"),
        "--out",
        str(tmp_path / "real-%03d.tar"),
    )
    assert rc == 0 and err == "" and out.startswith("10 pairs from 1 set(s)")
    samples = list(iter_samples(str(tmp_path / "real-000.tar")))
    assert len(samples) == 10 and all(s["__key__"].startswith("DIBCO2009_2009_") for s in samples)
    gt = np.asarray(Image.open(io.BytesIO(samples[0]["bin.png"])))
    assert set(np.unique(gt)) == {0, 255} and 0.01 < (gt == 0).mean() < 0.5

"""``ocrobin eval`` end to end on tiny generated pages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrobin import metrics
from ocrobin.cli import main


def _gt(seed: int, shape: tuple[int, int] = (40, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ink = np.zeros(shape, bool)
    for _ in range(6):
        y, x = int(rng.integers(2, shape[0] - 10)), int(rng.integers(2, shape[1] - 12))
        ink[y:y + 8, x:x + 3] = True
        ink[y + 3:y + 5, x:x + 10] = True
    return ink


def _save_ink(path: Path, ink: np.ndarray, mode: str = "1", text: int = 0, paper: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "1":
        Image.fromarray(~ink).save(path)
    else:
        Image.fromarray(np.where(ink, text, paper).astype(np.uint8), mode="L").save(path)


@pytest.fixture
def folders(tmp_path: Path) -> dict:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gts = {s: _gt(i) for i, s in enumerate(["p1", "p2", "p3", "p4"])}
    for stem, ink in gts.items():
        _save_ink(gt_dir / f"{stem}.png", ink, mode="L")  # DIBCO: 8-bit, text 0
    # p1: perfect, as ocrobin binarize writes it (1-bit, .bin.png)
    _save_ink(pred_dir / "p1.bin.png", gts["p1"])
    # p2: grey prediction; text 100 (< 128) and paper 128 (not text), with a stripe of errors
    p2 = gts["p2"].copy()
    p2[:, :5] = ~p2[:, :5]
    _save_ink(pred_dir / "p2.png", p2, mode="L", text=100, paper=128)
    # p3: no prediction; p4: wrong size
    _save_ink(pred_dir / "p4.png", np.zeros((30, 30), bool))
    # a prediction without ground truth is ignored
    _save_ink(pred_dir / "extra.png", np.zeros((5, 5), bool))
    return {"gt": gt_dir, "pred": pred_dir, "gts": gts, "p2": p2, "tmp": tmp_path}


def test_eval_end_to_end(folders: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_csv = folders["tmp"] / "out" / "scores.json", folders["tmp"] / "out" / "scores.csv"
    rc = main(["eval", "--pred", str(folders["pred"]), "--gt", str(folders["gt"]),
               "--json", str(out_json), "--csv", str(out_csv)])
    cap = capsys.readouterr()
    assert rc == 1  # two pages failed
    failures = [line for line in cap.err.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 2
    assert any("p3.png" in f and "no prediction" in f for f in failures)
    assert any("p4.png" in f and "differs from ground truth" in f for f in failures)
    assert "without ground truth ignored" in cap.err
    lines = cap.out.splitlines()
    assert lines[0].split()[:3] == ["page", "FM", "pFM"]
    assert any(line.startswith("p1 ") and "100.00" in line for line in lines)
    assert any(line.startswith("mean") for line in lines)

    data = json.loads(out_json.read_text())
    pages = {p["stem"]: p for p in data["pages"]}
    assert set(pages) == {"p1", "p2"}
    assert {f["stem"] for f in data["failed"]} == {"p3", "p4"}
    for key in ("fm", "precision", "recall", "pfm", "psnr", "drd", "nrm", "mcc"):
        assert key in pages["p1"] and key in data["mean"]
    assert pages["p1"]["fm"] == 100.0 and pages["p1"]["drd"] == 0.0
    want = metrics.evaluate(folders["gts"]["p2"], folders["p2"], metrics.pseudo_weights(folders["gts"]["p2"]))
    for key, value in want.as_dict().items():
        assert pages["p2"][key] == pytest.approx(value), key
    assert pages["p2"]["pfm_weights"] == "generated"
    assert data["mean"]["fm"] == pytest.approx((100.0 + want.fm) / 2)

    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["stem"] for r in rows] == ["p1", "p2"]
    assert float(rows[1]["fm"]) == pytest.approx(want.fm)


def test_eval_weight_files_and_no_generation(folders: dict, capsys: pytest.CaptureFixture[str]) -> None:
    wdir = folders["tmp"] / "weights"
    wdir.mkdir()
    gt = folders["gts"]["p2"]
    # Flat weights make pFM equal to FM: proof that the files, not generated maps, were used.
    metrics.write_weights(wdir / "p2_RWeights.dat", gt.astype(float))
    metrics.write_weights(wdir / "p2_PWeights.dat", np.zeros(gt.shape))
    out_json = folders["tmp"] / "s.json"
    rc = main(["eval", "--pred", str(folders["pred"]), "--gt", str(folders["gt"]), "--weights", str(wdir),
               "--no-generate-weights", "--json", str(out_json)])
    cap = capsys.readouterr()
    assert rc == 1
    pages = {p["stem"]: p for p in json.loads(out_json.read_text())["pages"]}
    assert pages["p2"]["pfm_weights"] == "file"
    assert pages["p2"]["pfm"] == pytest.approx(pages["p2"]["fm"])
    assert pages["p1"]["pfm"] is None and pages["p1"]["pfm_weights"] is None
    assert "pFM: n/a on 1 page(s) without weight files" in cap.out
    assert any(line.startswith("p1 ") and "n/a" in line for line in cap.out.splitlines())


def test_eval_incomplete_weights_fail_their_page(folders: dict, capsys: pytest.CaptureFixture[str]) -> None:
    wdir = folders["tmp"] / "weights"
    wdir.mkdir()
    metrics.write_weights(wdir / "p1_RWeights.dat", np.zeros(folders["gts"]["p1"].shape))
    main(["eval", "--pred", str(folders["pred"]), "--gt", str(folders["gt"]), "--weights", str(wdir)])
    err = capsys.readouterr().err
    assert "p1_RWeights.dat: its partner p1_PWeights.dat is missing" in err


def test_eval_all_good_exits_zero_and_white_text_ground_truth(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ink = _gt(7)
    _save_ink(tmp_path / "gt" / "a.png", ink, mode="L", text=255, paper=0)  # white text on black
    _save_ink(tmp_path / "pred" / "a.bin.png", ink)
    _save_ink(tmp_path / "pred" / "a.png", ~ink)  # .bin.png wins over the same stem's other file
    args = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--no-generate-weights"]
    assert main([*args, "--gt-text-white"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("a ") and "100.00" in line for line in out.splitlines())
    assert "pFM: n/a (no weight files)" in out
    assert main(args) == 0  # read as black text, the same page is all wrong
    out = capsys.readouterr().out
    assert any(line.startswith("a ") and line.split()[1] == "0.00" for line in out.splitlines())


def test_eval_missing_folder_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path)])
    assert rc == 2
    assert "prediction folder not found" in capsys.readouterr().err

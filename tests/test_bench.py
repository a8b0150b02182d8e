"""``ocrobin bench`` on a tiny generated set: classic methods, one of our models, failures, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrobin import bench, metrics
from ocrobin.cli import bench as bench_cli
from ocrobin.cli import main
from ocrobin.exceptions import DataError, UsageError

from .conftest import text_page


def _make_set(root: Path, n: int = 3, with_weights: bool = False) -> Path:
    """SET/img + SET/gt pages whose ground truth is the clean page's strokes."""
    for i in range(n):
        gray = text_page(seed=i)
        gt = gray < 128
        (root / "img").mkdir(parents=True, exist_ok=True)
        (root / "gt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(gray, mode="L").save(root / "img" / f"page{i}.png")
        Image.fromarray(np.where(gt, 0, 255).astype(np.uint8), mode="L").save(root / "gt" / f"page{i}.png")
        if with_weights:
            (root / "weights").mkdir(exist_ok=True)
            metrics.write_weights(root / "weights" / f"page{i}_RWeights.dat", gt.astype(float))
            metrics.write_weights(root / "weights" / f"page{i}_PWeights.dat", np.zeros(gt.shape))
    return root


def test_bench_classic_methods_writes_all_outputs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _make_set(data / "setA", n=3)
    _make_set(data / "setB", n=2, with_weights=True)
    out = tmp_path / "out"
    res = bench.run_bench(data, ["otsu", "sauvola", "nick:k=-0.1", "no-such-model"], out, limit=2,
                          save_pred=True, progress=False, log=lambda m: None)
    assert [s["name"] for s in res["sets"]] == ["setA", "setB"]
    set_a = {m["method"]: m for m in res["sets"][0]["methods"]}
    assert res["sets"][0]["pages"] == 2  # --limit
    otsu = set_a["otsu"]
    assert len(otsu["pages"]) == 2 and not otsu["failed"]
    assert otsu["mean"]["fm"] > 90  # clean synthetic pages are easy for Otsu
    assert otsu["s_per_mp"] > 0 and otsu["megapixels"] == pytest.approx(2 * 96 * 160 / 1e6)
    assert otsu["pages"][0]["pfm_weights"] == "generated"
    assert set_a["sauvola"]["params"] == {"window": 75, "k": 0.2}
    assert set_a["nick:k=-0.1"]["params"] == {"k": -0.1}
    # A method that cannot be loaded is reported per page; the others still ran.
    assert set_a["no-such-model"]["pages"] == []
    assert len(set_a["no-such-model"]["failed"]) == 2
    # setB's weight files are used: flat weights give pFM == FM.
    b_otsu = {m["method"]: m for m in res["sets"][1]["methods"]}["otsu"]
    assert b_otsu["pages"][0]["pfm_weights"] == "file"
    assert b_otsu["pages"][0]["pfm"] == pytest.approx(b_otsu["pages"][0]["fm"])

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["sets"][0]["methods"][0]["mean"]["fm"] == pytest.approx(set_a["otsu"]["mean"]["fm"])
    md = (out / "results.md").read_text()
    assert "## setA" in md and "## setB" in md
    assert "| method | FM | pFM | PSNR | DRD | s/MP |" in md
    table_a = md.split("## setB")[0]
    fms = [float(line.split("|")[2]) for line in table_a.splitlines()
           if line.startswith("| ") and not line.startswith("| method") and "n/a" not in line.split("|")[2]]
    assert fms == sorted(fms, reverse=True) and len(fms) == 3
    with Image.open(out / "fm_vs_speed.png") as img:
        assert img.format == "PNG" and img.size[0] > 200
    saved = out / "pred" / "setA" / "otsu" / "page0.bin.png"
    with Image.open(saved) as img:
        assert img.mode == "1"


def test_bench_scores_match_direct_evaluation(tmp_path: Path) -> None:
    root = _make_set(tmp_path / "one", n=1)
    res = bench.run_bench(root, ["otsu"], None, progress=False, generate_weights=False, log=lambda m: None)
    assert [s["name"] for s in res["sets"]] == ["one"]  # DIR itself is a set
    row = res["sets"][0]["methods"][0]["pages"][0]
    gray = np.asarray(Image.open(root / "img" / "page0.png"))
    import doxapy

    img = np.ascontiguousarray(gray)
    doxapy.Binarization.update_to_binary(doxapy.Binarization.Algorithms.OTSU, img, {})
    gt = np.asarray(Image.open(root / "gt" / "page0.png")) == 0
    want = metrics.evaluate(gt, img == 0)
    assert row["fm"] == pytest.approx(want.fm) and row["drd"] == pytest.approx(want.drd)
    assert row["pfm"] is None


def test_bench_our_model_on_a_tiny_page(tmp_path: Path) -> None:
    pytest.importorskip("ocrobin.infer")
    root = _make_set(tmp_path / "tiny", n=1)
    res = bench.run_bench(root, ["lstm2-seed"], None, threads=1, progress=False, generate_weights=False,
                          log=lambda m: None)
    rec = res["sets"][0]["methods"][0]
    assert rec["kind"] == "model" and not rec["failed"], rec["failed"]
    fm = rec["pages"][0]["fm"]
    assert 0.0 <= fm <= 100.0 and rec["s_per_mp"] > 0


def test_model_tta_suffix_averages_over_flips() -> None:
    from ocrobin.infer import Binarizer, threshold

    page = np.random.default_rng(3).random((96, 120)).astype(np.float32)
    plain, flips = bench.make_method("default", threads=1), bench.make_method("default:tta", threads=1)
    assert flips.name == "default:tta" and flips.params["tta"] and not plain.params["tta"]
    want = threshold(Binarizer("default", threads=1, tta=True).binarize(page), bench.MODEL_THRESHOLD)
    assert np.array_equal(flips.run(page), want)
    assert not np.array_equal(flips.run(page), plain.run(page))


def test_bench_failing_method_on_one_page_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _make_set(tmp_path / "s", n=2)
    real = bench.classic_method

    def flaky(spec: str) -> bench.Method:
        m = real(spec)
        inner = m.run
        calls = {"n": 0}

        def run(gray: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("boom")
            return inner(gray)

        m.run = run
        return m

    monkeypatch.setattr(bench, "classic_method", flaky)
    msgs: list[str] = []
    res = bench.run_bench(root, ["otsu"], None, progress=False, generate_weights=False, log=msgs.append)
    rec = res["sets"][0]["methods"][0]
    assert [f["stem"] for f in rec["failed"]] == ["page0"] and "boom" in rec["failed"][0]["error"]
    assert [p["stem"] for p in rec["pages"]] == ["page1"]
    assert any("page0" in m and "boom" in m for m in msgs)


def test_bench_times_each_method_after_an_untimed_first_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _make_set(tmp_path / "s", n=2)
    real = bench.classic_method
    clock = {"now": 0.0}
    calls: list[int] = []

    def slow_first(spec: str) -> bench.Method:
        m = real(spec)
        inner = m.run

        def run(gray: np.ndarray) -> np.ndarray:
            calls.append(len(calls))
            clock["now"] += 100.0 if len(calls) == 1 else 1.0  # a one-off cost, then 1 s a page
            return inner(gray)

        m.run = run
        return m

    monkeypatch.setattr(bench, "classic_method", slow_first)
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    res = bench.run_bench(root, ["otsu"], None, progress=False, generate_weights=False)
    rec = res["sets"][0]["methods"][0]
    assert len(calls) == 3  # one untimed run, then one per page
    assert [(p["stem"], p["seconds"]) for p in rec["pages"]] == [("page0", 1.0), ("page1", 1.0)]
    assert res["warm_up"] is True


def test_bench_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _make_set(tmp_path / "d" / "S", n=1)
    out = tmp_path / "o"
    rc = main(["bench", "--data", str(root.parent), "--methods", "otsu", "wolf", "--out", str(out),
               "--no-progress", "--no-generate-weights"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "## S (1 pages" in text and "| otsu |" in text and "| wolf |" in text
    assert (out / "results.json").is_file() and (out / "results.md").is_file()
    assert main(["bench", "--data", str(tmp_path / "missing"), "--methods", "otsu", "--out", str(out)]) == 2


def test_method_specs_and_set_discovery(tmp_path: Path) -> None:
    assert bench.classic_method("sauvola:window=31,k=0.3").params == {"window": 31, "k": 0.3}
    with pytest.raises(UsageError):
        bench.classic_method("sauvola:k")
    with pytest.raises(UsageError):
        bench.classic_method("sauvola:k=abc")
    with pytest.raises(UsageError):
        bench.classic_method("unknown")
    assert bench.make_method("OTSU").kind == "classic"
    with pytest.raises(DataError):
        bench.find_sets(tmp_path)
    gray = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert bench.to_uint8(gray).tolist()[0] == [0, 23, 46, 70]


def test_cli_defaults_follow_the_library() -> None:
    assert tuple(bench_cli.DEFAULT_METHODS) == bench.DEFAULT_METHODS
    assert tuple(bench_cli.CLASSIC_NAMES) == tuple(bench.CLASSIC)

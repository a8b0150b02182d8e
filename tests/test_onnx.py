"""ONNX export and the ONNX Runtime backend against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

SKIP = "ONNX export and backend need the onnx extra: pip install 'ocrobin[onnx]'"
onnx = pytest.importorskip("onnx", reason=SKIP)
ort = pytest.importorskip("onnxruntime", reason=SKIP)

from ocrobin import models  # noqa: E402
from ocrobin.cli import main  # noqa: E402
from ocrobin.exceptions import ModelError  # noqa: E402
from ocrobin.infer import Binarizer  # noqa: E402
from ocrobin.modelfile import make_meta, save_model  # noqa: E402
from ocrobin.onnx import META_KEY, OnnxBinarizer, export_onnx, read_onnx_meta  # noqa: E402

from .conftest import text_page  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def msfcn_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-init msfcn model file (BatchNorm statistics made non-trivial, page normalisation on)."""
    torch.manual_seed(3)
    net = models.build("msfcn", widths=(8, 12, 16, 24), head=4)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("models") / "tiny-msfcn.safetensors"
    meta = make_meta(net, data="random init for tests")
    meta["page_norm"] = {"low": 1.0, "high": 99.0, "max_gain": 6.0}
    save_model(path, net.eval(), meta)
    return path


@pytest.fixture(scope="module")
def msfcn_onnx(msfcn_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny-msfcn.onnx"
    export_onnx(msfcn_file, out)
    return out


@pytest.fixture(scope="module")
def seed_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "lstm2-seed.onnx"
    report = export_onnx("lstm2-seed", out)
    assert report.inputs == ["image", "bn_mean", "bn_var", "bn_given"]
    return out


def test_msfcn_onnxruntime_matches_torch_on_a_page(msfcn_file: Path, msfcn_onnx: Path) -> None:
    page = text_page(150, 233, seed=1)  # neither side a multiple of 32: the graph pads internally
    ref = Binarizer(msfcn_file, tile=0).binarize(page)
    got = OnnxBinarizer(msfcn_onnx, threads=1, tile=0).binarize(page)
    assert got.shape == page.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= TOL
    assert ref.std() > 0.01  # a page, not a constant: the comparison means something


def test_onnx_binarizer_applies_the_models_page_normalisation(msfcn_file: Path, msfcn_onnx: Path) -> None:
    faint = (150 + text_page(150, 233, seed=2) / 6).astype(np.uint8)  # a sixth of the contrast
    onnx_binarizer = OnnxBinarizer(msfcn_onnx, threads=1, tile=0)
    assert onnx_binarizer.page_norm == {"low": 1.0, "high": 99.0, "max_gain": 6.0}
    ref = Binarizer(msfcn_file, tile=0).binarize(faint)
    assert np.abs(onnx_binarizer.binarize(faint) - ref).max() <= TOL


def test_msfcn_tiled_matches_torch_tiled(msfcn_file: Path, msfcn_onnx: Path) -> None:
    """Both backends cut the page into the same tiles (on the model's 32-pixel grid, read from the ONNX
    file's metadata), so the only difference is float rounding."""
    assert OnnxBinarizer(msfcn_onnx).align == Binarizer(msfcn_file).align == 32
    page = text_page(150, 233, seed=2)
    ref = Binarizer(msfcn_file, tile=96, overlap=16).binarize(page)
    got = OnnxBinarizer(msfcn_onnx, threads=1, tile=96, overlap=16).binarize(page)
    assert np.abs(got - ref).max() <= TOL


def test_dynamic_batch_height_and_width(msfcn_file: Path, msfcn_onnx: Path) -> None:
    net = Binarizer(msfcn_file).model
    session = ort.InferenceSession(str(msfcn_onnx), providers=["CPUExecutionProvider"])
    for shape in [(3, 1, 33, 65), (1, 1, 128, 32), (2, 1, 7, 200)]:
        x = torch.rand(shape)
        out = session.run(None, {"image": x.numpy()})[0]
        assert out.shape == shape
        with torch.inference_mode():
            ref = torch.sigmoid(net(x)).numpy()
        assert np.abs(1 / (1 + np.exp(-out)) - ref).max() <= TOL


def test_metadata_travels_in_the_onnx_file(msfcn_file: Path, msfcn_onnx: Path) -> None:
    proto = onnx.load(str(msfcn_onnx))
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[META_KEY])
    own = Binarizer(msfcn_file).info.meta
    assert meta["arch"] == "msfcn" and meta["hparams"] == own["hparams"]
    assert meta["sha256"] == own["sha256"]
    assert meta["onnx"]["inputs"] == ["image"]
    assert read_onnx_meta(msfcn_onnx) == meta
    assert OnnxBinarizer(msfcn_onnx).name == "tiny-msfcn"


def test_lstm2_seed_untiled_matches_torch(seed_onnx: Path, page: np.ndarray) -> None:
    ref = Binarizer("lstm2-seed", tile=0).binarize(page)
    got = OnnxBinarizer(seed_onnx, threads=1, tile=0).binarize(page)
    assert np.abs(got - ref).max() <= TOL


def test_lstm2_seed_tiles_share_page_statistics(seed_onnx: Path) -> None:
    page = text_page(140, 200, seed=4)
    page[:, :60] = page[:, :60] // 2  # a dark margin: tile statistics differ from the page's
    ref = Binarizer("lstm2-seed", tile=96, overlap=16).binarize(page)
    onnx_binarizer = OnnxBinarizer(seed_onnx, threads=1, tile=96, overlap=16)
    got = onnx_binarizer.binarize(page)
    assert np.abs(got - ref).max() <= TOL
    # without the page's statistics the tiles would differ: the check above is not vacuous
    onnx_binarizer._has_stats = False
    assert np.abs(onnx_binarizer.binarize(page) - ref).max() > 10 * TOL


def test_lstm2_seed_graph_alone_uses_per_image_statistics(seed_onnx: Path) -> None:
    net = Binarizer("lstm2-seed").model
    session = ort.InferenceSession(str(seed_onnx), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 40, 52)
    x[1] = x[1] * 0.3  # a second, much darker image: per-image statistics differ
    out = session.run(["logits"], {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = torch.sigmoid(net(x)).numpy()
    assert np.abs(1 / (1 + np.exp(-out)) - ref).max() <= TOL


def test_export_refuses_a_graph_that_differs(monkeypatch: pytest.MonkeyPatch, msfcn_file: Path,
                                             tmp_path: Path) -> None:
    import ocrobin.onnx as mod

    monkeypatch.setattr(mod, "TOLERANCE", -1.0)
    out = tmp_path / "x.onnx"
    with pytest.raises(ModelError, match="differs from the PyTorch model"):
        export_onnx(msfcn_file, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_onnx_binarizer_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such"):
        OnnxBinarizer(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="bad.onnx"):
        OnnxBinarizer(bad)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.onnx"
    assert main(["export", "lstm2-seed", "--onnx", str(out), "--opset", "17"]) == 0
    assert "opset 17" in capsys.readouterr().out
    assert read_onnx_meta(out)["onnx"]["opset"] == 17
    assert main(["export", str(tmp_path / "nope.safetensors"), "--onnx", str(tmp_path / "n.onnx")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


def test_legacy_pt_exports(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "legacy.onnx"
    export_onnx(shared / "seed" / "bin-000000046-005393.pt", out)
    page = text_page(64, 90, seed=5)
    ref = Binarizer(shared / "seed" / "bin-000000046-005393.pt", tile=0).binarize(page)
    assert np.abs(OnnxBinarizer(out, tile=0).binarize(page) - ref).max() <= TOL

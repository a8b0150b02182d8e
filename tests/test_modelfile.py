import json

import pytest
import torch
from safetensors import safe_open

from ocrobin import models
from ocrobin.exceptions import ModelError
from ocrobin.modelfile import (
    load_model,
    make_meta,
    packaged_models,
    packaged_path,
    read_meta,
    release_model,
    save_model,
)


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    torch.manual_seed(1)
    m = models.build("msfcn", widths=[8, 8, 8, 8], head=4)
    meta = make_meta(m, data=["x"], command="cmd", samples=5)
    p = tmp_path / "m.safetensors"
    digest = save_model(p, m, meta)
    info = load_model(p)
    assert info.meta["arch"] == "msfcn" and info.meta["hparams"] == {"widths": [8, 8, 8, 8], "head": 4}
    assert info.meta["sha256"] == digest
    assert info.meta["provenance"]["samples"] == 5
    for k, v in m.state_dict().items():
        assert torch.equal(v, info.model.state_dict()[k])


def test_metadata_is_json_in_the_safetensors_header(tmp_path):
    m = models.build("lstm2-seed")
    p = tmp_path / "m.safetensors"
    save_model(p, m, make_meta(m))
    with safe_open(str(p), framework="pt") as f:
        meta = json.loads(f.metadata()["ocrobin"])
    assert meta["batchnorm"] == "per-image"
    assert read_meta(p)["arch"] == "lstm2-seed"


def test_tampered_weights_are_detected(tmp_path):
    m = models.build("lstm2-seed")
    p = tmp_path / "m.safetensors"
    save_model(p, m, make_meta(m))
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        load_model(p)


def test_not_a_model_file(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x00" * 40)
    with pytest.raises(ModelError, match="x.safetensors"):
        load_model(p)


def test_packaged_models():
    assert "lstm2-seed" in packaged_models()
    assert packaged_path("default").is_file()
    with pytest.raises(ModelError, match="no packaged model"):
        packaged_path("nope")


def test_release_drops_training_state(tmp_path):
    from ocrobin.cli import main

    m = models.build("msfcn", widths=[8, 8, 8, 8], head=4)
    meta = make_meta(m, samples=7)
    meta["train"] = {"step": 3}
    ck = tmp_path / "ck.safetensors"
    save_model(ck, m, meta, extra={"optim.0.exp_avg": torch.ones(3)})
    out = tmp_path / "rel.safetensors"
    assert main(["export", str(ck), "--release", str(out), "--name", "mine"]) == 0
    info = load_model(out)
    assert info.extra == {} and "train" not in info.meta
    assert info.meta["name"] == "mine" and info.meta["provenance"]["samples"] == 7
    assert out.stat().st_size < ck.stat().st_size
    assert main(["export", str(ck)]) == 2


@pytest.mark.parametrize("arch,hp", [("msfcn", {"widths": [8, 8, 8, 8], "head": 4}), ("lstm2-seed", {})])
def test_release_with_threshold_moves_the_cut_to_that_probability(tmp_path, arch, hp):
    from ocrobin.cli import main

    torch.manual_seed(0)
    m = models.build(arch, **hp).eval()
    ck = tmp_path / "ck.safetensors"
    save_model(ck, m, make_meta(m))
    out = tmp_path / "cal.safetensors"
    assert main(["export", str(ck), "--release", str(out), "--threshold", "0.4"]) == 0
    cal = load_model(out)
    assert cal.meta["provenance"]["calibrated_threshold"] == 0.4
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        before, after = torch.sigmoid(m(x)), torch.sigmoid(cal.model(x))
    assert torch.equal(after > 0.5, before > 0.4)
    torch.testing.assert_close(torch.logit(after), torch.logit(before) - torch.logit(torch.tensor(0.4)),
                               atol=1e-4, rtol=0)
    info = load_model(ck)
    kept = {k: v.clone() for k, v in info.model.state_dict().items()}
    release_model(info, tmp_path / "cal2.safetensors", threshold=0.3)
    assert all(torch.equal(v, info.model.state_dict()[k]) for k, v in kept.items())  # source untouched
    assert main(["export", str(ck), "--release", str(out), "--threshold", "1.5"]) == 2
    assert main(["export", str(ck), "--onnx", str(tmp_path / "x.onnx"), "--threshold", "0.4"]) == 2


def test_weights_checked_against_the_architecture_before_use(tmp_path):
    from safetensors.torch import save_file

    m = models.build("lstm2-seed")
    meta = make_meta(m)
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    cases = {
        "missing": {k: v for k, v in state.items() if k != "out.bias"},
        "shape": {**state, "conv.weight": torch.zeros(8, 1, 3, 2)},
        "dtype": {**state, "bn.weight": torch.zeros(8, dtype=torch.int32)},
        "extra": {**state, "lstm.evil": torch.zeros(2)},
    }
    for name, tensors in cases.items():
        p = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(p), metadata={"ocrobin": json.dumps(meta)})
        with pytest.raises(ModelError, match=f"{name}.safetensors: ") as e:
            load_model(p)
        assert "\n" not in str(e.value)
    with torch.no_grad():
        m.conv.weight[0, 0, 0, 0] = float("nan")
    save_model(tmp_path / "nan.safetensors", m, make_meta(m))  # hash matches: the NaN check must refuse it
    with pytest.raises(ModelError, match="nan.safetensors: weights hold NaN"):
        load_model(tmp_path / "nan.safetensors")


def test_release_stores_the_confidence_calibration_binarizer_uses(tmp_path):
    from ocrobin.cli import main
    from ocrobin.infer import Binarizer

    from .conftest import text_page

    out = tmp_path / "cal.safetensors"
    assert main(["export", "lstm2-seed", "--release", str(out), "--confidence", "0.9,0.5",
                 "--low-confidence", "0.7"]) == 0
    info = load_model(out)
    assert info.meta["confidence"] == {"a": 0.9, "b": 0.5} and info.meta["low_confidence"] == 0.7
    r = Binarizer(out).run(text_page())
    assert r.low_confidence == 0.7
    assert abs(r.confidence - max(0.0, min(1.0, 0.9 - 0.5 * r.uncertainty))) < 1e-9
    assert main(["export", "lstm2-seed", "--release", str(out), "--confidence", "x"]) == 2
    assert main(["export", str(out), "--release", str(out)]) == 2  # would overwrite its own input

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from ocrobin.cli import main
from ocrobin.exceptions import ModelError, UnsafeModelError
from ocrobin.imageio import read_gray
from ocrobin.infer import Binarizer
from ocrobin.legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, import_legacy
from ocrobin.modelfile import load_model


def legacy_file(obj_bytes: bytes, keys: list | None = None, tail: bytes = b"") -> bytes:
    out = io.BytesIO()
    for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(part, out, protocol=2)
    out.write(obj_bytes)
    pickle.dump(keys or [], out, protocol=2)
    out.write(tail)
    return out.getvalue()


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


def test_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pt"
    f.write_bytes(legacy_file(pickle.dumps(Evil(marker), protocol=2)))
    with pytest.raises(UnsafeModelError, match="not on the allow-list"):
        import_legacy(f)
    assert not marker.exists()


def test_refuses_builtins_eval(tmp_path):
    payload = b"\x80\x02c__builtin__\neval\nX\x06\x00\x00\x001+1+1\x85R."
    f = tmp_path / "evil.pt"
    f.write_bytes(legacy_file(payload))
    with pytest.raises(UnsafeModelError, match="eval"):
        import_legacy(f)


def test_not_a_legacy_file(tmp_path):
    f = tmp_path / "x.pt"
    f.write_bytes(b"hello world")
    with pytest.raises(ModelError, match="x.pt"):
        import_legacy(f)


def test_truncated_seed_file(tmp_path, shared):
    data = (shared / "seed" / "bin-000000046-005393.pt").read_bytes()
    f = tmp_path / "cut.pt"
    f.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelError, match="truncated"):
        import_legacy(f)


def test_seed_model_structure(shared):
    info = import_legacy(shared / "seed" / "bin-000000046-005393.pt")
    assert info.meta["arch"] == "lstm2-seed"
    assert info.meta["parameters"] == 1001
    assert info.meta["batchnorm"] == "per-image"


def test_port_matches_reference_output(shared):
    """The seed README: ±2 grey levels on ≥ 99.9 % of pixels, same side of 0.5 on ≥ 99.99 %."""
    b = Binarizer(shared / "seed" / "bin-000000046-005393.pt", tile=0)
    prob = b.binarize(read_gray(shared / "seed" / "sample.png"))
    ours = np.floor(prob * 255).astype(int)
    ref = np.asarray(Image.open(shared / "seed" / "sample.ink.png")).astype(int)
    assert ours.shape == ref.shape
    assert (np.abs(ours - ref) <= 2).mean() >= 0.999
    # both thresholded at 0.5 in the 8-bit domain of the reference (128/255 ≥ 0.5 > 127/255)
    assert ((ours >= 128) == (ref >= 128)).mean() >= 0.9999


def test_packaged_model_equals_fresh_import(shared):
    fresh = import_legacy(shared / "seed" / "bin-000000046-005393.pt").model.state_dict()
    packaged = Binarizer("lstm2-seed").model.state_dict()
    assert fresh.keys() == packaged.keys()
    for k in fresh:
        assert np.array_equal(fresh[k].numpy(), packaged[k].numpy()), k


def test_import_legacy_cli_writes_our_format(tmp_path, shared):
    out = tmp_path / "seed.safetensors"
    assert main(["import-legacy", str(shared / "seed" / "bin-000000046-005393.pt"), str(out)]) == 0
    info = load_model(out)
    assert info.meta["arch"] == "lstm2-seed"
    assert "sha256" in info.meta


def test_binarize_accepts_legacy_pt_directly(tmp_path, shared, page):
    src = tmp_path / "p.png"
    Image.fromarray(page).save(src)
    rc = main(["binarize", str(src), "-o", str(tmp_path / "o"), "-m",
               str(shared / "seed" / "bin-000000046-005393.pt"), "--no-progress"])
    assert rc == 0
    assert (tmp_path / "o" / "p.bin.png").exists()



"""Damaged and crafted model files through the public loading path: a clean error or a correct load.

Every mutated file — flipped bytes, truncations, tampered header lengths, tensors whose size, stride or
offset do not fit their storage, headers whose offsets overlap or leave the file — must either raise an
:class:`~ocrobin.exceptions.OcrobinError` with a one-line message naming the file, or load a model whose
tensors have the original shapes and finite values. Anything else (another exception, a wrong-size
tensor, a crash) fails. The legacy half runs on a small synthetic pickle built here, and on the real seed
file where ../shared is present. Seeded, so every run feeds the same files.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ocrobin.exceptions import ModelError, OcrobinError, UnsafeModelError
from ocrobin.infer import load
from ocrobin.legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, import_legacy
from ocrobin.modelfile import load_model, packaged_path

# ------------------------------------------------------------------ a synthetic legacy (PyTorch 0.3) file

_HERE = sys.modules[__name__]
#: placeholder class or function → the (module, name) the legacy file names instead
_GLOBALS: dict[Any, tuple[str, str]] = {}


class _Module:
    """Pickles as an instance of the original module class its subclass stands for."""

    def __init__(self, **state: Any) -> None:
        self.__dict__.update(state)


def _placeholder(module: str, name: str, base: type = _Module) -> type:
    cls = type(f"_L_{name}", (base,), {"__module__": __name__})
    setattr(_HERE, cls.__name__, cls)
    _GLOBALS[cls] = (module, name)
    return cls


Sequential = _placeholder("torch.nn.modules.container", "Sequential")
Conv2d = _placeholder("torch.nn.modules.conv", "Conv2d")
BatchNorm2d = _placeholder("torch.nn.modules.batchnorm", "BatchNorm2d")
ReLU = _placeholder("torch.nn.modules.activation", "ReLU")
Sigmoid = _placeholder("torch.nn.modules.activation", "Sigmoid")
LSTM = _placeholder("torch.nn.modules.rnn", "LSTM")
LSTM2 = _placeholder("dltrainers.layers", "LSTM2")
RowwiseLSTM = _placeholder("dltrainers.layers", "RowwiseLSTM")
_STORAGE_CLASSES = {n: _placeholder("torch", n, object) for n in ("FloatStorage", "LongStorage", "DoubleStorage")}
_ParamClass = _placeholder("torch.nn.parameter", "Parameter", object)
_DTYPES = {"FloatStorage": "<f4", "LongStorage": "<i8", "DoubleStorage": "<f8"}


def _rebuild_tensor(*args: Any) -> None:
    raise AssertionError("only named in pickles")


_GLOBALS[_rebuild_tensor] = ("torch._utils", "_rebuild_tensor")


class Storage:
    """A storage: pickled as a persistent id, its bytes written after the pickles."""

    def __init__(self, key: str, values: Any, kind: str = "FloatStorage", declared: int | None = None) -> None:
        self.key, self.kind = key, kind
        self.values = np.asarray(values, dtype=_DTYPES[kind])
        self.declared = len(self.values) if declared is None else declared


class Tensor:
    """``_rebuild_tensor(storage, offset, size, stride)``; any of them may be crafted."""

    def __init__(self, storage: Storage, offset: Any, size: Any, stride: Any) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tensor, self.args)


class Param:
    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ParamClass, (self.tensor,))


class _LegacyPickler(pickle.Pickler):
    """Writes module classes and storages as persistent ids, as ``torch.save`` did before the zip format."""

    def __init__(self, f: io.BytesIO) -> None:
        super().__init__(f, protocol=2)
        self.seen: set[type] = set()
        self.storages: dict[str, Storage] = {}

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, type) and issubclass(obj, _Module) and obj not in self.seen:
            self.seen.add(obj)
            return ("module", obj, "/usr/lib/python2.7/torch/nn/modules/x.py", "class X(Module): ...")
        if isinstance(obj, Storage):
            self.storages.setdefault(obj.key, obj)
            return ("storage", _STORAGE_CLASSES[obj.kind], obj.key, "cpu", obj.declared, None)
        return None


def legacy_bytes(root: Any, keys: list[str] | None = None, tail: bytes = b"") -> bytes:
    """A legacy file holding ``root``: five pickles, then each storage's element count and bytes."""
    out = io.BytesIO()
    for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}):
        pickle.dump(part, out, protocol=2)
    buf = io.BytesIO()
    p = _LegacyPickler(buf)
    p.dump(root)
    obj = buf.getvalue()
    for placeholder, (module, name) in _GLOBALS.items():
        obj = obj.replace(f"c{__name__}\n{placeholder.__name__}\n".encode(), f"c{module}\n{name}\n".encode())
    assert __name__.encode() not in obj
    out.write(obj)
    keys = list(p.storages) if keys is None else keys
    pickle.dump(keys, out, protocol=2)
    for k in keys:
        s = p.storages[k]
        out.write(struct.pack("<q", len(s.values)) + s.values.tobytes())
    out.write(tail)
    return out.getvalue()


NFEAT, NHIDDEN = 2, 2


def synthetic_model(conv_weight: Tensor | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The original network (2 features, 2 LSTM units) and the values each weight should load as.

    Each LSTM's weights share one flat storage at increasing offsets, as cuDNN left them in the seed file.
    """
    rng = np.random.default_rng(7)
    want: dict[str, np.ndarray] = {}

    def own(name: str, shape: tuple[int, ...]) -> Param:
        v = rng.normal(0, 0.5, shape).astype(np.float32)
        want[name] = v
        strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
        return Param(Tensor(Storage(name, v.ravel()), 0, shape, strides))

    def lstm(prefix: str, ninput: int) -> Any:
        g = 4 * NHIDDEN
        shapes = {"weight_ih_l0": (g, ninput), "weight_hh_l0": (g, NHIDDEN), "bias_ih_l0": (g,), "bias_hh_l0": (g,)}
        shapes.update({f"{k}_reverse": s for k, s in list(shapes.items())})
        total = sum(int(np.prod(s)) for s in shapes.values())
        flat = rng.normal(0, 0.5, total).astype(np.float32)
        storage, params, at = Storage(prefix, flat), OrderedDict(), 0
        for k, s in shapes.items():
            n = int(np.prod(s))
            want[f"{prefix}.{k}"] = flat[at:at + n].reshape(s)
            params[k] = Param(Tensor(storage, at, s, (s[1], 1) if len(s) == 2 else (1,)))
            at += n
        return RowwiseLSTM(_modules=OrderedDict(lstm=LSTM(_parameters=params, _buffers=OrderedDict())))

    conv = Conv2d(_parameters=OrderedDict(weight=own("conv.weight", (NFEAT, 1, 3, 3)),
                                          bias=own("conv.bias", (NFEAT,))), _buffers=OrderedDict())
    if conv_weight is not None:
        conv._parameters["weight"] = Param(conv_weight)
    bn = BatchNorm2d(_parameters=OrderedDict(weight=own("bn.weight", (NFEAT,)), bias=own("bn.bias", (NFEAT,))),
                     _buffers=OrderedDict(running_mean=own("bn.running_mean", (NFEAT,)).tensor,
                                          running_var=own("bn.running_var", (NFEAT,)).tensor),
                     eps=1e-5, momentum=0.1)
    lstm2 = LSTM2(_modules=OrderedDict(hlstm=lstm("lstm.hlstm.lstm", NFEAT),
                                       vlstm=lstm("lstm.vlstm.lstm", 2 * NHIDDEN)))
    out = Conv2d(_parameters=OrderedDict(weight=own("out.weight", (1, 2 * NHIDDEN, 1, 1)),
                                         bias=own("out.bias", (1,))), _buffers=OrderedDict())
    root = Sequential(_modules=OrderedDict(
        [("0", conv), ("1", bn), ("2", ReLU()), ("3", lstm2), ("4", out), ("5", Sigmoid())]))
    return root, want


# ------------------------------------------------------------------------------------ shared checking


def expect_clean(path: Path, shapes: dict[str, tuple[int, ...]], loader: Callable[[Path], Any] = load) -> str:
    """Load ``path``: a one-line OcrobinError naming the file, or a model of ``shapes`` with finite weights."""
    try:
        info = loader(path)
    except OcrobinError as e:
        msg = str(e)
        assert path.name in msg and "\n" not in msg, msg
        return "error"
    got = {k: tuple(v.shape) for k, v in info.model.state_dict().items()}
    assert got == shapes
    assert all(bool(torch.isfinite(v).all()) for v in info.model.state_dict().values())
    return "loaded"


def shapes_of(info: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in info.model.state_dict().items()}


def fuzz(tmp_path: Path, data: bytes, suffix: str, shapes: dict[str, tuple[int, ...]], seed: int,
         flips: int, cuts: int) -> dict[str, int]:
    """``flips`` files with 1–4 bytes changed and ``cuts`` truncations, each loaded; counts the outcomes."""
    rng = np.random.default_rng(seed)
    seen = {"error": 0, "loaded": 0}
    for i in range(flips):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 5))):
            mutated[pos] ^= int(rng.integers(1, 256))
        p = tmp_path / f"flip{i:03d}{suffix}"
        p.write_bytes(bytes(mutated))
        seen[expect_clean(p, shapes)] += 1
    lengths = sorted({0, 1, 7, 8, 9, len(data) - 1, *rng.integers(0, len(data), cuts - 6).tolist()})
    for n in lengths:
        p = tmp_path / f"cut{n:06d}{suffix}"
        p.write_bytes(data[:n])
        assert expect_clean(p, shapes) == "error", f"a file cut to {n} of {len(data)} bytes loaded"
        seen["error"] += 1
    return seen


# --------------------------------------------------------------------------------------- legacy files


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, ...]]]:
    root, want = synthetic_model()
    path = tmp_path_factory.mktemp("legacy") / "synthetic.pt"
    path.write_bytes(legacy_bytes(root))
    info = import_legacy(path)
    state = info.model.state_dict()
    for k, v in want.items():
        np.testing.assert_array_equal(state[k].numpy(), v, err_msg=k)
    return path, shapes_of(info)


def test_synthetic_legacy_file_fuzz(tmp_path: Path, synthetic: tuple[Path, dict[str, tuple[int, ...]]]) -> None:
    path, shapes = synthetic
    seen = fuzz(tmp_path, path.read_bytes(), ".pt", shapes, seed=1, flips=100, cuts=40)
    assert seen["error"] > 40 and seen["loaded"] > 0


def test_seed_legacy_file_fuzz(tmp_path: Path, shared: Path) -> None:
    src = shared / "seed" / "bin-000000046-005393.pt"
    shapes = shapes_of(import_legacy(src))
    seen = fuzz(tmp_path, src.read_bytes(), ".pt", shapes, seed=2, flips=40, cuts=20)
    assert seen["error"] >= 20 and seen["loaded"] > 0


def _flat(n: int, key: str = "s") -> Storage:
    return Storage(key, np.arange(n, dtype=np.float32))


#: conv.weight crafted to read outside, or more than, its storage; each must be refused before any read.
CRAFTED_TENSORS = {
    "size 1000 over 4 elements": Tensor(_flat(4), 0, (1000,), (1,)),
    "negative stride": Tensor(_flat(4), 3, (1000,), (-1,)),
    "negative stride, 2-D": Tensor(_flat(18), 17, (2, 1, 3, 3), (-9, 9, 3, 1)),
    "zero stride repeats values": Tensor(_flat(4), 0, (2, 1, 3, 3), (0, 0, 0, 0)),
    "offset past the end": Tensor(_flat(18), 1, (2, 1, 3, 3), (9, 9, 3, 1)),
    "negative offset": Tensor(_flat(18), -1, (2, 1, 3, 3), (9, 9, 3, 1)),
    "huge offset": Tensor(_flat(18), 2**62, (2, 1, 3, 3), (9, 9, 3, 1)),
    "huge stride": Tensor(_flat(18), 0, (2, 1, 3, 3), (2**60, 9, 3, 1)),
    "negative size": Tensor(_flat(18), 0, (-2, 1, 3, 3), (9, 9, 3, 1)),
    "size overflowing int64": Tensor(_flat(18), 0, (2**32, 2**32, 1, 1), (0, 0, 0, 0)),
    "rank 40": Tensor(_flat(18), 0, (1,) * 40, (1,) * 40),
    "rank of size and stride differ": Tensor(_flat(18), 0, (2, 1, 3, 3), (9, 9, 3)),
    "float size": Tensor(_flat(18), 0, (2.0, 1, 3, 3), (9, 9, 3, 1)),
    "string offset": Tensor(_flat(18), "0", (2, 1, 3, 3), (9, 9, 3, 1)),
    "bool stride": Tensor(_flat(18), 0, (2, 1, 3, 3), (9, 9, 3, True)),
    "storage declared larger than its bytes": Tensor(Storage("s", np.zeros(4), declared=1000), 0, (1000,), (1,)),
    "storage declared smaller than its bytes": Tensor(Storage("s", np.zeros(18), declared=4), 0, (2, 1, 3, 3),
                                                      (9, 9, 3, 1)),
    "storage declared negative": Tensor(Storage("s", np.zeros(18), declared=-1), 0, (2, 1, 3, 3), (9, 9, 3, 1)),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_TENSORS))
def test_crafted_tensor_is_refused(tmp_path: Path, case: str) -> None:
    root, _ = synthetic_model(conv_weight=CRAFTED_TENSORS[case])
    path = tmp_path / "crafted.pt"
    path.write_bytes(legacy_bytes(root))
    with pytest.raises(UnsafeModelError, match="crafted.pt: "):
        load(path)


def test_legacy_tensor_dtype_and_storage_list_are_checked(tmp_path: Path) -> None:
    cases = {
        "int.pt": legacy_bytes(synthetic_model(Tensor(Storage("i", np.zeros(18), "LongStorage"), 0, (2, 1, 3, 3),
                                                      (9, 9, 3, 1)))[0]),
        "tail.pt": legacy_bytes(synthetic_model()[0], tail=b"\0" * 16),
        "twice.pt": legacy_bytes(synthetic_model()[0], keys=["conv.bias", "conv.bias"]),
        "missing.pt": legacy_bytes(synthetic_model()[0], keys=["conv.bias"]),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=f"{name}: "):
            load(tmp_path / name)
    # a double-precision storage is read and converted, as torch did
    root, want = synthetic_model(Tensor(Storage("d", np.arange(18) / 10, "DoubleStorage"), 0, (2, 1, 3, 3),
                                        (9, 9, 3, 1)))
    (tmp_path / "double.pt").write_bytes(legacy_bytes(root))
    w = load(tmp_path / "double.pt").model.state_dict()["conv.weight"]
    np.testing.assert_allclose(w.numpy().ravel(), np.arange(18) / 10, rtol=1e-6)


def test_legacy_non_finite_weights_are_refused(tmp_path: Path) -> None:
    root, _ = synthetic_model(Tensor(Storage("n", np.full(18, np.nan)), 0, (2, 1, 3, 3), (9, 9, 3, 1)))
    (tmp_path / "nan.pt").write_bytes(legacy_bytes(root))
    with pytest.raises(ModelError, match="nan.pt: .*NaN"):
        import_legacy(tmp_path / "nan.pt")


# ---------------------------------------------------------------------------------- safetensors files


def split_st(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_st(header: dict[str, Any], body: bytes, n: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if n is None else n) + raw + body


@pytest.fixture(scope="module")
def packaged() -> tuple[bytes, dict[str, tuple[int, ...]]]:
    path = packaged_path("lstm2-seed")
    return path.read_bytes(), shapes_of(load_model(path))


def test_safetensors_file_fuzz(tmp_path: Path, packaged: tuple[bytes, dict[str, tuple[int, ...]]]) -> None:
    data, shapes = packaged
    seen = fuzz(tmp_path, data, ".safetensors", shapes, seed=3, flips=100, cuts=40)
    assert seen["error"] > 100  # the weights' SHA-256 catches any flip that the header checks let through


@pytest.mark.parametrize("n", [0, 1, 2, 100, 2759, 2761, 6836, 6837, 2**32, 2**63, 2**64 - 1])
def test_safetensors_header_length_tampering(tmp_path: Path, packaged: tuple[bytes, Any], n: int) -> None:
    data, shapes = packaged
    assert struct.unpack("<Q", data[:8]) == (2760,)
    p = tmp_path / "len.safetensors"
    p.write_bytes(struct.pack("<Q", n) + data[8:])
    assert expect_clean(p, shapes, load_model) == "error"


def _edit(header: dict[str, Any], body: bytes, case: str) -> tuple[dict[str, Any], bytes]:
    """The packaged file's header and data with one crafted change."""
    h = json.loads(json.dumps(header))
    meta = json.loads(h["__metadata__"]["ocrobin"])
    end = len(body)
    if case == "shape":
        h["conv.weight"]["shape"] = [8, 1, 9, 1]  # same bytes, another shape
    elif case == "shape and bytes":
        h["conv.weight"]["shape"] = [8, 1, 3, 2]
    elif case == "float as int":
        h["bn.weight"]["dtype"] = "I32"
    elif case == "counter as float":
        h["bn.num_batches_tracked"]["dtype"] = "F64"
    elif case == "unknown dtype":
        h["bn.weight"]["dtype"] = "X32"
    elif case == "overlap":
        h["bn.bias"]["data_offsets"] = [4, 36]  # into bn.num_batches_tracked's bytes
    elif case == "same bytes twice":
        h["bn.bias"]["data_offsets"] = h["bn.running_mean"]["data_offsets"]
    elif case == "past the end":
        h["out.weight"]["data_offsets"] = [end, end + 32]
    elif case == "negative offset":
        h["out.weight"]["data_offsets"] = [-32, 0]
    elif case == "reversed offsets":
        a, b = h["out.weight"]["data_offsets"]
        h["out.weight"]["data_offsets"] = [b, a]
    elif case == "missing tensor":
        del h["out.bias"]
        h["out.weight"]["data_offsets"][0] -= 4  # keep the data covered
        h["out.weight"]["shape"] = [9]
    elif case == "extra tensor":
        h["evil"] = {"dtype": "U8", "shape": [4], "data_offsets": [end, end + 4]}
        body += b"abcd"
    elif case == "extra train tensor":
        h["train.secret"] = {"dtype": "U8", "shape": [4], "data_offsets": [end, end + 4]}
        body += b"abcd"
    elif case == "extra entry key":
        h["out.bias"]["evil"] = 1
    elif case == "header a list":
        return [1, 2], body  # type: ignore[return-value]
    elif case == "metadata not text":
        h["__metadata__"]["ocrobin"] = 5
    elif case == "metadata not JSON":
        h["__metadata__"]["ocrobin"] = '{"format": "ocrobin-model", '
    elif case == "metadata a list":
        h["__metadata__"]["ocrobin"] = "[1]"
    elif case == "no metadata":
        del h["__metadata__"]
    elif case in ("unknown arch", "arch a list", "nfeat -1", "nfeat text", "nfeat huge", "nhidden 0", "bad hparam",
                  "hparams a list"):
        meta.update({
            "unknown arch": {"arch": "nope"}, "arch a list": {"arch": ["lstm2-seed"]},
            "nfeat -1": {"hparams": {"nfeat": -1}}, "nfeat text": {"hparams": {"nfeat": "8"}},
            "nfeat huge": {"hparams": {"nfeat": 10**12}}, "nhidden 0": {"hparams": {"nhidden": 0}},
            "bad hparam": {"hparams": {"widths": [8]}}, "hparams a list": {"hparams": [8, 4]},
        }[case])
        h["__metadata__"]["ocrobin"] = json.dumps(meta)
    else:
        raise AssertionError(case)
    return h, body


SAFETENSORS_CASES = ["shape", "shape and bytes", "float as int", "counter as float", "unknown dtype", "overlap",
                     "same bytes twice",
                     "past the end", "negative offset", "reversed offsets", "missing tensor", "extra tensor",
                     "extra train tensor", "extra entry key", "header a list", "metadata not text",
                     "metadata not JSON", "metadata a list", "no metadata", "unknown arch", "arch a list", "nfeat -1",
                     "nfeat text", "nfeat huge", "nhidden 0", "bad hparam", "hparams a list"]


@pytest.mark.parametrize("case", SAFETENSORS_CASES)
def test_crafted_safetensors_header_is_refused(tmp_path: Path, packaged: tuple[bytes, Any], case: str) -> None:
    data, _ = packaged
    p = tmp_path / "crafted.safetensors"
    p.write_bytes(join_st(*_edit(*split_st(data), case)))
    with pytest.raises(ModelError, match="crafted.safetensors: "):
        load(p)


def test_training_state_beside_the_weights_is_accepted(tmp_path: Path, packaged: tuple[bytes, Any]) -> None:
    data, shapes = packaged
    h, body = split_st(data)
    end = len(body)
    h["train.optim.0.exp_avg"] = {"dtype": "F32", "shape": [2], "data_offsets": [end, end + 8]}
    h["train.torch_rng"] = {"dtype": "U8", "shape": [3], "data_offsets": [end + 8, end + 11]}
    p = tmp_path / "ck.safetensors"
    p.write_bytes(join_st(h, body + np.ones(2, "<f4").tobytes() + b"xyz"))
    info = load(p)
    assert shapes_of(info) == shapes
    assert sorted(info.extra) == ["optim.0.exp_avg", "torch_rng"]

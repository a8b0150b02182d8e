"""Import of the original ocrobin model files (Python 2 / PyTorch 0.3 whole-module pickles).

Such a file is a pickle that names classes and functions to call, so ``torch.load`` on it could run
anything. We never give the pickle real classes: :class:`AllowListUnpickler` maps the few names that
rebuild tensors and module state to inert stand-ins that only record what they were given, and refuses
every other name before anything is called. The recorded state is then checked against the original
architecture and copied into :class:`ocrobin.models.Lstm2Seed`.

Legacy layout (``torch.save`` before the zip format): five pickles in a row — magic number, protocol
version, system info, the object (storages as persistent ids), the list of storage keys — followed by
each storage's element count (int64) and raw little-endian bytes.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from . import models
from .exceptions import ModelError, UnsafeModelError
from .modelfile import ModelInfo, make_meta

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
}

#: (module, name) pairs of module classes the original model is made of.
_MODULE_CLASSES = {
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.activation", "Sigmoid"),
    ("torch.nn.modules.rnn", "LSTM"),
    ("dltrainers.layers", "LSTM2"),
    ("dltrainers.layers", "RowwiseLSTM"),
}


class _ModuleStub:
    """Records a module's pickled ``__dict__``; has no behaviour."""

    legacy_name = "?"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeModelError(f"unexpected state for {self.legacy_name}")
        self.__dict__.update(state)


class _StorageType:
    """Marks a storage class name in a persistent id."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _TensorRef:
    """A tensor to be cut from a storage once the raw storages have been read."""

    def __init__(self, storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        if not isinstance(storage, _StorageRef):
            raise UnsafeModelError("tensor rebuilt from something that is not a storage")
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def materialize(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        base = arrays.get(self.storage.key)
        if base is None:
            raise ModelError(f"storage {self.storage.key} missing from file")
        n = int(np.prod(self.size)) if self.size else 1
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride, strict=True)) if n else 0
        if self.offset < 0 or last >= len(base) and n:
            raise ModelError(f"tensor reaches outside its storage {self.storage.key}")
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        )
        return torch.from_numpy(np.array(view))


class _StorageRef:
    def __init__(self, key: str, kind: _StorageType, size: int) -> None:
        self.key, self.kind, self.size = key, kind, int(size)


class _ParameterStub:
    """Stand-in for ``torch.nn.Parameter(tensor)``; ignores requires-grad state."""

    def __init__(self, data: Any, *args: Any) -> None:
        if not isinstance(data, _TensorRef):
            raise UnsafeModelError("Parameter built from something that is not a tensor")
        self.data = data

    def __setstate__(self, state: Any) -> None:
        pass


class _Inert:
    """Stand-in for harmless helper objects (cuDNN descriptors, backend handles)."""

    def __init__(self, *args: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> _TensorRef:
    return _TensorRef(storage, offset, size, stride)


def _no_backend(*args: Any) -> None:
    return None


class AllowListUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the names a legacy ocrobin model needs, to inert stand-ins."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="latin1")
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _MODULE_CLASSES:
            return type(name, (_ModuleStub,), {"legacy_name": f"{module}.{name}"})
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch.nn.parameter" and name == "Parameter":
            return _ParameterStub
        if module == "torch.nn.backends.thnn" and name == "_get_thnn_function_backend":
            return _no_backend
        if module == "torch.backends.cudnn.rnn" and name == "Unserializable":
            return _Inert
        raise UnsafeModelError(f"refusing to load {module}.{name}: not on the allow-list (nothing was executed)")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise UnsafeModelError(f"unexpected persistent id {pid!r}")
        kind = pid[0]
        if kind == "module":
            cls = pid[1]
            if not (isinstance(cls, type) and issubclass(cls, _ModuleStub)):
                raise UnsafeModelError("module persistent id names a class outside the allow-list")
            return cls
        if kind == "storage":
            storage_type, key, _location, size = pid[1], str(pid[2]), pid[3], pid[4]
            if not isinstance(storage_type, _StorageType):
                raise UnsafeModelError("storage of an unknown type")
            if len(pid) > 5 and pid[5] is not None:
                raise ModelError("storage views are not supported in legacy files")
            ref = self.storages.get(key)
            if ref is None:
                ref = self.storages[key] = _StorageRef(key, storage_type, size)
            return ref
        raise UnsafeModelError(f"unexpected persistent id kind {kind!r}")


def _read_storages(f: io.BytesIO, keys: list[str], refs: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(str(key))
        if ref is None:
            raise ModelError(f"storage {key} listed but never used")
        header = f.read(8)
        if len(header) != 8:
            raise ModelError("file truncated in storage data")
        (n,) = struct.unpack("<q", header)
        dtype = np.dtype(ref.kind.dtype).newbyteorder("<")
        raw = f.read(n * dtype.itemsize)
        if n < 0 or len(raw) != n * dtype.itemsize:
            raise ModelError("file truncated in storage data")
        arrays[str(key)] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    return arrays


def read_legacy(path: str | os.PathLike[str]) -> tuple[Any, dict[str, np.ndarray]]:
    """Unpickle a legacy file through the allow-list; returns the stub tree and the raw storages.

    Raises:
        UnsafeModelError: the pickle names anything outside the allow-list.
        ModelError: not a legacy PyTorch file, or truncated.
    """
    try:
        data = open(path, "rb").read()  # noqa: SIM115
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from e
    f = io.BytesIO(data)
    try:
        magic = AllowListUnpickler(f).load()
        if magic != LEGACY_MAGIC:
            raise ModelError(f"{path}: not a legacy PyTorch (0.x) model file")
        protocol = AllowListUnpickler(f).load()
        if protocol != LEGACY_PROTOCOL:
            raise ModelError(f"{path}: unsupported legacy protocol {protocol!r}")
        AllowListUnpickler(f).load()  # sys info: plain dict
        main = AllowListUnpickler(f)
        obj = main.load()
        keys = AllowListUnpickler(f).load()
    except UnsafeModelError as e:
        raise UnsafeModelError(f"{path}: {e}") from e
    except ModelError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        raise ModelError(f"{path}: not a readable legacy model file ({e})") from e
    if not isinstance(keys, list):
        raise ModelError(f"{path}: malformed storage key list")
    return obj, _read_storages(f, keys, main.storages)


def _params(stub: Any, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for k, v in (getattr(stub, group, None) or {}).items():
            if k in names and v is not None:
                ref = v.data if isinstance(v, _ParameterStub) else v
                if not isinstance(ref, _TensorRef):
                    raise ModelError(f"{stub.legacy_name}.{k} is not a tensor")
                found[k] = ref.materialize(arrays)
    missing = [n for n in names if n not in found]
    if missing:
        raise ModelError(f"{stub.legacy_name} lacks {', '.join(missing)}")
    return found


_LSTM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
               "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse")


def import_legacy(path: str | os.PathLike[str]) -> ModelInfo:
    """Rebuild the original ocrobin network from a legacy file as an ``lstm2-seed`` model.

    Raises:
        UnsafeModelError: the file names classes or functions outside the allow-list.
        ModelError: the file is not the original architecture or is damaged.
    """
    obj, arrays = read_legacy(path)
    expected = ["Conv2d", "BatchNorm2d", "ReLU", "LSTM2", "Conv2d", "Sigmoid"]
    layers = list((getattr(obj, "_modules", None) or {}).values())
    kinds = [type(m).__name__ for m in layers]
    if type(obj).__name__ != "Sequential" or kinds != expected:
        raise ModelError(f"{path}: not the original ocrobin architecture (found {kinds})")
    conv, bn, _, lstm2, out, _ = layers
    state: dict[str, torch.Tensor] = {}
    for k, v in _params(conv, arrays, ("weight", "bias")).items():
        state[f"conv.{k}"] = v
    for k, v in _params(bn, arrays, ("weight", "bias", "running_mean", "running_var")).items():
        state[f"bn.{k}"] = v
    state["bn.num_batches_tracked"] = torch.tensor(0)
    for part in ("hlstm", "vlstm"):
        row = lstm2._modules.get(part)
        lstm = getattr(row, "_modules", {}).get("lstm") if row is not None else None
        if lstm is None:
            raise ModelError(f"{path}: LSTM2 lacks {part}")
        for k, v in _params(lstm, arrays, _LSTM_NAMES).items():
            state[f"lstm.{part}.lstm.{k}"] = v
    for k, v in _params(out, arrays, ("weight", "bias")).items():
        state[f"out.{k}"] = v
    nfeat = state["conv.weight"].shape[0]
    nhidden = state["lstm.hlstm.lstm.weight_hh_l0"].shape[1]
    model = models.build("lstm2-seed", nfeat=int(nfeat), nhidden=int(nhidden))
    eps = getattr(bn, "eps", 1e-5)
    model.bn.eps = float(eps)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the original architecture: {e}") from e
    model.eval()
    meta = make_meta(
        model,
        source=os.path.basename(str(path)),
        note="imported from the original ocropus3-ocrobin model (Python 2 / PyTorch 0.3 pickle)",
        command=f"ocrobin import-legacy {os.path.basename(str(path))} OUT",
    )
    meta["name"] = "lstm2-seed"
    return ModelInfo(model, meta, str(path))

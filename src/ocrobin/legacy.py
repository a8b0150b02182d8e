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
import math
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
#: Highest tensor rank a legacy file may declare (the original network's tensors have at most 4).
MAX_RANK = 8

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

    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeModelError("unexpected state for a storage type")


def _index_tuple(value: Any, what: str) -> tuple[int, ...]:
    """A tensor's size or stride as non-negative ints (a negative stride would read before the storage)."""
    if not isinstance(value, tuple | list) or len(value) > MAX_RANK:
        raise UnsafeModelError(f"tensor {what} is not a tuple of at most {MAX_RANK} ints")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise UnsafeModelError(f"tensor {what} {tuple(value)!r} holds a negative or non-integer entry")
    return tuple(value)


class _TensorRef:
    """A tensor to be cut from a storage once the raw storages have been read.

    Size, stride and offset come from the file, so they are checked against the storage here, before
    any value is read: the tensor must lie inside its storage and hold no more values than it.
    """

    __slots__ = ("storage", "offset", "size", "stride", "numel")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, _StorageRef):
            raise UnsafeModelError("tensor rebuilt from something that is not a storage")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise UnsafeModelError(f"tensor storage offset {offset!r} is not a non-negative int")
        self.size, self.stride = _index_tuple(size, "size"), _index_tuple(stride, "stride")
        if len(self.size) != len(self.stride):
            raise UnsafeModelError(f"tensor size {self.size} and stride {self.stride} differ in rank")
        self.storage, self.offset, self.numel = storage, offset, math.prod(self.size)
        _check_extent(self, storage.size)

    def __setstate__(self, state: Any) -> None:
        raise UnsafeModelError("unexpected state for a tensor")

    def materialize(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """Copy the tensor's values out of its storage (by index: numpy checks every one)."""
        base = arrays.get(self.storage.key)
        if base is None:
            raise ModelError(f"storage {self.storage.key} missing from file")
        _check_extent(self, len(base))
        if self.numel == 0:
            return torch.from_numpy(np.zeros(self.size, dtype=base.dtype))
        index = np.full((1,) * len(self.size), self.offset, dtype=np.int64)
        for axis, (s, st) in enumerate(zip(self.size, self.stride, strict=True)):
            if s > 1:  # a size-1 axis adds nothing, whatever its stride
                shape = [1] * len(self.size)
                shape[axis] = s
                index = index + (np.arange(s, dtype=np.int64) * st).reshape(shape)
        return torch.from_numpy(np.ascontiguousarray(base[index]))


def _check_extent(t: _TensorRef, elements: int) -> None:
    """Refuse a tensor that reaches past ``elements`` or holds more values than the storage."""
    if t.numel > elements:
        raise UnsafeModelError(f"tensor of size {t.size} holds more values than its storage "
                               f"{t.storage.key} ({elements})")
    if t.numel == 0:
        if t.offset > elements:
            raise UnsafeModelError(f"tensor offset {t.offset} lies outside its storage {t.storage.key}")
        return
    extent = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride, strict=True)) + 1
    if extent > elements:
        raise UnsafeModelError(f"tensor (offset {t.offset}, size {t.size}, stride {t.stride}) reaches outside "
                               f"its storage {t.storage.key} of {elements} elements")


class _StorageRef:
    """A storage named by the pickle; its bytes follow the pickles."""

    __slots__ = ("key", "kind", "size")

    def __init__(self, key: str, kind: _StorageType, size: int) -> None:
        self.key, self.kind, self.size = key, kind, size


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
            cls = pid[1] if len(pid) > 1 else None
            if not (isinstance(cls, type) and issubclass(cls, _ModuleStub)):
                raise UnsafeModelError("module persistent id names a class outside the allow-list")
            return cls
        if kind == "storage":
            if len(pid) < 5:
                raise UnsafeModelError("storage persistent id too short")
            storage_type, key, size = pid[1], pid[2], pid[4]
            if not isinstance(storage_type, _StorageType):
                raise UnsafeModelError("storage of an unknown type")
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise UnsafeModelError("storage key is not a string")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise UnsafeModelError(f"storage size {size!r} is not a non-negative int")
            if len(pid) > 5 and pid[5] is not None:
                raise ModelError("storage views are not supported in legacy files")
            key = str(key)
            ref = self.storages.get(key)
            if ref is None:
                ref = self.storages[key] = _StorageRef(key, storage_type, size)
            elif ref.kind.name != storage_type.name or ref.size != size:
                raise UnsafeModelError(f"storage {key} declared twice with different type or size")
            return ref
        raise UnsafeModelError(f"unexpected persistent id kind {kind!r}")


def _read_storages(f: io.BytesIO, keys: list[Any], refs: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    """Read each listed storage; its length must be the one its persistent id declared.

    Raises:
        ModelError: truncated, a storage listed twice or never used, or bytes after the last storage.
        UnsafeModelError: a storage's length differs from its declaration.
    """
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(str(key))
        if ref is None:
            raise ModelError(f"storage {key} listed but never used")
        if ref.key in arrays:
            raise ModelError(f"storage {key} listed twice")
        header = f.read(8)
        if len(header) != 8:
            raise ModelError("file truncated in storage data")
        (n,) = struct.unpack("<q", header)
        if n != ref.size:
            raise UnsafeModelError(f"storage {key} holds {n} elements but was declared with {ref.size}")
        dtype = ref.kind.dtype
        raw = f.read(n * dtype.itemsize)
        if len(raw) != n * dtype.itemsize:
            raise ModelError("file truncated in storage data")
        arrays[ref.key] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    rest = len(f.getbuffer()) - f.tell()
    if rest:
        raise ModelError(f"{rest} unexpected bytes after the last storage")
    return arrays


#: What a damaged or crafted pickle can make the unpickler raise (besides our own errors).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, KeyError, IndexError,
                  OverflowError, MemoryError, RecursionError, struct.error)


def read_legacy(path: str | os.PathLike[str]) -> tuple[Any, dict[str, np.ndarray]]:
    """Unpickle a legacy file through the allow-list; returns the stub tree and the raw storages.

    Raises:
        UnsafeModelError: the pickle names anything outside the allow-list, or a storage's length differs
            from its declaration.
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
            raise ModelError("not a legacy PyTorch (0.x) model file")
        protocol = AllowListUnpickler(f).load()
        if protocol != LEGACY_PROTOCOL:
            raise ModelError(f"unsupported legacy protocol {protocol!r}")
        AllowListUnpickler(f).load()  # sys info: plain dict
        main = AllowListUnpickler(f)
        obj = main.load()
        keys = AllowListUnpickler(f).load()
        if not isinstance(keys, list):
            raise ModelError("malformed storage key list")
        arrays = _read_storages(f, keys, main.storages)
    except UnsafeModelError as e:
        raise UnsafeModelError(f"{path}: {e}") from e
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    except _PICKLE_ERRORS as e:
        reason = ascii(str(e))[1:-1]  # damaged pickles put raw bytes in messages: keep it to one short line
        raise ModelError(f"{path}: not a readable legacy model file ({type(e).__name__}: {reason[:100]})") from e
    return obj, arrays


def _mapping(value: Any, what: str) -> dict[Any, Any]:
    """A module's ``_modules``/``_parameters``/``_buffers`` entry, which the file may have replaced."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError(f"{what} is not a mapping")
    return value


def _params(stub: Any, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    if not isinstance(stub, _ModuleStub):
        raise ModelError(f"a {type(stub).__name__} where a module was expected")
    found: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for k, v in _mapping(getattr(stub, group, None), f"{stub.legacy_name}.{group}").items():
            if k in names and v is not None:
                ref = v.data if isinstance(v, _ParameterStub) else v
                if not isinstance(ref, _TensorRef):
                    raise ModelError(f"{stub.legacy_name}.{k} is not a tensor")
                if ref.storage.kind.dtype.kind != "f":
                    raise ModelError(f"{stub.legacy_name}.{k} is a {ref.storage.kind.name}, not floating point")
                found[k] = ref.materialize(arrays).float()
    missing = [n for n in names if n not in found]
    if missing:
        raise ModelError(f"{stub.legacy_name} lacks {', '.join(missing)}")
    return found


def _children(stub: Any) -> dict[Any, Any]:
    return _mapping(getattr(stub, "_modules", None), f"{getattr(stub, 'legacy_name', 'module')}._modules")


_LSTM_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
               "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse")


def _rebuild(obj: Any, arrays: dict[str, np.ndarray]) -> tuple[torch.nn.Module, float]:
    """The ``lstm2-seed`` network from the stub tree; errors do not name the file (the caller adds it)."""
    expected = ["Conv2d", "BatchNorm2d", "ReLU", "LSTM2", "Conv2d", "Sigmoid"]
    layers = list(_children(obj).values()) if isinstance(obj, _ModuleStub) else []
    kinds = [type(m).__name__ for m in layers]
    if type(obj).__name__ != "Sequential" or kinds != expected:
        raise ModelError(f"not the original ocrobin architecture (found {kinds})")
    conv, bn, _, lstm2, out, _ = layers
    state: dict[str, torch.Tensor] = {}
    for k, v in _params(conv, arrays, ("weight", "bias")).items():
        state[f"conv.{k}"] = v
    for k, v in _params(bn, arrays, ("weight", "bias", "running_mean", "running_var")).items():
        state[f"bn.{k}"] = v
    state["bn.num_batches_tracked"] = torch.tensor(0)
    for part in ("hlstm", "vlstm"):
        row = _children(lstm2).get(part)
        lstm = _children(row).get("lstm") if row is not None else None
        if lstm is None:
            raise ModelError(f"LSTM2 lacks {part}")
        for k, v in _params(lstm, arrays, _LSTM_NAMES).items():
            state[f"lstm.{part}.lstm.{k}"] = v
    for k, v in _params(out, arrays, ("weight", "bias")).items():
        state[f"out.{k}"] = v
    conv_w, hh = state["conv.weight"], state["lstm.hlstm.lstm.weight_hh_l0"]
    if conv_w.dim() != 4 or hh.dim() != 2:
        raise ModelError(f"weights of shapes {tuple(conv_w.shape)} and {tuple(hh.shape)} do not fit "
                         "the original architecture")
    eps = getattr(bn, "eps", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, float | int) or not 0.0 < eps < 1.0:
        raise ModelError(f"BatchNorm eps {eps!r} is not a small positive number")
    nfeat, nhidden = int(conv_w.shape[0]), int(hh.shape[1])
    try:
        model = models.build("lstm2-seed", nfeat=nfeat, nhidden=nhidden)
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"weights do not fit the original architecture: {e}") from e
    for k, want in model.state_dict().items():
        if tuple(state[k].shape) != tuple(want.shape):
            raise ModelError(f"{k} has shape {tuple(state[k].shape)}, the original architecture with "
                             f"{nfeat} features and {nhidden} LSTM units wants {tuple(want.shape)}")
    model.bn.eps = float(eps)
    model.load_state_dict(state, strict=True)
    if not all(bool(torch.isfinite(v).all()) for v in state.values()):
        raise ModelError("weights hold NaN or infinite values")
    return model, float(eps)


def import_legacy(path: str | os.PathLike[str]) -> ModelInfo:
    """Rebuild the original ocrobin network from a legacy file as an ``lstm2-seed`` model.

    Every tensor is checked against its storage (offset, size, stride, extent, dtype) before a value is
    read, so a crafted file cannot make the reader touch memory outside what the file holds.

    Args:
        path: the legacy ``.pt`` file.

    Returns:
        the model (eval mode) and its metadata.

    Raises:
        UnsafeModelError: the file names classes or functions outside the allow-list, or a tensor does not
            fit its storage; the message names the file.
        ModelError: the file is not the original architecture or is damaged; the message names the file.
    """
    obj, arrays = read_legacy(path)
    try:
        model, _ = _rebuild(obj, arrays)
    except UnsafeModelError as e:
        raise UnsafeModelError(f"{path}: {e}") from e
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from e
    model.eval()
    meta = make_meta(
        model,
        source=os.path.basename(str(path)),
        note="imported from the original ocropus3-ocrobin model (Python 2 / PyTorch 0.3 pickle)",
        command=f"ocrobin import-legacy {os.path.basename(str(path))} OUT",
    )
    meta["name"] = "lstm2-seed"
    return ModelInfo(model, meta, str(path))

"""Our model file: safetensors weights with JSON metadata in the same file, and the packaged models.

A model file holds tensors only, so loading one never runs code. Its safetensors header carries one
metadata entry, ``ocrobin``, a JSON document: architecture and hyper-parameters, input normalisation,
output meaning, BatchNorm mode, provenance (data, command, samples seen) and a SHA-256 over the
weights, checked on load. Training checkpoints add optimizer and RNG state under ``train.*`` names and a
``train`` section in the JSON; inference ignores both.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import models
from .exceptions import ModelError
from .imageio import atomic_path

FORMAT = "ocrobin-model"
FORMAT_VERSION = 1
META_KEY = "ocrobin"
TRAIN_PREFIX = "train."
#: Training state a checkpoint may hold under :data:`TRAIN_PREFIX` (what ``ocrobin.train`` saves: the
#: optimizer's tensors and the torch RNG); any other tensor beside the weights makes the file suspect.
TRAIN_STATE_PREFIXES = ("optim.", "torch_rng")
#: The safetensors library refuses longer headers; so do we, before reading one.
MAX_HEADER_BYTES = 100_000_000

#: Bytes per element of the safetensors dtypes.
_ITEM_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_TORCH_DTYPES = {torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}

#: The model ``Binarizer()`` and ``ocrobin binarize`` use when none is named.
DEFAULT_MODEL = "msfcn-v3"

INPUT_DOC = "grey page, float in [0, 1], 0 = black; colour = mean of R, G, B"
OUTPUT_DOC = "ink logits, same size as the input; sigmoid gives the ink probability"


@dataclass
class ModelInfo:
    """A loaded model and what its file says about it."""

    model: nn.Module
    meta: dict[str, Any]
    path: str | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short name for messages and tables."""
        return str(self.meta.get("name") or (Path(self.path).stem if self.path else self.meta.get("arch")))


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().contiguous().cpu()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def make_meta(model: nn.Module, **provenance: Any) -> dict[str, Any]:
    """The metadata document for ``model`` (built by :func:`ocrobin.models.build`)."""
    arch = getattr(model, "arch", None)
    if arch is None:
        raise ModelError("model was not built through ocrobin.models.build: its architecture is unknown")
    per_image = bool(getattr(model, "per_image_bn", False))
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "arch": arch,
        "hparams": dict(getattr(model, "hparams", {})),
        "input": INPUT_DOC,
        "output": OUTPUT_DOC,
        "batchnorm": "per-image" if per_image else "running",
        "parameters": models.count_parameters(model),
        "provenance": provenance,
    }


def save_model(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any],
               extra: dict[str, torch.Tensor] | None = None) -> str:
    """Write ``model`` with ``meta`` atomically; returns the weights' SHA-256.

    Args:
        path: target file (``.safetensors``).
        model: the network; its ``state_dict`` is saved.
        meta: metadata (see :func:`make_meta`); ``sha256`` is filled in.
        extra: more tensors (training state), stored under ``train.`` names.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = dict(meta)
    meta["sha256"] = weights_hash(state)
    tensors = dict(state)
    for k, v in (extra or {}).items():
        tensors[TRAIN_PREFIX + k] = v.detach().contiguous().cpu()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return meta["sha256"]


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The safetensors header of a file, checked before any tensor is read.

    The header length must fit the file; every entry needs a known dtype, a shape of non-negative ints and
    data offsets that match that shape and lie in the data; together the entries must cover the data
    exactly, without overlap.

    Args:
        path: a ``.safetensors`` file.

    Returns:
        the header: tensor name → ``{"dtype", "shape", "data_offsets"}``, plus ``__metadata__``.

    Raises:
        ModelError: unreadable, truncated or malformed; the message names the file.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path}: not a safetensors model file ({size} bytes, too short)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > MAX_HEADER_BYTES:
                raise ModelError(f"{path}: not a safetensors model file or truncated (header of {n} bytes, "
                                 f"file of {size})")
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"{path}: corrupt safetensors header ({type(e).__name__})") from e
    if not isinstance(header, dict):
        raise ModelError(f"{path}: corrupt safetensors header (not a JSON object)")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelError(f"{path}: corrupt safetensors header (metadata is not a map of strings)")
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ModelError(f"{path}: corrupt safetensors header (entry {name!r})")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ITEM_BYTES:
            raise ModelError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise ModelError(f"{path}: tensor {name!r} has a malformed shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
                and offsets[0] <= offsets[1] <= data_len):
            raise ModelError(f"{path}: tensor {name!r} has offsets {offsets!r} outside the data "
                             f"({data_len} bytes; file truncated or damaged)")
        if offsets[1] - offsets[0] != math.prod(shape) * _ITEM_BYTES[dtype]:
            raise ModelError(f"{path}: tensor {name!r} of shape {shape} and dtype {dtype} does not fill its "
                             f"{offsets[1] - offsets[0]} bytes")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps another" if begin < end else "leaves a gap before it"
            raise ModelError(f"{path}: tensor {name!r} {what} in the data (offset {begin}, expected {end})")
        end = stop
    if end != data_len:
        raise ModelError(f"{path}: tensors cover {end} of {data_len} data bytes (file truncated or damaged)")
    return header


def _meta_of(path: str | os.PathLike[str], header: dict[str, Any]) -> dict[str, Any]:
    raw = header.get("__metadata__", {}).get(META_KEY)
    if raw is None:
        raise ModelError(f"{path}: safetensors file without ocrobin metadata")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"{path}: corrupt ocrobin metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not an ocrobin model file")
    return meta


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a model file, without loading weights.

    Raises:
        ModelError: not a safetensors file, malformed or not one of ours.
    """
    return _meta_of(path, read_header(path))


def _build(path: str | os.PathLike[str], meta: dict[str, Any], device: str | None = None) -> nn.Module:
    """The architecture the metadata names (on the ``meta`` device: shapes only, no memory)."""
    arch, hparams = meta.get("arch"), meta.get("hparams", {})
    if not isinstance(arch, str) or not isinstance(hparams, dict):
        raise ModelError(f"{path}: metadata names no architecture (arch {arch!r}, hparams {hparams!r})")
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return models.build(arch, **hparams)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OverflowError, ZeroDivisionError) as e:
        raise ModelError(f"{path}: cannot build architecture {arch!r} with {str(hparams)[:200]}: {e}") from e


#: Architectures whose hyper-parameters are all at most this (and not more than :data:`USUAL_COUNT` of
#: them) are small enough to build before their tensors are checked.
USUAL_VALUE = 1024
USUAL_COUNT = 16


def _usual(meta: dict[str, Any]) -> bool:
    values: list[Any] = []
    for v in (meta.get("hparams") or {}).values() if isinstance(meta.get("hparams"), dict) else [None]:
        values.extend(v if isinstance(v, list | tuple) else [v])
    return len(values) <= USUAL_COUNT and all(
        isinstance(v, bool) or (isinstance(v, int | float) and abs(v) <= USUAL_VALUE) for v in values)


def check_tensors(path: str | os.PathLike[str], header: dict[str, Any], model: nn.Module) -> None:
    """Check a file's tensors against the architecture before any weight is read.

    Every parameter and buffer must be present with the architecture's shape and a floating dtype (integer
    buffers such as BatchNorm's ``num_batches_tracked`` their own dtype); besides them only the known
    training state (:data:`TRAIN_STATE_PREFIXES` under :data:`TRAIN_PREFIX`) may be there.

    Args:
        path: the file, for messages.
        header: its header (:func:`read_header`).
        model: the architecture built from its metadata (any device, ``meta`` included).

    Raises:
        ModelError: a tensor missing, of another shape or dtype, or unexpected; one line naming the file.
    """
    arch = getattr(model, "arch", type(model).__name__)
    expected = model.state_dict()
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ModelError(f"{path}: lacks {', '.join(missing[:3])}{more} of architecture {arch!r}")
    for k, want in expected.items():
        got = tensors[k]
        if tuple(got["shape"]) != tuple(want.shape):
            raise ModelError(f"{path}: tensor {k} has shape {tuple(got['shape'])}, architecture {arch!r} "
                             f"wants {tuple(want.shape)}")
        if want.is_floating_point():
            ok = got["dtype"] in _FLOAT_DTYPES
        else:
            ok = got["dtype"] == _TORCH_DTYPES.get(want.dtype)
        if not ok:
            raise ModelError(f"{path}: tensor {k} has dtype {got['dtype']}, architecture {arch!r} wants {want.dtype}")
    for k in tensors:
        if k not in expected and not (k.startswith(TRAIN_PREFIX)
                                      and k[len(TRAIN_PREFIX):].startswith(TRAIN_STATE_PREFIXES)):
            raise ModelError(f"{path}: unexpected tensor {k!r} (not part of architecture {arch!r})")


def load_model(path: str | os.PathLike[str], verify: bool = True) -> ModelInfo:
    """Load one of our model files (weights, metadata and any training state).

    The header and the tensors' names, shapes and dtypes are checked against the architecture before any
    weight is read; the weights must then match their SHA-256 and be finite.

    Args:
        path: a ``.safetensors`` file written by :func:`save_model`.
        verify: check the weights' SHA-256 against the metadata.

    Returns:
        the model (eval mode), its metadata and any training state.

    Raises:
        ModelError: unreadable or malformed file, unknown architecture, tensors that do not fit it, hash
            mismatch or non-finite weights; the message names the file.
    """
    header = read_header(path)
    meta = _meta_of(path, header)
    # small architectures are built at once (building on the meta device costs ~75 MB of torch's own
    # meta kernels, a fifth of the memory a run may use); hyper-parameters out of the usual range only
    # on the meta device, so a crafted file cannot make us allocate a huge model
    model = _build(path, meta) if _usual(meta) else None
    check_tensors(path, header, model if model is not None else _build(path, meta, device="meta"))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: cannot read weights ({e})") from e
    state = {k: v for k, v in tensors.items() if not k.startswith(TRAIN_PREFIX)}
    extra = {k[len(TRAIN_PREFIX):]: v for k, v in tensors.items() if k.startswith(TRAIN_PREFIX)}
    if verify and meta.get("sha256") and weights_hash(state) != meta["sha256"]:
        raise ModelError(f"{path}: weights do not match their SHA-256 (file damaged or edited)")
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        raise ModelError(f"{path}: weights hold NaN or infinite values")
    model = model if model is not None else _build(path, meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit architecture {meta['arch']!r}: {e}") from e
    model.eval()
    return ModelInfo(model, meta, str(path), extra)


def packaged_models() -> list[str]:
    """Names of the models shipped inside the package."""
    base = resources.files("ocrobin") / "data"
    if not base.is_dir():
        return []
    return sorted(p.name[: -len(".safetensors")] for p in base.iterdir() if p.name.endswith(".safetensors"))


def packaged_path(name: str) -> Path:
    """Path of a packaged model by name (``default`` means :data:`DEFAULT_MODEL`).

    Raises:
        ModelError: no such packaged model.
    """
    if name == "default":
        name = DEFAULT_MODEL
    p = Path(str(resources.files("ocrobin") / "data" / f"{name}.safetensors"))
    if not p.is_file():
        raise ModelError(f"no packaged model named {name!r}; packaged: {', '.join(packaged_models()) or 'none'}")
    return p


def release_model(src: str | os.PathLike[str] | ModelInfo, path: str | os.PathLike[str], name: str | None = None,
                  threshold: float | None = None, confidence: tuple[float, float] | None = None,
                  low_confidence: float | None = None, **provenance: Any) -> str:
    """Write a model without its training state (optimizer, RNG, data positions): what a package ships.

    Args:
        src: a checkpoint path or a loaded model.
        path: output file.
        name: model name recorded in the metadata.
        threshold: calibrate the output so that the usual cut at probability 0.5 acts as a cut at
            ``threshold`` of the source model (found on training pages, e.g. with
            ``benchmarks/threshold_sweep.py``); every tool that thresholds at 0.5 then uses it.
        confidence: (a, b) of the page confidence clip(a − b × uncertainty), fitted on training pages of the
            model as released (``benchmarks/confidence.py --fit``); stored as ``meta["confidence"]``.
        low_confidence: the confidence below which pages are flagged ``low-confidence``.
        provenance: entries added to the metadata's provenance.

    Returns:
        the weights' SHA-256.

    Raises:
        ModelError: ``threshold`` outside (0, 1) or the architecture has no output bias.
    """
    info = src if isinstance(src, ModelInfo) else load_model(src)
    meta = {k: v for k, v in info.meta.items() if k not in ("train", "sha256")}
    meta["provenance"] = {**meta.get("provenance", {}), **provenance}
    model = info.model
    if threshold is not None:
        if not 0.0 < threshold < 1.0:
            raise ModelError(f"threshold must lie in (0, 1), got {threshold}")
        model = copy.deepcopy(model)  # the caller's model stays as it was
        try:
            bias = models.output_bias(model)
        except TypeError as e:
            raise ModelError(str(e)) from e
        with torch.no_grad():
            bias -= math.log(threshold / (1.0 - threshold))
        meta["provenance"]["calibrated_threshold"] = threshold
    if confidence is not None:
        meta["confidence"] = {"a": float(confidence[0]), "b": float(confidence[1])}
    if low_confidence is not None:
        if not 0.0 <= low_confidence <= 1.0:
            raise ModelError(f"low_confidence must lie in [0, 1], got {low_confidence}")
        meta["low_confidence"] = float(low_confidence)
    if name:
        meta["name"] = name
    return save_model(path, model, meta)

"""Our model file: safetensors weights with JSON metadata in the same file, and the packaged models.

A model file holds tensors only, so loading one never runs code. Its safetensors header carries one
metadata entry, ``ocrobin``, a JSON document: architecture and hyper-parameters, input normalisation,
output meaning, BatchNorm mode, provenance (data, command, samples seen) and a SHA-256 over the
weights, checked on load. Training checkpoints add optimizer and RNG state under ``train.*`` names and a
``train`` section in the JSON; inference ignores both.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from . import models
from .exceptions import ModelError
from .imageio import atomic_path

FORMAT = "ocrobin-model"
FORMAT_VERSION = 1
META_KEY = "ocrobin"
TRAIN_PREFIX = "train."

#: The model ``Binarizer()`` and ``ocrobin binarize`` use when none is named.
DEFAULT_MODEL = "msfcn-dibco"

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


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a model file, without loading weights.

    Raises:
        ModelError: not a safetensors file or not one of ours.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable safetensors model file ({e})") from e
    if raw is None:
        raise ModelError(f"{path}: safetensors file without ocrobin metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: corrupt ocrobin metadata ({e})") from e
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not an ocrobin model file")
    return meta


def load_model(path: str | os.PathLike[str], verify: bool = True) -> ModelInfo:
    """Load one of our model files (weights, metadata and any training state).

    Raises:
        ModelError: unreadable file, unknown architecture, hash mismatch or mismatching weights.
    """
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: cannot read weights ({e})") from e
    state = {k: v for k, v in tensors.items() if not k.startswith(TRAIN_PREFIX)}
    extra = {k[len(TRAIN_PREFIX):]: v for k, v in tensors.items() if k.startswith(TRAIN_PREFIX)}
    if verify and meta.get("sha256") and weights_hash(state) != meta["sha256"]:
        raise ModelError(f"{path}: weights do not match their SHA-256 (file damaged or edited)")
    try:
        model = models.build(meta["arch"], **meta.get("hparams", {}))
    except (KeyError, TypeError) as e:
        raise ModelError(f"{path}: cannot build architecture {meta.get('arch')!r}: {e}") from e
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
                  threshold: float | None = None, **provenance: Any) -> str:
    """Write a model without its training state (optimizer, RNG, data positions): what a package ships.

    Args:
        src: a checkpoint path or a loaded model.
        path: output file.
        name: model name recorded in the metadata.
        threshold: calibrate the output so that the usual cut at probability 0.5 acts as a cut at
            ``threshold`` of the source model (found on training pages, e.g. with
            ``benchmarks/threshold_sweep.py``); every tool that thresholds at 0.5 then uses it.
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
    if name:
        meta["name"] = name
    return save_model(path, model, meta)

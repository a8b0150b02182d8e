"""ONNX export and an ONNX Runtime backend (extra ``ocrobin[onnx]``).

:func:`export_onnx` writes a model as an ONNX graph with dynamic batch, height and width and the model
file's metadata JSON in the graph's ``metadata_props`` (key ``ocrobin``), then runs the graph in ONNX
Runtime next to PyTorch and refuses to keep it when their ink probabilities differ by more than
:data:`TOLERANCE`, so a graph that silently specialised to the example's size never gets written.

``msfcn`` pads pages to a multiple of 32 inside the graph (the padding amounts are computed from the
input's shape), so any page size works. ``lstm2-seed`` normalises with each image's own BatchNorm
statistics; its graph computes them itself, and has three more inputs with defaults (``bn_mean``,
``bn_var``, ``bn_given``) through which a caller can hand in statistics measured over a whole page, as
:class:`OnnxBinarizer` does when it cuts a large page into tiles.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import models
from .exceptions import ModelError
from .imageio import atomic_path
from .infer import DEFAULT_OVERLAP, Binarizer, load
from .modelfile import ModelInfo

#: Key of the model's metadata JSON in the ONNX file's ``metadata_props``.
META_KEY = "ocrobin"
#: Opset written unless another is asked for, per exporter (``dynamo`` translates to 18 and up).
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
#: Largest accepted difference of ink probabilities between ONNX Runtime and PyTorch after export.
TOLERANCE = 1e-4
#: Exporters: ``torchscript`` (tracing; handles the LSTMs' dynamic lengths), ``dynamo`` (torch.export).
EXPORTERS = ("auto", "torchscript", "dynamo")
#: Names of the graph's inputs and output.
IMAGE, LOGITS = "image", "logits"
STATS_INPUTS = ("bn_mean", "bn_var", "bn_given")

# The example traced: height and width not multiples of 32 so msfcn's padding is traced as computed.
_EXAMPLE_SHAPE = (1, 1, 61, 83)
# Checked after export: another batch size and odd sizes, and a size that needs no padding.
_CHECK_SHAPES = ((2, 1, 45, 70), (1, 1, 64, 96))


class _PageStatsGraph(nn.Module):
    """lstm2-seed with BatchNorm statistics as optional graph inputs.

    With ``bn_given`` 0 (its default in the exported file) every image is normalised with its own
    statistics, exactly like :class:`ocrobin.models.Lstm2Seed` at inference; with 1, ``bn_mean`` and
    ``bn_var`` (one value per channel) are used instead, so tiles of one page can share the page's.
    """

    def __init__(self, model: models.Lstm2Seed) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, bn_mean: torch.Tensor, bn_var: torch.Tensor,
                bn_given: torch.Tensor) -> torch.Tensor:
        m = self.model
        f = m.features(image)
        mean = f.mean(dim=(2, 3), keepdim=True)
        var = ((f - mean) ** 2).mean(dim=(2, 3), keepdim=True)
        g = bn_given.reshape(1, 1, 1, 1)
        mean = mean + g * (bn_mean.reshape(1, -1, 1, 1) - mean)
        var = var + g * (bn_var.reshape(1, -1, 1, 1) - var)
        scale = m.bn.weight.reshape(1, -1, 1, 1) * torch.rsqrt(var + m.bn.eps)
        f = (f - mean) * scale + m.bn.bias.reshape(1, -1, 1, 1)
        return m.out(m.lstm(F.relu(f)))


def _needs_page_stats(model: nn.Module) -> bool:
    return isinstance(model, models.Lstm2Seed) and bool(model.per_image_bn)


def _stats_defaults(model: models.Lstm2Seed) -> dict[str, np.ndarray]:
    c = model.bn.num_features
    return {"bn_mean": np.zeros(c, np.float32), "bn_var": np.ones(c, np.float32),
            "bn_given": np.zeros(1, np.float32)}


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote."""

    path: str
    meta: dict[str, Any]
    opset: int
    exporter: str
    inputs: list[str]
    max_diff: float | None = None
    checked: list[tuple[int, ...]] = field(default_factory=list)


def _torchscript_available() -> bool:
    """Whether this torch still offers the tracing exporter (selected by ``dynamo=False``)."""
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def _export_graph(net: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], target: Path, opset: int,
                  exporter: str) -> None:
    """Write the ONNX graph of ``net`` to ``target`` with dynamic batch, height and width."""
    quiet = [logging.getLogger(n) for n in ("onnxscript", "torch.onnx")]
    levels = [q.level for q in quiet]
    try:
        with warnings.catch_warnings():
            # tracing warns about Python-side shape arithmetic and the LSTM's batch size, dynamo's opset
            # conversion logs tracebacks; the graph is checked on other sizes afterwards instead
            warnings.simplefilter("ignore")
            for q in quiet:
                q.setLevel(logging.CRITICAL)
            if exporter == "torchscript":
                axes = {0: "batch", 2: "height", 3: "width"}
                torch.onnx.export(net, args, str(target), input_names=names, output_names=[LOGITS],
                                  dynamic_axes={IMAGE: axes, LOGITS: axes}, opset_version=opset, dynamo=False,
                                  do_constant_folding=True)
            else:
                dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=1),
                        3: torch.export.Dim("width", min=1)}
                shapes = (dims,) + (None,) * (len(args) - 1)
                torch.onnx.export(net, args, str(target), input_names=names, output_names=[LOGITS],
                                  dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                                  external_data=False, verbose=False)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _finish(proto: Any, meta: dict[str, Any], defaults: dict[str, np.ndarray]) -> None:
    """Give the statistics inputs default values and store the metadata in the graph."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    have = {i.name for i in graph.initializer}
    for name, value in defaults.items():
        if name not in have:
            # an initializer named like a graph input is that input's default value
            graph.initializer.append(numpy_helper.from_array(value, name))
    del proto.metadata_props[:]
    helper.set_model_props(proto, {META_KEY: json.dumps(meta, sort_keys=True)})
    proto.doc_string = (f"ocrobin {meta.get('arch', '?')} binarizer: {meta.get('input', '')} -> "
                        f"{meta.get('output', '')}")


def _max_diff(session: Any, net: nn.Module, stats: bool) -> tuple[float, list[tuple[int, ...]]]:
    """Largest ink-probability difference between ONNX Runtime and PyTorch on a few page sizes."""
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    shapes: list[tuple[int, ...]] = []
    for shape in _CHECK_SHAPES:
        x = torch.rand(shape, generator=gen)
        with torch.inference_mode():
            ref = torch.sigmoid(net(x)).numpy()
        got = 1.0 / (1.0 + np.exp(-session.run([LOGITS], {IMAGE: x.numpy()})[0]))
        if got.shape != ref.shape:
            raise ModelError(f"exported graph gives shape {got.shape} for input {tuple(shape)}, "
                             f"expected {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
        shapes.append(tuple(shape))
        if stats:
            assert isinstance(net, models.Lstm2Seed)
            x1 = x[:1]
            mean = torch.rand(net.bn.num_features, generator=gen) - 0.5
            var = torch.rand(net.bn.num_features, generator=gen) + 0.1
            with torch.inference_mode():
                ref = torch.sigmoid(net(x1, bn_stats=(mean, var))).numpy()
            feed = {IMAGE: x1.numpy(), "bn_mean": mean.numpy(), "bn_var": var.numpy(),
                    "bn_given": np.ones(1, np.float32)}
            got = 1.0 / (1.0 + np.exp(-session.run([LOGITS], feed)[0]))
            worst = max(worst, float(np.abs(got - ref).max()))
    return worst, shapes


def _hint(exporter: str) -> str:
    if exporter != "dynamo":
        return ""
    return " (the torchscript exporter handles this model: --exporter torchscript)"


def export_onnx(model: Any, path: str | os.PathLike[str], *, opset: int | None = None, exporter: str = "auto",
                check: bool = True) -> ExportReport:
    """Export a model to ONNX with dynamic batch, height and width.

    Args:
        model: anything :func:`ocrobin.infer.load` takes (name, our file, legacy ``.pt``, ModelInfo).
        path: output ``.onnx`` file (written atomically).
        opset: ONNX opset version (None: :data:`DEFAULT_OPSET` of the exporter).
        exporter: ``auto`` (``torchscript`` where this torch has it, else ``dynamo``), ``torchscript``
            or ``dynamo``.
        check: run the graph in ONNX Runtime on other page sizes and compare with PyTorch.

    Returns:
        what was written, including the largest probability difference found by the check.

    Raises:
        ModelError: the model cannot be loaded or exported, or the exported graph differs from PyTorch
            by more than :data:`TOLERANCE`.
    """
    import onnx

    if exporter not in EXPORTERS:
        raise ModelError(f"unknown exporter {exporter!r}; known: {', '.join(EXPORTERS)}")
    if exporter == "auto":
        exporter = "torchscript" if _torchscript_available() else "dynamo"
    info = load(model)
    net = copy.deepcopy(info.model).cpu().eval()
    stats = _needs_page_stats(net)
    example = torch.rand(_EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(1))
    if stats:
        assert isinstance(net, models.Lstm2Seed)
        defaults = _stats_defaults(net)
        graph_net: nn.Module = _PageStatsGraph(net).eval()
        args = (example,) + tuple(torch.from_numpy(v) for v in defaults.values())
        names = [IMAGE, *STATS_INPUTS]
    else:
        defaults = {}
        graph_net, args, names = net, (example,), [IMAGE]
    opset = int(opset or DEFAULT_OPSET[exporter])
    meta = dict(info.meta)
    meta.setdefault("name", info.name)
    target = Path(path)
    with atomic_path(target) as tmp:
        try:
            _export_graph(graph_net, args, names, tmp, opset, exporter)
        except Exception as e:  # the exporters raise many unrelated types
            raise ModelError(f"{info.name}: ONNX export ({exporter}) failed: {type(e).__name__}: {e}") from e
        proto = onnx.load(str(tmp))
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
        meta["onnx"] = {"opset": opset, "exporter": exporter, "inputs": names, "output": LOGITS,
                        "page_stats_inputs": stats}
        _finish(proto, meta, defaults)
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            raise ModelError(f"{target}: exported graph is not valid ONNX: {e}") from e
        onnx.save(proto, str(tmp))
        report = ExportReport(str(target), meta, opset, exporter, names)
        if check:
            session = _session(tmp, threads=1, log_level=4)  # failures are reported below
            try:
                report.max_diff, report.checked = _max_diff(session, net, stats)
            except ModelError:
                raise
            except Exception as e:  # onnxruntime's own failure types
                first = str(e).splitlines()[0][:160]
                raise ModelError(f"{target}: exported graph fails on another page size ({type(e).__name__}: "
                                 f"{first}...){_hint(exporter)}; nothing written") from e
            if not report.max_diff <= TOLERANCE:
                raise ModelError(f"{target}: exported graph differs from the PyTorch model by "
                                 f"{report.max_diff:.2g} in ink probability (limit {TOLERANCE:g})"
                                 f"{_hint(exporter)}; nothing written")
    return report


def _session(path: str | os.PathLike[str], threads: int | None = None, log_level: int = 3) -> Any:
    """An ONNX Runtime session on the CPU (``log_level`` 3: errors only, 4: none)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = log_level  # (statistics inputs with defaults would log a warning each load)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types per failure
        raise ModelError(f"{path}: not a usable ONNX model ({type(e).__name__}: {e})") from e


def read_onnx_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ocrobin metadata stored in an exported ONNX file (empty for foreign files).

    Raises:
        ModelError: the file cannot be read or its metadata is corrupt.
    """
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common base
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__})") from e
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        return {}
    try:
        return json.loads(props[META_KEY])
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: corrupt ocrobin metadata in ONNX file ({e})") from e


def _stats_model(path: Path, meta: dict[str, Any]) -> nn.Module | None:
    """A torch Lstm2Seed holding the graph's first convolution, to measure page-wide BatchNorm statistics.

    Only ``features`` (the first convolution) of the returned module is used; everything else runs
    in ONNX Runtime. None when the graph's convolution weights cannot be found.
    """
    import onnx
    from onnx import numpy_helper

    try:
        model = models.build(meta["arch"], **meta.get("hparams", {}))
    except (KeyError, TypeError):
        return None
    if not _needs_page_stats(model):
        return None
    proto = onnx.load(str(path), load_external_data=False)
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer
               if i.name in ("conv.weight", "conv.bias", "model.conv.weight", "model.conv.bias")}
    conv = {k.removeprefix("model."): v for k, v in weights.items()}
    if set(conv) != {"conv.weight", "conv.bias"}:
        return None
    assert isinstance(model, models.Lstm2Seed)
    model.conv.load_state_dict({"weight": conv["conv.weight"], "bias": conv["conv.bias"]})
    return model.eval()


class OnnxBinarizer(Binarizer):
    """A :class:`ocrobin.infer.Binarizer` that runs an exported ``.onnx`` graph in ONNX Runtime (CPU).

    Normalisation, tiling, stitching and thresholding are the base class's; only the network runs in
    ONNX Runtime. For lstm2-seed, large pages are tiled with BatchNorm statistics measured over the
    whole page (as the PyTorch backend does) when the graph has the statistics inputs.

    Args:
        path: ``.onnx`` file written by :func:`export_onnx` (other single-input graphs mapping
            ``B×1×H×W`` grey pages to ink logits also work).
        threads: ONNX Runtime intra-op threads (None: its default, all cores).
        tile: tile side in pixels; None tiles automatically, 0 never tiles.
        overlap: context pixels on each side of a tile.

    Raises:
        ModelError: the file is missing or not a usable ONNX model.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, tile: int | None = None,
                 overlap: int = DEFAULT_OVERLAP) -> None:
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"{p}: no such ONNX model file")
        meta = read_onnx_meta(p)
        self.session = _session(p, threads)
        # inputs with a default value are listed as overridable initializers, not as inputs
        inputs = [i.name for i in self.session.get_inputs()]
        inputs += [i.name for i in self.session.get_overridable_initializers()]
        outputs = [o.name for o in self.session.get_outputs()]
        self._image = IMAGE if IMAGE in inputs else inputs[0]
        self._output = LOGITS if LOGITS in outputs else outputs[0]
        self._has_stats = all(n in inputs for n in STATS_INPUTS)
        extra = [n for n in inputs if n != self._image and not (self._has_stats and n in STATS_INPUTS)]
        if extra:
            raise ModelError(f"{p}: ONNX graph has inputs {', '.join(extra)} besides the page")
        stats_model = _stats_model(p, meta) if self._has_stats else None
        meta = dict(meta) or {"arch": "onnx"}
        meta.setdefault("name", p.stem)
        # ``model`` is only consulted for page-wide BatchNorm statistics (see _stats_model)
        self.model = stats_model if stats_model is not None else nn.Identity()
        self.info = ModelInfo(self.model, meta, str(p))
        self.device = torch.device("cpu")
        self.tile = tile
        self.overlap = overlap

    def _logits(self, x: torch.Tensor,
                bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        feed = {self._image: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        if bn_stats is not None and self._has_stats:
            mean, var = bn_stats
            feed["bn_mean"] = mean.detach().cpu().float().numpy()
            feed["bn_var"] = var.detach().cpu().float().numpy()
            feed["bn_given"] = np.ones(1, np.float32)
        return torch.from_numpy(self.session.run([self._output], feed)[0])

"""Binarizer: polarity, normalise a page, run the model (in overlapping tiles when large), stitch, threshold.

The original API is kept: ``Binarizer(model).binarize(image)`` returns the ink probability and
``binarize_batch`` does the same for a list. :meth:`Binarizer.run` is the bounded-memory path the batch
tools use: the page stays in its own 8- or 16-bit form, each tile is converted, normalised and run on its
own, and its result goes straight into a 1-bit buffer (and an 8-bit probability map when asked) together
with the page statistics (ink share, confidence); no float copy of the whole page exists.

Large pages are cut into overlapping tiles whose origins fall on the model's own grid (a multiple of 32
for ``msfcn``), so a tile sees its pixels exactly as the whole page would and only the missing context at
a tile's far edge can differ; each tile's margin is dropped. For ``lstm2-seed`` (per-image BatchNorm,
whole-row LSTMs) the BatchNorm statistics are measured on the whole page first and shared by all tiles.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import modelfile
from .exceptions import ModelError, UsageError
from .imageio import to_gray
from .models import PAGE_NORM_SAMPLE, Lstm2Seed, MultiScaleFCN, apply_page_norm, grid, page_norm_mapping
from .polarity import MODES, Polarity, detect, detect_bands

#: Pages above this many pixels are tiled automatically.
AUTO_TILE_PIXELS = 4_500_000
#: Tile side used when tiling is automatic.
DEFAULT_TILE = 2048
#: Context kept on each side of a tile and discarded after the run.
DEFAULT_OVERLAP = 128
#: Pages whose grey range is below this are blank: they give no ink.
BLANK_RANGE = 2.0 / 255.0
#: On a GPU pages are cut into tiles of this side, run this many at a time.
GPU_TILE = 1024
GPU_BATCH = 8
#: Precisions of the forward pass: ``bf16`` runs it under bfloat16 autocast (CPUs with AVX512-BF16 / AMX).
PRECISIONS = ("fp32", "bf16")
#: Confidence = clip(a − b × uncertainty), uncertainty = Σ (1 − |2p − 1|) / Σ p over the page: an estimate
#: of the page's FM / 100. A model file carries its own calibration in ``meta["confidence"]``
#: (``benchmarks/confidence.py --fit``; the default ``msfcn-v3`` does); this fallback was fitted for
#: ``msfcn-dibco`` on 136 DIBCO-style pages.
CONFIDENCE = {"a": 1.05, "b": 0.69}
#: Pages below this confidence are flagged ``low-confidence`` (a model file may carry its own).
LOW_CONFIDENCE = 0.8
#: Ink shares outside this range are flagged ``ink-fraction-unusual``.
USUAL_INK = (0.002, 0.35)


def load(spec: str | os.PathLike[str] | modelfile.ModelInfo | None = None) -> modelfile.ModelInfo:
    """Load a model from a name, one of our files, or a legacy ``.pt``.

    Args:
        spec: None or ``"default"`` (the packaged default), a packaged name such as ``"lstm2-seed"``,
            a ``.safetensors`` path, or a legacy ``.pt`` path.

    Raises:
        ModelError: unknown name, unreadable or unsafe file.
    """
    if isinstance(spec, modelfile.ModelInfo):
        return spec
    if spec is None:
        spec = "default"
    s = str(spec)
    p = Path(s)
    if p.suffix == ".onnx":
        raise ModelError(f"{s}: an ONNX model runs with the onnxruntime backend (--backend onnxruntime)")
    if p.suffix in (".pt", ".safetensors") or os.sep in s or p.is_file():
        if not p.is_file():
            raise ModelError(f"{s}: no such model file")
        if p.suffix == ".pt":
            from .legacy import import_legacy

            return import_legacy(p)
        return modelfile.load_model(p)
    info = modelfile.load_model(modelfile.packaged_path(s))
    info.meta.setdefault("name", s if s != "default" else modelfile.DEFAULT_MODEL)
    return info


def threshold(prob: np.ndarray, t: float = 0.5) -> np.ndarray:
    """Binary page from an ink probability map: True where ink (``prob > t``)."""
    return np.asarray(prob) > t


def tiles(size: int, tile: int, overlap: int, align: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """Split ``0..size`` into tiles: yields (read_start, read_end, keep_start, keep_end).

    Each tile reads ``overlap`` extra pixels of context on both sides where the page has them and keeps
    only its own core, so cores cover the page exactly once. With ``align``, cores start on multiples of
    it and so do reads (their context is rounded up to the grid), still within ``tile`` pixels.
    """
    core = tile - 2 * overlap
    core -= core % align
    if overlap % align:
        core -= align  # room to round each read start down to the grid
    core = max(align, core)
    for start in range(0, size, core):
        end = min(size, start + core)
        r0 = max(0, start - overlap)
        yield r0 - r0 % align, min(size, end + overlap), start, end


def data_scale(data: np.ndarray) -> float:
    """The value of white in a page array: 255 for uint8, 65535 for uint16, 1 otherwise."""
    if data.dtype == np.uint8:
        return 255.0
    if data.dtype == np.uint16:
        return 65535.0
    return 1.0


@dataclass
class PageResult:
    """What :meth:`Binarizer.run` gives for one page.

    Attributes:
        ink: the binary page packed 8 pixels to a byte along rows (``numpy.packbits``, 1 = ink), H × ⌈W/8⌉.
        width, height: page size in pixels.
        prob: 8-bit ink probability (floor(255 × p)), when asked.
        ink_pixels: number of ink pixels.
        uncertainty: Σ (1 − |2p − 1|) / Σ p over the page: how much of the ink is close to the cut.
        confidence: calibrated from ``uncertainty``, in [0, 1] (high = the result can be trusted).
        polarity: ``normal``, ``inverted`` or ``inverted-regions``.
        regions: number of light-on-dark regions binarized inverted.
        blank: the page is (nearly) constant and was not run through the model.
        seconds: time spent in :meth:`Binarizer.run`.
        low_confidence: the threshold under which ``confidence`` is flagged.
    """

    ink: np.ndarray
    width: int
    height: int
    prob: np.ndarray | None = None
    ink_pixels: int = 0
    uncertainty: float = 0.0
    confidence: float = 1.0
    polarity: str = "normal"
    regions: int = 0
    blank: bool = False
    seconds: float = 0.0
    low_confidence: float = LOW_CONFIDENCE

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def ink_fraction(self) -> float:
        return self.ink_pixels / self.pixels if self.pixels else 0.0

    def ink_mask(self) -> np.ndarray:
        """The binary page unpacked: bool H×W, True = ink (small pages, tests)."""
        return np.unpackbits(self.ink, axis=1, count=self.width).astype(bool)

    @property
    def flags(self) -> list[str]:
        """What a person may want to look at: ``blank``, ``inverted``, ``inverted-regions``, ``low-confidence``,
        ``ink-fraction-unusual``."""
        out = []
        if self.blank or self.ink_pixels == 0:
            out.append("blank")
        if self.polarity in ("inverted", "inverted-regions"):
            out.append(self.polarity)
        if not self.blank and self.ink_pixels and self.confidence < self.low_confidence:
            out.append("low-confidence")
        if not self.blank and self.ink_pixels and not USUAL_INK[0] <= self.ink_fraction <= USUAL_INK[1]:
            out.append("ink-fraction-unusual")
        return out


@dataclass
class _Stats:
    ink: int = 0
    prob_sum: float = 0.0
    uncertain: float = 0.0

    def add(self, p: torch.Tensor, ink: torch.Tensor) -> None:
        self.ink += int(ink.sum())
        self.prob_sum += float(p.sum(dtype=torch.float64))
        self.uncertain += float((1.0 - (2.0 * p - 1.0).abs()).sum(dtype=torch.float64))


@dataclass
class _Plan:
    """Everything decided once per page before the tiles run."""

    polarity: Polarity
    mapping: tuple[float, float] | None
    scale: float
    bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    band_mapping: tuple[float, float] | None = None


def plan_page(data: np.ndarray, pol: Polarity, page_norm: dict[str, Any] | None) -> _Plan:
    """Everything decided once for a page, given its polarity: the contrast normalisation, measured once on
    the whole (polarity-corrected) page and applied tile by tile; a page's bands get their own."""
    scale = data_scale(data)
    mapping = band_mapping = None
    if page_norm:
        step = max(1, int(math.sqrt(data.size / PAGE_NORM_SAMPLE)))
        sample = pol.invert_sample(data[::step, ::step].astype(np.float32) / np.float32(scale), step)
        inside = pol.band_sample(sample.shape, step) if pol.bands else None
        if inside is not None and inside.any() and not inside.all():
            mapping = page_norm_mapping(sample[~inside][None], page_norm)
            band_mapping = page_norm_mapping(sample[inside][None], page_norm)
        else:
            mapping = page_norm_mapping(sample, page_norm)
    return _Plan(pol, mapping, scale, band_mapping=band_mapping)


def prepare(plan: _Plan, a: np.ndarray, y0: int, x0: int, halo: tuple[int, int] = (0, 0),
            device: str | torch.device = "cpu") -> torch.Tensor:
    """An area of the page as the network sees it: float, polarity-corrected, normalised, 1×1×H×W.

    Args:
        plan: the page's :func:`plan_page`.
        a: the area, in the page's own dtype, at (``y0``, ``x0``) of the page.
        halo: (rows above, rows below) of ``a`` that only give the polarity's neighbourhood test its
            context; they are dropped from the result.
        device: where the result lives.
    """
    src = np.ascontiguousarray(a)
    if src.dtype == np.float32 or not src.flags.writeable:
        src = src.copy()  # the steps below work in place: never on the caller's page (or a read-only one)
    x = torch.from_numpy(src).to(device).float()
    if plan.scale != 1.0:
        x = x.div_(plan.scale)
    edge = plan.polarity.band_edge_mask(x, y0 - halo[0], x0) if plan.polarity.bands else None
    if plan.polarity.mode == "inverted":
        x = x.neg_().add_(1.0)
    else:
        m = plan.polarity.tile_mask(x, y0 - halo[0], x0)
        if m is not None:
            x = x.addcmul_(m, x.mul(-2.0).add_(1.0))
    x = x[halo[0]:x.shape[0] - halo[1]]
    edge = edge[halo[0]:edge.shape[0] - halo[1]] if edge is not None else None
    band = plan.polarity.band_mask(x.shape, y0, x0, x.device) if plan.band_mapping else None
    if band is not None and plan.mapping and plan.band_mapping:
        x = torch.where(band > 0, apply_page_norm(x, plan.band_mapping), apply_page_norm(x, plan.mapping))
    elif plan.mapping:
        x = apply_page_norm(x, plan.mapping)
    if edge is not None:
        x = x.masked_fill_(edge, 1.0)
    return x[None, None]


def model_view(gray: np.ndarray, page_norm: dict[str, Any] | None) -> np.ndarray:
    """A training page as the binarizer shows it to the model: its reverse-printed bands found, inverted and
    normalised apart from the rest (:func:`ocrobin.polarity.detect_bands`), the whole normalised.

    Why: a model trained on bands as they are printed meets them inverted, with a seam at their edge, at
    inference; shown the same view in training, it learns to read that. A page without a band gets exactly
    :func:`ocrobin.models.normalize_page`.

    Args:
        gray: the page, H×W, float32 in [0, 1] (0 = black).
        page_norm: the model's contrast normalisation (None: the bands are inverted, nothing normalised).

    Returns:
        A new float32 array in [0, 1].
    """
    return prepare(plan_page(gray, detect_bands(gray, data_scale(gray)), page_norm), gray, 0, 0)[0, 0].numpy()


def check_resize(factor: float) -> float:
    """A resize factor as a float.

    Raises:
        UsageError: it is not a finite positive number.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise UsageError(f"resize must be a positive factor, not {factor!r}")
    return float(factor)


def resized(data: np.ndarray, s: float) -> np.ndarray:
    """A page resized by ``s`` (Lanczos), in its own dtype and scale (:func:`data_scale`)."""
    h, w = data.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if data.dtype in (np.uint8, np.uint16):  # resampled in their own depth (Pillow's L and I;16): no float copy
        return np.asarray(Image.fromarray(np.ascontiguousarray(data)).resize(size, Image.LANCZOS))
    return np.asarray(Image.fromarray(np.asarray(data, np.float32), mode="F").resize(size, Image.LANCZOS))


def upsampled_rows(small: torch.Tensor, y0: int, y1: int, h: int, w: int) -> torch.Tensor:
    """Rows ``y0..y1`` of ``small`` (float, h'×w') brought to h×w by bilinear interpolation (pixel centres
    aligned, as ``F.interpolate(..., align_corners=False)``), computed for those rows alone."""

    def taps(n_out: int, n_in: int, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = ((torch.arange(a, b, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(0, n_in - 1)
        i0 = src.floor().long()
        return i0, (i0 + 1).clamp(max=n_in - 1), (src - i0).float()

    r0, r1, wy = taps(h, small.shape[0], y0, y1)
    rows = small[r0] * (1 - wy)[:, None] + small[r1] * wy[:, None]
    c0, c1, wx = taps(w, small.shape[1], 0, w)
    return rows[:, c0] * (1 - wx) + rows[:, c1] * wx


class Binarizer:
    """Turns grey pages into ink probabilities with one model.

    Args:
        model: see :func:`load`; also an already loaded :class:`ocrobin.modelfile.ModelInfo`.
        device: torch device (``"cpu"``, ``"cuda"``).
        tile: tile side in pixels; None tiles automatically above :data:`AUTO_TILE_PIXELS`, 0 never tiles.
        overlap: context pixels on each side of a tile.
        threads: torch CPU threads (None leaves torch's setting).
        polarity: ``auto`` (find light-on-dark pages and regions, see :mod:`ocrobin.polarity`), ``normal``
            (take the page as it is) or ``inverted`` (light text on a dark ground everywhere).
        tta: test-time augmentation: average the model over the page and its three flips (4× the time).
        precision: ``fp32`` or ``bf16`` (bfloat16 autocast for the forward pass, CPU or CUDA).
        batch_tiles: tiles run together in one batch (default 1 on the CPU; on a GPU :data:`GPU_BATCH`, and
            pages are tiled at :data:`GPU_TILE` unless ``tile`` is given).
        resize: the model sees the page resized by this factor, and its probabilities are brought back to the
            page's size (0.5 for scans at twice the resolution of the training pages, whose strokes it
            would otherwise read hollow; 1 = as it is).

    Raises:
        ModelError: the model cannot be loaded.
        UsageError: unknown polarity or precision, or a resize factor that is not positive.
    """

    #: defaults for subclasses that set up their own model (``ocrobin.onnx.OnnxBinarizer``)
    polarity = "auto"
    tta = False
    precision = "fp32"
    batch_tiles = 1
    resize = 1.0

    def __init__(self, model: Any = None, device: str = "cpu", tile: int | None = None,
                 overlap: int = DEFAULT_OVERLAP, threads: int | None = None, polarity: str = "auto",
                 tta: bool = False, precision: str = "fp32", batch_tiles: int | None = None,
                 resize: float = 1.0) -> None:
        if polarity not in MODES:
            raise UsageError(f"unknown polarity {polarity!r} (auto, normal or inverted)")
        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r} (fp32 or bf16)")
        self.resize = check_resize(resize)
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise UsageError(f"unknown device {device!r} ({e})") from e
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {device!r}: no CUDA device is available here (torch {torch.__version__})")
        self.info = load(model)
        self.model = self.info.model.to(self.device).eval()
        self.tile = tile
        self.overlap = overlap
        self.polarity = polarity
        self.tta = tta
        self.precision = precision
        self.batch_tiles = max(1, batch_tiles if batch_tiles is not None else (1 if self.device.type == "cpu" else
                                                                                 GPU_BATCH))
        if self.device.type != "cpu" and tile is None:
            self.tile = GPU_TILE  # every page in equal tiles, run in batches
        if threads:
            torch.set_num_threads(threads)

    @property
    def name(self) -> str:
        """The model's name."""
        return self.info.name

    @property
    def page_norm(self) -> dict[str, Any] | None:
        """The model's page contrast normalisation (its metadata's ``page_norm``), None where it has none."""
        return self.info.meta.get("page_norm") or None

    @property
    def align(self) -> int:
        """Tile origins fall on multiples of this: the model's own grid, and whole bytes of the 1-bit page."""
        multiple = getattr(self.model, "multiple", None) or grid(str(self.info.meta.get("arch", "")))
        return math.lcm(8, int(multiple))

    # --- the network ------------------------------------------------------------------------------

    def _logits(self, x: torch.Tensor | None, bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
                source: Callable[[int, int], torch.Tensor] | None = None,
                size: tuple[int, int] | None = None,
                emit: Callable[[int, int, int, torch.Tensor], None] | None = None,
                core: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """The network's logits: the one door every run of the model goes through.

        ``msfcn`` runs its lean inference (the same logits in a fraction of the memory), which can also take
        its input rows from ``source`` (with ``size``) instead of a tensor ``x``, hand its logits band by
        band of rows to ``emit`` (then an empty tensor is returned) and compute only a tile's ``core``.
        """
        if isinstance(self.model, MultiScaleFCN):
            out = self.model.infer(x, source=source, size=size, emit=emit, core=core)
            return out if out is not None else torch.empty(0)
        assert x is not None and emit is None and core is None
        if isinstance(self.model, Lstm2Seed):
            return self.model(x, bn_stats=bn_stats)
        return self.model(x)

    def _prob(self, x: torch.Tensor, bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Ink probability of a B×1×H×W batch (flip-averaged with ``tta``)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            if not self.tta:
                return torch.sigmoid_(self._logits(x, bn_stats).float())
            acc = None
            for dims in ((), (3,), (2,), (2, 3)):
                xi = torch.flip(x, dims) if dims else x
                p = torch.sigmoid(self._logits(xi, bn_stats).float())
                p = torch.flip(p, dims) if dims else p
                acc = p if acc is None else acc + p
            assert acc is not None
            return acc / 4.0

    # --- planning -----------------------------------------------------------------------------------

    def _tile_side(self, h: int, w: int) -> int:
        if self.tile is not None:
            return self.tile
        return DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0

    @torch.inference_mode()
    def _check(self, area: np.ndarray) -> tuple[float, float]:
        """(share of ink, uncertainty) the model gives a small grey area (float in [0, 1]), normalised on its own."""
        x = torch.from_numpy(np.ascontiguousarray(area, dtype=np.float32)).to(self.device)
        if self.page_norm:
            x = apply_page_norm(x, page_norm_mapping(area, self.page_norm))
        p = self._prob(x[None, None])[0, 0].float()
        unc = float((1.0 - (2.0 * p - 1.0).abs()).sum() / p.sum().clamp_min(1.0))
        return float((p > 0.5).float().mean()), unc

    def _plan(self, data: np.ndarray, polarity: str | None = None) -> _Plan:
        """The page's polarity (the model confirms what the statistics leave open) and :func:`plan_page`."""
        return plan_page(data, detect(data, data_scale(data), polarity or self.polarity, check=self._check),
                         self.page_norm)

    def _prepared(self, plan: _Plan, a: np.ndarray, y0: int, x0: int, halo: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """:func:`prepare` on this binarizer's device."""
        return prepare(plan, a, y0, x0, halo, self.device)

    def _rows(self, plan: _Plan, data: np.ndarray, y0: int, y1: int, x0: int, x1: int
              ) -> Callable[[int, int], torch.Tensor]:
        """Rows of a tile as the network sees them, made on demand (the tile never exists as floats)."""
        h = data.shape[0]
        ctx = 8 if plan.polarity.mode == "regions" else 0  # the edge test's 9-pixel window

        def rows(r0: int, r1: int) -> torch.Tensor:
            a, b = max(0, y0 + r0 - ctx), min(h, y0 + r1 + ctx)
            return self._prepared(plan, data[a:b, x0:x1], y0 + r0, x0, (y0 + r0 - a, b - (y0 + r1)))

        return rows

    def _page_bn_stats(self, data: np.ndarray, plan: _Plan, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (biased) variance of the first convolution over the whole page."""
        assert isinstance(self.model, Lstm2Seed)
        total = None
        total2 = None
        n = 0
        h, w = data.shape
        for y0, y1, ky0, ky1 in tiles(h, tile, 1):
            for x0, x1, kx0, kx1 in tiles(w, tile, 1):
                f = self.model.features(self._prepared(plan, data[y0:y1, x0:x1], y0, x0))
                f = f[0, :, ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0].double()
                s, s2 = f.sum((1, 2)), (f * f).sum((1, 2))
                total = s if total is None else total + s
                total2 = s2 if total2 is None else total2 + s2
                n += f.shape[1] * f.shape[2]
        assert total is not None and total2 is not None
        mean = total / n
        var = (total2 / n - mean * mean).clamp_min(0)
        return mean.float(), var.float()

    # --- the tile loop ------------------------------------------------------------------------------

    def _each_tile(self, data: np.ndarray, plan: _Plan,
                   sink: Callable[[int, int, int, int, torch.Tensor], None]) -> None:
        """Run the model over the page and hand every tile core's probability (float, H×W) to ``sink``."""
        h, w = data.shape
        side = self._tile_side(h, w)
        if not side or (h <= side and w <= side):
            rows, cols = [(0, h, 0, h)], [(0, w, 0, w)]
        else:
            if isinstance(self.model, Lstm2Seed):
                plan.bn_stats = self._page_bn_stats(data, plan, side)
            ov = min(self.overlap, side // 4)
            rows, cols = list(tiles(h, side, ov, self.align)), list(tiles(w, side, ov, self.align))
        if self.batch_tiles > 1 and len(rows) * len(cols) > 1:
            self._batched_tiles(data, plan, rows, cols, sink)
            return
        lean = isinstance(self.model, MultiScaleFCN) and not self.tta
        for y0, y1, ky0, ky1 in rows:
            for x0, x1, kx0, kx1 in cols:
                if lean:
                    self._lean_tile(plan, data, (y0, y1, ky0, ky1), (x0, x1, kx0, kx1), sink)
                else:
                    p = self._prob(self._prepared(plan, data[y0:y1, x0:x1], y0, x0), plan.bn_stats)[0, 0]
                    sink(ky0, ky1, kx0, kx1, p[ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0])

    def _lean_tile(self, plan: _Plan, data: np.ndarray, row: tuple[int, int, int, int],
                   col: tuple[int, int, int, int], sink: Callable[[int, int, int, int, torch.Tensor], None]) -> None:
        """One tile through ``msfcn``'s lean inference, its core handed to ``sink`` band by band of rows as
        the network finishes them (the tile's logits never exist whole: 4 bytes per pixel less); the
        overlap only gives the core its context, so the decoder's last block and the head skip it."""
        y0, y1, ky0, ky1 = row
        x0, x1, kx0, kx1 = col

        def emit(r0: int, r1: int, c0: int, logits: torch.Tensor) -> None:
            a, b = max(y0 + r0, ky0), min(y0 + r1, ky1)
            if a < b:
                c = kx0 - x0 - c0
                p = torch.sigmoid_(logits[0, 0, a - y0 - r0:b - y0 - r0, c:c + kx1 - kx0].float())
                sink(a, b, kx0, kx1, p)

        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            self._logits(None, source=self._rows(plan, data, y0, y1, x0, x1), size=(y1 - y0, x1 - x0), emit=emit,
                         core=(ky0 - y0, ky1 - y0, kx0 - x0, kx1 - x0))

    def _batched_tiles(self, data: np.ndarray, plan: _Plan, rows: list[tuple[int, int, int, int]],
                       cols: list[tuple[int, int, int, int]],
                       sink: Callable[[int, int, int, int, torch.Tensor], None]) -> None:
        """Run the tiles :data:`batch_tiles` at a time (on a GPU one batch is far faster than its tiles one by
        one). Tiles at the page's edges are padded (replicated) to the size of the largest, so all stack."""
        th = max(y1 - y0 for y0, y1, _, _ in rows)
        tw = max(x1 - x0 for x0, x1, _, _ in cols)
        todo = [(r, c) for r in rows for c in cols]
        for i in range(0, len(todo), self.batch_tiles):
            part = todo[i:i + self.batch_tiles]
            xs = []
            for (y0, y1, _, _), (x0, x1, _, _) in part:
                x = self._prepared(plan, data[y0:y1, x0:x1], y0, x0)
                xs.append(torch.nn.functional.pad(x, (0, tw - (x1 - x0), 0, th - (y1 - y0)), mode="replicate"))
            p = self._prob(torch.cat(xs), plan.bn_stats)
            for k, ((y0, _, ky0, ky1), (x0, _, kx0, kx1)) in enumerate(part):
                sink(ky0, ky1, kx0, kx1, p[k, 0, ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0])

    @staticmethod
    def _as_page(image: Image.Image | np.ndarray) -> np.ndarray:
        if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype in (np.uint8, np.uint16):
            return np.ascontiguousarray(image)
        return np.ascontiguousarray(to_gray(image), dtype=np.float32)

    @staticmethod
    def _blank(data: np.ndarray) -> bool:
        return data.size == 0 or float(data.max()) - float(data.min()) < BLANK_RANGE * data_scale(data)

    @torch.inference_mode()
    def binarize(self, image: Image.Image | np.ndarray, polarity: str | None = None) -> np.ndarray:
        """Ink probability of one page.

        Args:
            image: PIL image or numpy array (2-D float in 0..1, uint8 or uint16; H×W×3 is averaged).
            polarity: overrides the binarizer's polarity for this page.

        Returns:
            float32 H×W array in [0, 1], high where ink.
        """
        data = self._as_page(image)
        h, w = data.shape
        if self.resize != 1.0 and not self._blank(data):
            small = torch.from_numpy(self._probabilities(resized(data, self.resize), polarity))
            return upsampled_rows(small, 0, h, h, w).numpy()
        return self._probabilities(data, polarity)

    def _probabilities(self, data: np.ndarray, polarity: str | None) -> np.ndarray:
        """:meth:`binarize` of a page as the model sees it (already resized)."""
        h, w = data.shape
        out = np.zeros((h, w), np.float32)
        if self._blank(data):
            return out

        def keep(y0: int, y1: int, x0: int, x1: int, p: torch.Tensor) -> None:
            out[y0:y1, x0:x1] = p.float().cpu().numpy()

        self._each_tile(data, self._plan(data, polarity), keep)
        return out

    @torch.inference_mode()
    def run(self, image: Image.Image | np.ndarray, t: float = 0.5, prob: bool = False,
            polarity: str | None = None, resize: float | None = None) -> PageResult:
        """Binarize one page into a 1-bit buffer (and an 8-bit probability map), tile by tile.

        Memory: the page as given (keep it 8-bit: 1 byte per pixel), 1 bit per pixel for the result, 1 byte
        per pixel more with ``prob``, and one tile's worth of float work.

        Args:
            image: the page; an H×W uint8 or uint16 array is used as it is (no float copy).
            t: ink where the probability is above ``t``.
            prob: also keep floor(255 × p) as uint8.
            polarity: overrides the binarizer's polarity for this page.
            resize: overrides the binarizer's resize factor for this page.

        Returns:
            the :class:`PageResult`.

        Raises:
            UsageError: a resize factor that is not positive.
        """
        factor = self.resize if resize is None else check_resize(resize)
        return self._run(self._as_page(image), t, prob, polarity, factor)

    def _run(self, data: np.ndarray, t: float, prob: bool, polarity: str | None, resize: float) -> PageResult:
        """:meth:`run` of a page, the model seeing it resized by ``resize``."""
        t0 = time.perf_counter()
        h, w = data.shape
        packed = np.zeros((h, (w + 7) // 8), np.uint8)
        pmap = np.zeros((h, w), np.uint8) if prob else None
        meta = self.info.meta.get("confidence") or CONFIDENCE
        low = float(self.info.meta.get("low_confidence", LOW_CONFIDENCE))
        if self._blank(data):
            return PageResult(packed, w, h, pmap, blank=True, seconds=time.perf_counter() - t0, low_confidence=low)
        if resize != 1.0:  # the model runs on the resized page; its probabilities come back row by row
            small = self._run(resized(data, resize), t, True, polarity, 1.0)
            probs = torch.from_numpy(small.prob if small.prob is not None else np.zeros((1, 1), np.uint8))
            probs = (probs.float() + 0.5) / 255.0  # the 8-bit map holds floor(255 p)
            plan_polarity, regions = small.polarity, small.regions
        stats = _Stats()

        def keep(y0: int, y1: int, x0: int, x1: int, p: torch.Tensor) -> None:
            for r in range(0, y1 - y0, 256):  # a few rows at a time: small temporaries whatever the tile
                q = p[r:r + 256].float()
                ink = q > t
                stats.add(q, ink)
                bits = np.packbits(ink.cpu().numpy(), axis=1)
                packed[y0 + r:y0 + r + q.shape[0], x0 // 8:x0 // 8 + bits.shape[1]] = bits  # cores start on bytes
                if pmap is not None:
                    pmap[y0 + r:y0 + r + q.shape[0], x0:x1] = (
                        torch.floor(q.clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy())

        if resize != 1.0:
            for y0 in range(0, h, 256):
                keep(y0, min(h, y0 + 256), 0, w, upsampled_rows(probs, y0, min(h, y0 + 256), h, w))
        else:
            plan = self._plan(data, polarity)
            self._each_tile(data, plan, keep)
            plan_polarity, regions = plan.polarity.decision, plan.polarity.regions
        unc = stats.uncertain / max(stats.prob_sum, 1.0)
        conf = float(np.clip(meta["a"] - meta["b"] * unc, 0.0, 1.0))
        return PageResult(packed, w, h, pmap, stats.ink, unc, conf, plan_polarity, regions,
                          seconds=time.perf_counter() - t0, low_confidence=low)

    def binarize_batch(self, images: Iterable[Image.Image | np.ndarray]) -> list[np.ndarray]:
        """Ink probabilities of several pages (each normalised on its own)."""
        return [self.binarize(im) for im in images]

    def binarize_binary(self, image: Image.Image | np.ndarray, t: float = 0.5) -> np.ndarray:
        """Boolean ink mask of one page (True = ink)."""
        return threshold(self.binarize(image), t)

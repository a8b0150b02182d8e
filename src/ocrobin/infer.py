"""Binarizer: normalise a page, run the model (in overlapping tiles when large), stitch, threshold.

The original API is kept: ``Binarizer(model).binarize(image)`` returns the ink probability and
``binarize_batch`` does the same for a list. Large pages are cut into overlapping tiles so memory stays
bounded; each tile's margin is dropped, so a fully convolutional model gives the untiled result up to
its receptive field. For ``lstm2-seed`` (per-image BatchNorm, whole-row LSTMs) the BatchNorm statistics
are measured on the whole page first and shared by all tiles, so only the LSTMs' reach is cut.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import modelfile
from .exceptions import ModelError
from .imageio import to_gray
from .models import Lstm2Seed, apply_page_norm, page_norm_mapping

#: Pages above this many pixels are tiled automatically.
AUTO_TILE_PIXELS = 6_000_000
#: Tile side used when tiling is automatic.
DEFAULT_TILE = 2048
#: Context kept on each side of a tile and discarded after the run.
DEFAULT_OVERLAP = 128
#: Pages whose grey range is below this are blank: they give no ink.
BLANK_RANGE = 2.0 / 255.0


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


def tiles(size: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Split ``0..size`` into tiles: yields (read_start, read_end, keep_start, keep_end).

    Each tile reads ``overlap`` extra pixels of context on both sides where the page has them and keeps
    only its own core, so cores cover the page exactly once.
    """
    core = max(1, tile - 2 * overlap)
    for start in range(0, size, core):
        end = min(size, start + core)
        yield max(0, start - overlap), min(size, end + overlap), start, end


class Binarizer:
    """Turns grey pages into ink probabilities with one model.

    Args:
        model: see :func:`load`; also an already loaded :class:`ocrobin.modelfile.ModelInfo`.
        device: torch device (``"cpu"``, ``"cuda"``).
        tile: tile side in pixels; None tiles automatically above :data:`AUTO_TILE_PIXELS`, 0 never tiles.
        overlap: context pixels on each side of a tile.
        threads: torch CPU threads (None leaves torch's setting).
    """

    def __init__(self, model: Any = None, device: str = "cpu", tile: int | None = None,
                 overlap: int = DEFAULT_OVERLAP, threads: int | None = None) -> None:
        self.info = load(model)
        self.model = self.info.model.to(device).eval()
        self.device = torch.device(device)
        self.tile = tile
        self.overlap = overlap
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

    def _logits(self, x: torch.Tensor, bn_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if isinstance(self.model, Lstm2Seed):
            return self.model(x, bn_stats=bn_stats)
        return self.model(x)

    def _page_bn_stats(self, gray: np.ndarray, tile: int,
                       prepared: Callable[[np.ndarray], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (biased) variance of the first convolution over the whole page."""
        assert isinstance(self.model, Lstm2Seed)
        total = None
        total2 = None
        n = 0
        h, w = gray.shape
        for y0, y1, ky0, ky1 in tiles(h, tile, 1):
            for x0, x1, kx0, kx1 in tiles(w, tile, 1):
                f = self.model.features(prepared(gray[y0:y1, x0:x1]))
                f = f[0, :, ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0].double()
                s, s2 = f.sum((1, 2)), (f * f).sum((1, 2))
                total = s if total is None else total + s
                total2 = s2 if total2 is None else total2 + s2
                n += f.shape[1] * f.shape[2]
        assert total is not None and total2 is not None
        mean = total / n
        var = (total2 / n - mean * mean).clamp_min(0)
        return mean.float(), var.float()

    def _tile_side(self, gray: np.ndarray) -> int:
        if self.tile is not None:
            return self.tile
        return DEFAULT_TILE if gray.size > AUTO_TILE_PIXELS else 0

    @torch.inference_mode()
    def binarize(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """Ink probability of one page.

        Args:
            image: PIL image or numpy array (2-D float in 0..1 or uint8; H×W×3 is averaged).

        Returns:
            float32 H×W array in [0, 1], high where ink.
        """
        gray = np.ascontiguousarray(to_gray(image), dtype=np.float32)
        h, w = gray.shape
        if gray.size == 0 or float(gray.max() - gray.min()) < BLANK_RANGE:
            return np.zeros((h, w), np.float32)
        mapping = page_norm_mapping(gray, self.page_norm) if self.page_norm else None

        def prepared(a: np.ndarray) -> torch.Tensor:
            # the page's normalisation, applied tile by tile: no normalised copy of a huge page
            x = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
            return (apply_page_norm(x, mapping) if mapping else x)[None, None]

        side = self._tile_side(gray)
        if not side or (h <= side and w <= side):
            x = prepared(gray)
            return torch.sigmoid(self._logits(x)).float().cpu().numpy()[0, 0]
        stats = self._page_bn_stats(gray, side, prepared) if isinstance(self.model, Lstm2Seed) else None
        out = np.empty((h, w), np.float32)
        ov = min(self.overlap, side // 4)
        for y0, y1, ky0, ky1 in tiles(h, side, ov):
            for x0, x1, kx0, kx1 in tiles(w, side, ov):
                p = torch.sigmoid(self._logits(prepared(gray[y0:y1, x0:x1]), stats)).float().cpu().numpy()[0, 0]
                out[ky0:ky1, kx0:kx1] = p[ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
        return out

    def binarize_batch(self, images: Iterable[Image.Image | np.ndarray]) -> list[np.ndarray]:
        """Ink probabilities of several pages (each normalised on its own)."""
        return [self.binarize(im) for im in images]

    def binarize_binary(self, image: Image.Image | np.ndarray, t: float = 0.5) -> np.ndarray:
        """Boolean ink mask of one page (True = ink)."""
        return threshold(self.binarize(image), t)

"""Where clean pages come from (rendered, clean image files, real ground truth), and one pair from scratch."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..datasets import find_pairs
from ..exceptions import DataError
from ..imageio import IMAGE_SUFFIXES, read_gray, read_ground_truth
from ..render import render_page
from .pipeline import degrade, draw_params
from .registry import round_params


@functools.lru_cache(maxsize=8)
def _load_coverage(path: str, kind: str) -> np.ndarray:
    """uint8 ink coverage (255 = ink) of a clean page or a ground-truth file (cached: files are reused)."""
    if kind == "pairs":
        return read_ground_truth(path).astype(np.uint8) * np.uint8(255)
    return np.round((1.0 - read_gray(path)) * 255.0).astype(np.uint8)


def _crop(
    a: np.ndarray, rng: np.random.Generator, shape: tuple[int, int], scale: float
) -> tuple[np.ndarray, list[int]]:
    """A random window of ``shape`` seen at ``scale`` (source window = shape / scale, clipped to the page)."""
    H, W = a.shape
    sh = min(H, max(1, int(round(shape[0] / scale))))
    sw = min(W, max(1, int(round(shape[1] / scale))))
    y0 = int(rng.integers(0, H - sh + 1))
    x0 = int(rng.integers(0, W - sw + 1))
    win = a[y0 : y0 + sh, x0 : x0 + sw]
    oh, ow = max(1, int(round(sh * scale))), max(1, int(round(sw * scale)))
    cov = win.astype(np.float32) / 255.0
    if (oh, ow) != (sh, sw):
        cov = np.asarray(Image.fromarray(cov).resize((ow, oh), Image.Resampling.BILINEAR), np.float32)
    return cov, [y0, x0, sh, sw]


@dataclass
class PageSource:
    """Where clean pages come from: rendered, clean image files, or the ground truth of real pairs.

    Args:
        clean: clean page files (ink dark).
        pairs: ground-truth files of real pairs (text = 0).
        render_fraction: probability that a page is rendered; None = 1 without files, 0 with files.
    """

    clean: Sequence[str] = ()
    pairs: Sequence[str] = ()
    render_fraction: float | None = None

    def _files(self) -> list[tuple[str, str]]:
        return [(p, "clean") for p in self.clean] + [(p, "pairs") for p in self.pairs]

    def page(self, rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        """One clean page of about ``shape`` (file pages may be smaller), with a description for the JSON."""
        files = self._files()
        frac = self.render_fraction if self.render_fraction is not None else (0.0 if files else 1.0)
        if not files or rng.random() < frac:
            info: dict[str, Any] = {"kind": "render"}
            return render_page(rng, shape, info=info), info
        path, kind = files[int(rng.integers(len(files)))]
        scale = float(math.exp(rng.uniform(math.log(0.7), math.log(1.4)))) if rng.random() < 0.5 else 1.0
        cov, crop = _crop(_load_coverage(path, kind), rng, shape, scale)
        return cov, {"kind": kind, "file": path, "crop": crop, "scale": round(scale, 4)}

    def verso(self, rng: np.random.Generator, shape: tuple[int, int], info: dict[str, Any]) -> np.ndarray:
        """The back of the sheet, for bleed-through: a page of the same kind."""
        files = self._files()
        if info.get("kind") == "render" or not files:
            h, w = shape
            return render_page(
                rng,
                (max(1, h // 2), max(1, w // 2)),
                kind=info.get("layout"),
                xheight=info.get("xheight", 12.0) / 2,
            )
        path, kind = files[int(rng.integers(len(files)))]
        return _crop(_load_coverage(path, kind), rng, shape, 1.0)[0]


#: Effects that show the other side of the sheet (they need a verso page).
VERSO_EFFECTS = ("bleed", "bleed_sharp")


def make_pair(
    rng: np.random.Generator,
    size: tuple[int, int],
    preset: str = "default",
    rgb: bool = False,
    source: PageSource | None = None,
    disable: Iterable[str] = (),
    force: Iterable[str] = (),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Make one training pair from scratch.

    Args:
        rng: the page's random generator (everything about the pair follows from it).
        size: requested (height, width); pages cut from files may be smaller.
        preset: degradation preset (see :data:`ocrobin.degrade.PRESETS`).
        rgb: colour image instead of grey.
        source: where the clean page comes from (default: rendered).
        disable: effects to leave out.
        force: effects always on.

    Returns:
        (image uint8, ink bool, parameters with a ``source`` entry).
    """
    source = source or PageSource()
    clean, info = source.page(rng, size)
    params = draw_params(rng, clean.shape, preset, rgb=rgb, disable=disable, force=force)
    needs_verso = any(name in params["effects"] for name in VERSO_EFFECTS)
    verso = source.verso(rng, clean.shape, info) if needs_verso else None
    img, ink, params = degrade(clean, rng, params, rgb=rgb, verso=verso)
    params["source"] = round_params(info)
    return img, ink, params


# --- DIBCO-style folders ------------------------------------------------------------------------------------


def list_clean(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under ``folder`` (recursively, sorted).

    Raises:
        DataError: not a directory, or no images in it.
    """
    d = Path(folder)
    if not d.is_dir():
        raise DataError(f"{d}: no such directory")
    files = sorted(
        str(p)
        for p in d.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{d}: no images found")
    return files


def list_pair_truths(folder: str | os.PathLike[str]) -> list[str]:
    """Ground-truth files of the DIBCO-style sets under ``folder``.

    Raises:
        DataError: not a directory, or no ground truth found.
    """
    files = [str(p.gt) for p in find_pairs(folder) if p.gt is not None]
    if not files:
        raise DataError(f"{folder}: no DIBCO-style sets (SET/img + SET/gt) found")
    return files

"""Many pages, in parallel and reproducibly: page seeds, shard samples, worker processes, previews."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .sources import PageSource, make_pair


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the pages of a run (with the page index).

    Attributes:
        seed: run seed; page ``i`` uses :func:`page_seed` (seed, i).
        size: (min, max) page side in pixels; height and width are drawn separately.
        preset: degradation preset.
        rgb: colour images.
        clean: clean page files; pairs: ground-truth files of real pairs.
        render_fraction: share of rendered pages when files are given (None: 1 without files, 0 with).
        disable: effects left out.
        force: effects always on.
    """

    seed: int = 0
    size: tuple[int, int] = (512, 1536)
    preset: str = "default"
    rgb: bool = False
    clean: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    render_fraction: float | None = None
    disable: tuple[str, ...] = ()
    force: tuple[str, ...] = ()


@dataclass
class Sample:
    """One generated pair, encoded for a shard (``record``) and optionally as arrays (for previews)."""

    index: int
    record: dict[str, Any]
    pixels: int
    arrays: tuple[np.ndarray, np.ndarray] | None = None


def page_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of page ``index`` of a run: independent of the order or the worker that makes it."""
    return np.random.SeedSequence([int(seed), int(index)])


def sample_key(seed: int, index: int) -> str:
    """Shard key of page ``index`` of run ``seed`` (no dots: webdataset splits keys at the first dot)."""
    return f"synth-s{seed}-{index:08d}"


def make_sample(
    cfg: SynthConfig, index: int, keep_arrays: bool = False, source: PageSource | None = None
) -> Sample:
    """Make page ``index`` of the run described by ``cfg``: the same bytes whichever process makes it."""
    from ..imageio import encode_png

    rng = np.random.default_rng(page_seed(cfg.seed, index))
    lo, hi = cfg.size
    size = (int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)))
    if source is None:
        source = PageSource(cfg.clean, cfg.pairs, cfg.render_fraction)
    img, ink, params = make_pair(rng, size, cfg.preset, cfg.rgb, source, cfg.disable, cfg.force)
    meta = {"seed": cfg.seed, "index": index, "size": list(ink.shape), **params}
    record = {
        "__key__": sample_key(cfg.seed, index),
        "gray.png": encode_png(img),
        "bin.png": encode_png(np.where(ink, 0, 255).astype(np.uint8)),
        "json": json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(),
    }
    return Sample(index, record, int(ink.size), (img, ink) if keep_arrays else None)


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: SynthConfig, keep: int) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["keep"] = keep
    _WORKER["source"] = PageSource(cfg.clean, cfg.pairs, cfg.render_fraction)


def _worker_run(index: int) -> Sample:
    return make_sample(_WORKER["cfg"], index, index < _WORKER["keep"], _WORKER["source"])


def generate(cfg: SynthConfig, count: int, workers: int = 1, keep_arrays: int = 0) -> Iterator[Sample]:
    """Yield pages 0 .. count-1 of a run, in order, made by ``workers`` processes.

    Args:
        cfg: the run.
        count: number of pages.
        workers: processes (1 = in this process).
        keep_arrays: also return the arrays of the first this many pages (for a preview).
    """
    from ..render import font_paths

    font_paths()  # scan fonts once, before forking, so that workers inherit the list
    if workers <= 1:
        _worker_init(cfg, keep_arrays)
        for i in range(count):
            yield _worker_run(i)
        return
    import multiprocessing

    with multiprocessing.Pool(workers, initializer=_worker_init, initargs=(cfg, keep_arrays)) as pool:
        yield from pool.imap(_worker_run, range(count), chunksize=1)


def contact_sheet(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], columns: int = 4, tile: int = 256
) -> Image.Image:
    """A grid of samples, each a ``tile``-pixel crop of the image above the same crop of its ground truth.

    Crops are taken at full resolution (from the page centre) so that a person judges the pixels the
    model will see, not a reduced page.
    """
    n = len(pairs)
    rows = max(1, math.ceil(n / columns))
    gap = 6
    cw, ch = tile + gap, 2 * tile + gap + 2
    sheet = Image.new("RGB", (columns * cw + gap, rows * ch + gap), (90, 90, 90))
    for i, (img, ink) in enumerate(pairs):
        h, w = ink.shape
        th, tw = min(tile, h), min(tile, w)
        y0, x0 = (h - th) // 2, (w - tw) // 2
        im = Image.fromarray(np.ascontiguousarray(img[y0 : y0 + th, x0 : x0 + tw])).convert("RGB")
        gt = Image.fromarray(np.where(ink[y0 : y0 + th, x0 : x0 + tw], 0, 255).astype(np.uint8)).convert("RGB")
        r, c = divmod(i, columns)
        x, y = gap + c * cw, gap + r * ch
        sheet.paste(im, (x, y))
        sheet.paste(gt, (x, y + tile + 2))
    return sheet

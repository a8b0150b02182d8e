"""Page polarity: find light-on-dark pages and light-on-dark regions, so the model always sees dark text.

The model was trained on dark ink on lighter paper; a negative (microfilm, a photographic negative) or a
reverse-printed band (a heading in a black bar, a dark caption box) comes out as a solid block of ink.
:func:`detect` looks at the page once, cheaply, on a grid of blocks of a few pixels:

* the grey level between dark and light is Otsu's threshold of a subsample of the page;
* a block is *dark ground* when most of its pixels are below that level (text strokes are thin, so on a
  normal page hardly any block is mostly ink);
* a page is *inverted* when most of it is dark ground with a minority of light pixels in it;
* otherwise every large, compact area of dark-ground blocks that holds light strokes (a few to ~45 % of its
  pixels) is an *inverted region*. Solid dark areas without light strokes (scan borders, binding shadows,
  photographs in the dark) stay as they are: their light share is below the minimum.

The decision is a :class:`Polarity`, which gives, tile by tile, how much to invert each pixel
(:meth:`Polarity.tile_mask`): 1 in the inside of a region, and near its edges only the pixels whose
neighbourhood is dark, so the edge of a band does not turn into a line of ink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Polarity modes the API and the command line accept.
MODES = ("auto", "normal", "inverted")
#: Pixels of the subsample used to find the dark/light threshold.
SAMPLE = 250_000
#: A block is dark ground when less than this share of its pixels is light.
DARK_BLOCK = 0.5
#: An inverted page: at least this share of its blocks is dark ground ...
PAGE_DARK = 0.6
#: ... and the light share inside dark ground lies in this range (light text on a dark page).
LIGHT_SHARE = (0.02, 0.45)
#: An inverted region: at least this many blocks (and this share of the page), this many blocks high and
#: wide, and filling this share of its bounding box.
REGION_BLOCKS = 96
REGION_SHARE = 0.002
REGION_SIDE = 6
REGION_FILL = 0.6
#: Share of a region's blocks that must hold some light pixels (light strokes spread over the region).
REGION_SPREAD = 0.2


def block_size(height: int, width: int) -> int:
    """Side of the analysis blocks: 8 pixels, larger on very large pages to keep the grid small."""
    return 8 if height * width <= 40_000_000 else 16


def otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins): the level that best splits them in two classes."""
    hist = np.bincount(np.clip((values * 255.0).astype(np.int64), 0, 255).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return (float(np.argmax(between)) + 0.5) / 255.0


def subsample(data: np.ndarray, count: int = SAMPLE) -> np.ndarray:
    """An even subsample of about ``count`` pixels of a page (a view, no copy of the page)."""
    step = max(1, int(math.sqrt(data.size / count)))
    return data[::step, ::step]


@dataclass
class Polarity:
    """What to invert on a page.

    Attributes:
        mode: ``normal`` (nothing), ``inverted`` (the whole page) or ``regions``.
        threshold: grey level in [0, 1] between dark ground and light strokes.
        block: block side in pixels of ``inside`` and ``edge``.
        inside: blocks inverted entirely (``regions`` only).
        edge: blocks at the regions' edges where only pixels with a dark neighbourhood are inverted.
        regions: number of inverted regions found.
    """

    mode: str = "normal"
    threshold: float = 0.5
    block: int = 8
    inside: np.ndarray | None = None
    edge: np.ndarray | None = None
    regions: int = 0

    @property
    def decision(self) -> str:
        """``normal``, ``inverted`` or ``inverted-regions`` (what a run report says)."""
        return "inverted-regions" if self.mode == "regions" else self.mode

    def tile_mask(self, x: torch.Tensor, y0: int, x0: int) -> torch.Tensor | None:
        """How much to invert each pixel of a tile (0 or 1), or None when nothing in it is inverted.

        Args:
            x: the tile, float in [0, 1], shape H×W.
            y0, x0: the tile's position on the page.
        """
        if self.mode == "normal":
            return None
        if self.mode == "inverted":
            return torch.ones_like(x)
        assert self.inside is not None and self.edge is not None
        b = self.block
        h, w = x.shape
        by0, bx0 = y0 // b, x0 // b
        by1, bx1 = (y0 + h - 1) // b + 1, (x0 + w - 1) // b + 1
        inside = self.inside[by0:by1, bx0:bx1]
        edge = self.edge[by0:by1, bx0:bx1]
        if not inside.any() and not edge.any():
            return None

        def up(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(a.astype(np.float32)).repeat_interleave(b, 0).repeat_interleave(b, 1)
            oy, ox = y0 - by0 * b, x0 - bx0 * b
            return t[oy:oy + h, ox:ox + w].to(x.device)

        m = up(inside)
        if edge.any():
            local = F.avg_pool2d(x[None, None], 5, stride=1, padding=2, count_include_pad=False)[0, 0]
            m = torch.maximum(m, up(edge) * (local < self.threshold).float())
        return m

    def invert_sample(self, sample: np.ndarray, step: int) -> np.ndarray:
        """Apply the decision to a subsample (every ``step``-th pixel, float in [0, 1]), for page statistics."""
        if self.mode == "normal":
            return sample
        if self.mode == "inverted":
            return 1.0 - sample
        assert self.inside is not None and self.edge is not None
        ys = (np.arange(sample.shape[0]) * step) // self.block
        xs = (np.arange(sample.shape[1]) * step) // self.block
        ys, xs = np.minimum(ys, self.inside.shape[0] - 1), np.minimum(xs, self.inside.shape[1] - 1)
        m = self.inside[np.ix_(ys, xs)] | (self.edge[np.ix_(ys, xs)] & (sample < self.threshold))
        return np.where(m, 1.0 - sample, sample)


def light_share(data: np.ndarray, scale: float, level: float, block: int) -> np.ndarray:
    """Share of light pixels (above ``level``) in each block, computed strip by strip (no page-size copy)."""
    h, w = data.shape
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    out = np.empty((gh, gw), np.float32)
    cut = level * scale
    rows = block * max(1, 4096 // block)
    for r0 in range(0, h, rows):
        strip = data[r0:r0 + rows] > cut
        sh = strip.shape[0]
        ph, pw = (-sh) % block, (-w) % block
        if ph or pw:
            strip = np.pad(strip, ((0, ph), (0, pw)), mode="edge")
        g = strip.reshape(strip.shape[0] // block, block, -1, block).mean(axis=(1, 3), dtype=np.float32)
        out[r0 // block:r0 // block + g.shape[0]] = g
    return out


def detect(data: np.ndarray, scale: float = 255.0, mode: str = "auto") -> Polarity:
    """Decide what of a page to invert.

    Args:
        data: the page, H×W grey (0 = black), any numeric dtype.
        scale: the value of white in ``data`` (255 for uint8, 65535 for uint16, 1 for float).
        mode: ``auto`` (detect), ``normal`` (never invert) or ``inverted`` (invert the whole page).

    Returns:
        the decision.

    Raises:
        ValueError: unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown polarity {mode!r} (known: {', '.join(MODES)})")
    if mode == "normal" or data.size == 0:
        return Polarity("normal")
    if mode == "inverted":
        return Polarity("inverted")
    sample = subsample(data).astype(np.float32) / np.float32(scale)
    if float(sample.max() - sample.min()) < 8.0 / 255.0:
        return Polarity("normal")
    level = otsu(sample)
    b = block_size(*data.shape)
    share = light_share(data, scale, level, b)
    dark = share < DARK_BLOCK
    if dark.mean() >= PAGE_DARK:
        inside_light = float(share[dark].mean())
        if LIGHT_SHARE[0] <= inside_light <= LIGHT_SHARE[1]:
            return Polarity("inverted", level, b)
    if not dark.any():
        return Polarity("normal", level, b)
    from scipy import ndimage

    labels, n = ndimage.label(dark, structure=np.ones((3, 3), bool))
    if n == 0:
        return Polarity("normal", level, b)
    keep = np.zeros(n + 1, bool)
    min_blocks = max(REGION_BLOCKS, REGION_SHARE * dark.size)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or sizes[i] < min_blocks:
            continue
        hh, ww = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if hh < REGION_SIDE or ww < REGION_SIDE or sizes[i] < REGION_FILL * hh * ww:
            continue
        region = labels[sl] == i
        s = share[sl][region]
        if LIGHT_SHARE[0] <= float(s.mean()) <= LIGHT_SHARE[1] and float((s > 0.03).mean()) >= REGION_SPREAD:
            keep[i] = True
    if not keep.any():
        return Polarity("normal", level, b)
    region = keep[labels]
    inside = ndimage.binary_erosion(region, structure=np.ones((3, 3), bool), border_value=1)
    edge = ndimage.binary_dilation(region, structure=np.ones((3, 3), bool)) & ~inside
    return Polarity("regions", level, b, inside, edge, int(keep.sum()))

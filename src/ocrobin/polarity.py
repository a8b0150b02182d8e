"""Page polarity: find light-on-dark pages and light-on-dark regions, so the model always sees dark text.

The model was trained on dark ink on lighter paper; a negative (microfilm, a photographic negative) or a
reverse-printed band (a heading in a black bar, a dark caption box) comes out as a solid block of ink.
:func:`detect` looks at the page once, on a grid of blocks of :data:`BLOCK` pixels. In each block the
median is the local ground and the 2nd and 98th percentiles say which way the strokes go: dark text on
light paper reaches far below the median, light text on a dark ground far above it.

* The page's *score* weighs the two over every block with thin strokes (the edge of a large dark area is
  not a stroke); a negative score is a normal page, a clearly positive one a negative. A slightly positive
  one is settled by the model (:func:`detect`'s ``check``): the page is inverted when, as it is, the model
  is less certain of it than inverted, or makes it mostly ink where inverted it finds much less.
  A page whose light strokes sit on a ground much darker than the rest of the page is never a negative:
  that is a dark band on a light page whose strong strokes outweigh the page's own faint text, and it
  goes to the region search below.
* On a normal page, compact groups of blocks whose strokes are light on a darker ground are candidate
  regions; each is inverted only where the model, as it is, makes it mostly ink and inverted much less:
  where the model already reads the light text, or the area is a border, a shadow or a photograph, it is
  left alone.

The decision is a :class:`Polarity`, which gives, tile by tile, how much to invert each pixel
(:meth:`Polarity.tile_mask`): 1 inside a region, and near its edge only the pixels whose neighbourhood is
darker than the region's mid level, so the edge of a band does not turn into a line of ink.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Polarity modes the API and the command line accept.
MODES = ("auto", "normal", "inverted")
#: Side of the analysis blocks in pixels.
BLOCK = 32
#: A block holds strokes when its 2nd or 98th percentile lies this far from its median (grey in [0, 1]).
STROKES = 0.03
#: A page score above this is a negative; between 0 and this the model is asked. (On the 136 DIBCO-style
#: pages of ../shared/data, upright pages score −0.29 or less and their negatives +0.29 or more.)
CLEAR = 0.15
#: A block's strokes are light (or dark) when their reach exceeds the other side's this many times.
DOMINANCE = 2.0
#: A candidate region: at least this many blocks with light strokes, and a bounding box of at least
#: this many blocks on each side.
REGION_BLOCKS = 6
REGION_SIDE = 3
#: The model confirms an inversion when, as it is, at least this share of the area comes out as ink and
#: inverted at most :data:`INK_RATIO` of that.
INK_AS_IS = 0.25
INK_RATIO = 0.5
#: Light strokes on a ground this much darker than the page's typical block (grey in [0, 1]) belong to a
#: dark region of a light page (a reverse-printed band), not to a negative, however strong they are.
LOCAL_GROUND = 0.15
#: Pixels the model looks at when it confirms a decision (the area is reduced to this size).
CHECK_PIXELS = 400_000

#: The model's view of a (reduced) grey area in [0, 1]: (share of ink, uncertainty), the uncertainty being
#: Σ (1 − |2p − 1|) / Σ p as in :class:`ocrobin.infer.PageResult`.
ModelCheck = Callable[[np.ndarray], tuple[float, float]]


@dataclass
class Polarity:
    """What to invert on a page.

    Attributes:
        mode: ``normal`` (nothing), ``inverted`` (the whole page) or ``regions``.
        threshold: grey level in [0, 1] between a region's dark ground and the light paper around it.
        block: block side in pixels of ``inside`` and ``edge``.
        inside: blocks inverted entirely (``regions`` only).
        edge: blocks at the regions' edges where only pixels with a dark neighbourhood are inverted.
        regions: number of inverted regions found.
        score: the page's stroke score (< 0: dark strokes, > 0: light strokes), for reports and tests.
    """

    mode: str = "normal"
    threshold: float = 0.5
    block: int = BLOCK
    inside: np.ndarray | None = None
    edge: np.ndarray | None = None
    regions: int = 0
    score: float = 0.0

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
            full = np.zeros((by1 - by0, bx1 - bx0), np.float32)
            full[:a.shape[0], :a.shape[1]] = a
            t = torch.from_numpy(full).repeat_interleave(b, 0).repeat_interleave(b, 1)
            oy, ox = y0 - by0 * b, x0 - bx0 * b
            return t[oy:oy + h, ox:ox + w].to(x.device)

        m = up(inside)
        if edge.any():
            # a 9-pixel window: thin dark strokes near a region stay bright on average, the region's ground not
            local = F.avg_pool2d(x[None, None], 9, stride=1, padding=4, count_include_pad=False)[0, 0]
            m = torch.maximum(m, up(edge) * (local < self.threshold).float())
        return m

    def invert_sample(self, sample: np.ndarray, step: int) -> np.ndarray:
        """Apply the decision to a subsample (every ``step``-th pixel, float in [0, 1]), for page statistics."""
        if self.mode == "normal":
            return sample
        if self.mode == "inverted":
            return 1.0 - sample
        assert self.inside is not None and self.edge is not None
        ys = np.minimum((np.arange(sample.shape[0]) * step) // self.block, self.inside.shape[0] - 1)
        xs = np.minimum((np.arange(sample.shape[1]) * step) // self.block, self.inside.shape[1] - 1)
        m = self.inside[np.ix_(ys, xs)] | (self.edge[np.ix_(ys, xs)] & (sample < self.threshold))
        return np.where(m, 1.0 - sample, sample)


#: Percentiles measured in each block.
PERCENTILES = (2, 25, 50, 75, 98)
#: Strokes are thin: the quartile on their side stays within this share of their reach from the median
#: (the edge of a large dark area, half of a block or more, is not a stroke).
THIN = 0.3


def block_percentiles(data: np.ndarray, scale: float, block: int = BLOCK) -> np.ndarray:
    """The :data:`PERCENTILES` of every block, in [0, 1], strip by strip: array 5 × rows × columns.

    Every second pixel of a block in each direction is looked at (256 values for 32-pixel blocks), sorted
    (a radix sort for 8- and 16-bit pages) and read off by rank. Blocks at the right and bottom edge cover
    what is left there.
    """
    h, w = data.shape
    gh, gw = math.ceil(h / block), math.ceil(w / block)
    out = np.empty((len(PERCENTILES), gh, gw), np.float32)
    rows = block * max(1, 2048 // block)
    n = (block // 2) ** 2
    ranks = [round(q / 100 * (n - 1)) for q in PERCENTILES]
    kind = "stable" if data.dtype in (np.uint8, np.uint16) else None
    for r0 in range(0, h, rows):
        strip = data[r0:r0 + rows:2, ::2]
        sh = strip.shape[0]
        half = block // 2
        ph, pw = (-sh) % half, (-strip.shape[1]) % half
        if ph or pw:
            strip = np.pad(strip, ((0, ph), (0, pw)), mode="edge")
        g = strip.reshape(strip.shape[0] // half, half, -1, half).transpose(0, 2, 1, 3)
        g = np.sort(g.reshape(g.shape[0], g.shape[1], n), axis=2, kind=kind)
        q = g[:, :, ranks].transpose(2, 0, 1).astype(np.float32) / np.float32(scale)
        out[:, r0 // block:r0 // block + q.shape[1], :q.shape[2]] = q
    return out


def reduce(area: np.ndarray, scale: float, pixels: int = CHECK_PIXELS) -> np.ndarray:
    """An area of the page as float in [0, 1], reduced by whole blocks to at most about ``pixels``."""
    k = max(1, math.ceil(math.sqrt(area.size / pixels)))
    h, w = (area.shape[0] // k) * k, (area.shape[1] // k) * k
    if k == 1 or h == 0 or w == 0:
        return area.astype(np.float32) / np.float32(scale)
    a = area[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)
    return a / np.float32(scale)


def _views(area: np.ndarray, scale: float, check: ModelCheck) -> tuple[tuple[float, float], tuple[float, float]]:
    small = reduce(area, scale)
    return check(small), check(1.0 - small)


def _solid(area: np.ndarray, scale: float, check: ModelCheck | None) -> bool:
    """As it is, the model makes the area mostly ink; inverted, much less: it is light text on dark."""
    if check is None:
        return True
    (ink, _), (ink_inv, _) = _views(area, scale, check)
    return ink >= INK_AS_IS and ink_inv <= INK_RATIO * ink


def _page_inverted(data: np.ndarray, scale: float, score: float, check: ModelCheck | None) -> bool:
    """Whether a page whose strokes are not clearly dark is a negative (see the module's description)."""
    if check is None:
        return score > CLEAR
    if score >= CLEAR:
        return True
    (ink, unc), (ink_inv, unc_inv) = _views(data, scale, check)
    return unc > unc_inv or (ink >= INK_AS_IS and ink_inv <= INK_RATIO * ink)


def _on_local_ground(med: np.ndarray, light: np.ndarray, light_blocks: np.ndarray) -> bool:
    """The light strokes sit on a ground clearly darker than most of the page: light text in a dark band
    whose strong strokes outweigh the faint text of the rest of the page. In a negative the light text's
    ground is the page's own, so this stays False."""
    if not light_blocks.any():
        return False
    # weighed as the score weighs them: a band's strong strokes count, the paper grain's faint bright specks not
    ground = float(np.average(med[light_blocks], weights=light[light_blocks]))
    return ground < float(np.median(med)) - LOCAL_GROUND


def detect(data: np.ndarray, scale: float = 255.0, mode: str = "auto", check: ModelCheck | None = None) -> Polarity:
    """Decide what of a page to invert.

    Args:
        data: the page, H×W grey (0 = black), any numeric dtype.
        scale: the value of white in ``data`` (255 for uint8, 65535 for uint16, 1 for float).
        mode: ``auto`` (detect), ``normal`` (never invert) or ``inverted`` (invert the whole page).
        check: the model's (ink share, uncertainty) on a reduced grey area in [0, 1]; it settles pages whose
            strokes are not clearly dark and confirms regions. Without it the statistics decide alone.

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
    p2, p25, med, p75, p98 = block_percentiles(data, scale)
    dark, light = med - p2, p98 - med
    dark = np.where(med - p25 < THIN * dark, dark, 0.0)  # thin dark strokes only
    light = np.where(p75 - med < THIN * light, light, 0.0)
    strokes = np.maximum(dark, light) > STROKES
    if not strokes.any():
        return Polarity("normal")
    total = float(dark[strokes].sum() + light[strokes].sum())
    score = float(light[strokes].sum() - dark[strokes].sum()) / max(total, 1e-9)
    light_blocks = strokes & (light > DOMINANCE * dark)
    if score > 0 and not _on_local_ground(med, light, light_blocks) and _page_inverted(data, scale, score, check):
        return Polarity("inverted", score=score)
    return _regions(data, scale, med, light_blocks, score, check)


def _regions(data: np.ndarray, scale: float, med: np.ndarray, light_blocks: np.ndarray, score: float,
             check: ModelCheck | None) -> Polarity:
    """Light-on-dark regions of a normal page (see the module's description)."""
    from scipy import ndimage

    if light_blocks.sum() < REGION_BLOCKS:
        return Polarity("normal", score=score)
    paper = float(np.median(med))
    joined = ndimage.binary_closing(light_blocks, structure=np.ones((3, 3), bool), border_value=0) | light_blocks
    labels, n = ndimage.label(joined, structure=np.ones((3, 3), bool))
    region = np.zeros(med.shape, bool)
    levels = []
    b = BLOCK
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        part = labels[sl] == i
        if int((light_blocks[sl] & part).sum()) < REGION_BLOCKS:
            continue
        if sl[0].stop - sl[0].start < REGION_SIDE or sl[1].stop - sl[1].start < REGION_SIDE:
            continue
        ground = float(np.median(med[sl][part]))
        if ground > paper - 2 * STROKES:
            continue  # not darker than the paper around it: light marks on paper, not a dark region
        mid = (ground + paper) / 2
        box = med[sl] < mid  # the region's dark ground in its bounding box, text-free blocks included
        if not _solid(data[sl[0].start * b:sl[0].stop * b, sl[1].start * b:sl[1].stop * b], scale, check):
            continue
        region[sl] |= box
        levels.append(mid)
    if not levels:
        return Polarity("normal", score=score)
    region = ndimage.binary_fill_holes(region)
    inside = ndimage.binary_erosion(region, structure=np.ones((3, 3), bool), border_value=1)
    edge = ndimage.binary_dilation(region, structure=np.ones((3, 3), bool)) & ~inside
    return Polarity("regions", float(min(levels)), b, inside, edge, len(levels), score)

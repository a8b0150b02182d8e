"""The page's decision: negative, normal, or normal with light-on-dark regions and bands to invert."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .bands import BAND_EDGE, band_scale, search
from .blocks import BLOCK, block_percentiles, reduce

#: Polarity modes the API and the command line accept.
MODES = ("auto", "normal", "inverted")
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

#: Strokes are thin: the quartile on their side stays within this share of their reach from the median
#: (the edge of a large dark area, half of a block or more, is not a stroke).
THIN = 0.3

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
        bands: reverse-printed bands (``regions`` only), each (y0, y1, x0, x1) in page pixels: inverted
            exactly and normalised on their own.
        band_levels: each band's (ground, paper around it), grey in [0, 1].
        band_edge: pixels on each side of a band's edge where its blurred ramp is looked for.
    """

    mode: str = "normal"
    threshold: float = 0.5
    block: int = BLOCK
    inside: np.ndarray | None = None
    edge: np.ndarray | None = None
    regions: int = 0
    score: float = 0.0
    bands: tuple[tuple[int, int, int, int], ...] = ()
    band_levels: tuple[tuple[float, float], ...] = ()
    band_edge: int = 0

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
        m = self._block_mask(x, y0, x0)
        band = self.band_mask(x.shape, y0, x0, x.device)
        if band is None:
            return m
        return band if m is None else torch.maximum(m, band)

    def band_mask(self, shape: tuple[int, ...], y0: int, x0: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor | None:
        """1 on the pixels of a tile inside a band, else 0; None when no band reaches the tile."""
        h, w = shape[-2], shape[-1]
        m = None
        for by0, by1, bx0, bx1 in self.bands:
            ya, yb, xa, xb = max(by0 - y0, 0), min(by1 - y0, h), max(bx0 - x0, 0), min(bx1 - x0, w)
            if ya < yb and xa < xb:
                if m is None:
                    m = torch.zeros((h, w), dtype=torch.float32, device=device)
                m[ya:yb, xa:xb] = 1.0
        return m

    def band_edge_mask(self, x: torch.Tensor, y0: int, x0: int) -> torch.Tensor | None:
        """The pixels of a tile (grey in [0, 1], H×W, as read) on a band's blurred edge, or None.

        A printed band's edge is a ramp from its ground to the paper a pixel or two wide: inverted or not,
        its middle would reach the model as a grey line all round the band. Within :attr:`band_edge` of the
        edge, pixels whose grey lies in the middle two thirds between the band's ground and the paper are that
        ramp (a stroke crossing the edge is darker or lighter) and are given to the model as paper. (The
        middle third alone left the ramp's darkest row, inverted, as a line that ``msfcn-v3`` reads as ink.)
        """
        r = self.band_edge
        if not r:
            return None
        h, w = x.shape
        m = None
        for (by0, by1, bx0, bx1), (ground, paper) in zip(self.bands, self.band_levels, strict=True):
            ya, yb, xa, xb = max(by0 - r - y0, 0), min(by1 + r - y0, h), max(bx0 - r - x0, 0), min(bx1 + r - x0, w)
            if ya >= yb or xa >= xb:
                continue
            ring = torch.ones((yb - ya, xb - xa), dtype=torch.bool, device=x.device)
            ia, ib = max(by0 + r - y0, ya) - ya, min(by1 - r - y0, yb) - ya
            ja, jb = max(bx0 + r - x0, xa) - xa, min(bx1 - r - x0, xb) - xa
            if ia < ib and ja < jb:
                ring[ia:ib, ja:jb] = False
            ramp = ring & ((x[ya:yb, xa:xb] - (ground + paper) / 2).abs() < (paper - ground) / 3)
            if m is None:
                m = torch.zeros((h, w), dtype=torch.bool, device=x.device)
            m[ya:yb, xa:xb] |= ramp
        return m

    def _block_mask(self, x: torch.Tensor, y0: int, x0: int) -> torch.Tensor | None:
        if self.inside is None or self.edge is None:
            return None
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

    def band_sample(self, shape: tuple[int, int], step: int) -> np.ndarray:
        """Which pixels of a subsample (every ``step``-th pixel) lie inside a band."""
        ys, xs = np.arange(shape[0]) * step, np.arange(shape[1]) * step
        m = np.zeros(shape, bool)
        for y0, y1, x0, x1 in self.bands:
            m |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        return m

    def invert_sample(self, sample: np.ndarray, step: int) -> np.ndarray:
        """Apply the decision to a subsample (every ``step``-th pixel, float in [0, 1]), for page statistics."""
        if self.mode == "normal":
            return sample
        if self.mode == "inverted":
            return 1.0 - sample
        m = self.band_sample(sample.shape, step)
        if self.inside is not None and self.edge is not None:
            ys = np.minimum((np.arange(sample.shape[0]) * step) // self.block, self.inside.shape[0] - 1)
            xs = np.minimum((np.arange(sample.shape[1]) * step) // self.block, self.inside.shape[1] - 1)
            m |= self.inside[np.ix_(ys, xs)] | (self.edge[np.ix_(ys, xs)] & (sample < self.threshold))
        return np.where(m, 1.0 - sample, sample)


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
    bands = search(data, scale, p25, med)
    if bands:
        b = BLOCK
        for (y0, y1, x0, x1), _ in bands:  # the blocks of a band are not searched again
            light_blocks[y0 // b:-(-y1 // b), x0 // b:-(-x1 // b)] = False
    return _with_bands(_regions(data, scale, med, light_blocks, score, check), bands, data)


def detect_bands(data: np.ndarray, scale: float = 255.0) -> Polarity:
    """The decision that inverts a page's reverse-printed bands (:func:`find_bands`) and nothing else.

    Why: a training page is shown to the model as the binarizer will show it (bands inverted and normalised
    apart), without a model to confirm anything and without the block search, which needs that model.
    """
    if data.size == 0:
        return Polarity("normal")
    _, p25, med, _, _ = block_percentiles(data, scale)
    return _with_bands(Polarity("normal"), search(data, scale, p25, med), data)


def _with_bands(pol: Polarity, bands: list[tuple[tuple[int, int, int, int], tuple[float, float]]],
                data: np.ndarray) -> Polarity:
    """``pol`` with the bands of :func:`search` added."""
    if bands:
        pol.mode, pol.regions = "regions", pol.regions + len(bands)
        pol.bands, pol.band_levels = tuple(b for b, _ in bands), tuple(v for _, v in bands)
        pol.band_edge = BAND_EDGE * band_scale(data)
    return pol


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

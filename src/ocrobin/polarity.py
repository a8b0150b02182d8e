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

* Before that search, :func:`find_bands` looks for reverse-printed *bands* pixel by pixel: dark rectangles,
  parallel to the page's edges, with straight sharp edges, a flat ground wider than strokes and light strokes
  inside, in its middle too (a heading bar, a dark caption box). Stains, shadows, scan borders along a page
  edge, lines of bold or blurred text, words of heavy handwriting and solid bars (a redaction over text)
  fail one of those tests. A band running into a darker area (a scan border) is split from it by level;
  a dark area along the page's edge is a band only when it plainly holds letters.
  A band needs no model check; the binarizer inverts it exactly and normalises its contrast on its own,
  and the rest of the page without it (a dark band would otherwise set the page's black point and change
  how the text around it is read).

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
#: Bands (:func:`find_bands`) are looked for on the page reduced to at most this many pixels.
BAND_PIXELS = 1_000_000
#: Light strokes narrower than this are first removed from the page by a grey opening, then dark strokes
#: narrower than :data:`BAND_CLOSE` by a grey closing: what is still dark is a thick dark area (pixels of
#: the reduced page; both keep the straight edges of a large rectangle where they are).
BAND_OPEN = 7
BAND_CLOSE = 15
#: A band is at least this thick and this large (pixels of the reduced page).
BAND_SIDE = 12
BAND_AREA = 3000
#: Its ground is at least this much darker than the paper around it (grey in [0, 1]).
BAND_CONTRAST = 0.2
#: At least this share of its rectangle is dark ground (its light text's holes filled).
BAND_FILL = 0.85
#: Straight sharp edges: along every side that is not the page's edge, at least this share of the pixels
#: 3 to 6 pixels inside is dark, and of the places along it this share has light 2 to 6 pixels outside.
BAND_STRAIGHT = 0.7
#: A flat ground: at least this share of the pixels inside lie within a fifth of the contrast of the ground
#: (a band is printed in one tone; a line of bold or blurred text is not).
BAND_FLAT = 0.6
#: Wide ground: 1 % of its dark pixels lie at least this many pixels (chessboard distance) from the nearest
#: light pixel inside it, on a searched page of a megapixel (on a smaller one, as many fewer as its side is
#: shorter). A band's ground has margins and spaces between words; a word of heavy ink, its gaps taken for
#: light text, is nowhere wider than its strokes. (Bands of the band pages of ``benchmarks/polarity.py``:
#: 24 or more; words of heavy handwriting that passed every other test: 18 or less.)
BAND_REACH = 21
#: Light text inside: at least this share of the pixels lie above the ground by 0.3 of the contrast, in
#: the band's middle (its rectangle less a quarter of its short side all round: a solid bar, a redaction
#: over text, has light pixels only where the lines it touches come in at its edges).
BAND_LIGHT = 0.01
#: A dark area along a page's edge is a band when light text covers at least this share of its middle, in
#: strokes of 2×2 pixels or more (a scan border's dust is specks; the mottle of a scanner bed's texture
#: along a bleed-through class page covered 4 %, heading bands on cropped band pages 10 % or more).
BAND_EDGE_LIGHT = 0.06
#: A band's blurred edge is looked for this many pixels (of the reduced page) on each side of it.
BAND_EDGE = 2

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
    return reduce_by(area, scale, max(1, math.ceil(math.sqrt(area.size / pixels))))


def reduce_by(area: np.ndarray, scale: float, k: int) -> np.ndarray:
    """An area as float in [0, 1], each k×k block its mean (the last rows and columns short of a block
    dropped).

    Strip by strip, so a huge page is never copied whole (its columns beyond the last whole block make a
    slice that numpy can only reshape by copying).
    """
    h, w = (area.shape[0] // k) * k, (area.shape[1] // k) * k
    if k == 1 or h == 0 or w == 0:
        return area[:h, :w].astype(np.float32) / np.float32(scale)
    out = np.empty((h // k, w // k), np.float32)
    rows = k * max(1, 256 // k)
    for r0 in range(0, h, rows):
        strip = area[r0:min(h, r0 + rows), :w]
        out[r0 // k:(r0 + strip.shape[0]) // k] = strip.reshape(strip.shape[0] // k, k, w // k, k).mean(
            axis=(1, 3), dtype=np.float32)
    return out / np.float32(scale)


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
    bands = _find_bands(data, scale, p25, med)
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
    return _with_bands(Polarity("normal"), _find_bands(data, scale, p25, med), data)


def _with_bands(pol: Polarity, bands: list[tuple[tuple[int, int, int, int], tuple[float, float]]],
                data: np.ndarray) -> Polarity:
    """``pol`` with the bands of :func:`_find_bands` added."""
    if bands:
        pol.mode, pol.regions = "regions", pol.regions + len(bands)
        pol.bands, pol.band_levels = tuple(b for b, _ in bands), tuple(v for _, v in bands)
        pol.band_edge = BAND_EDGE * _band_scale(data)
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


def find_bands(data: np.ndarray, scale: float = 255.0) -> list[tuple[int, int, int, int]]:
    """Reverse-printed bands of a page: dark rectangles, parallel to its edges, holding light text.

    See the module's description and the ``BAND_*`` constants for the tests a dark area must pass. Edges are
    exact to a pixel of the reduced page (:data:`BAND_PIXELS`); a skewed page gives its bands' bounding
    rectangles (deskew first for exact edges).

    Args:
        data: the page, H×W grey (0 = black), any numeric dtype.
        scale: the value of white in ``data``.

    Returns:
        (y0, y1, x0, x1) of each band in page pixels.
    """
    if data.size == 0:
        return []
    _, p25, med, _, _ = block_percentiles(data, scale)
    return [box for box, _ in _find_bands(data, scale, p25, med)]


def _band_scale(data: np.ndarray) -> int:
    """How many times a page is reduced for the band search (to at most :data:`BAND_PIXELS`)."""
    return max(1, math.ceil(math.sqrt(data.size / BAND_PIXELS)))


def _find_bands(data: np.ndarray, scale: float, p25: np.ndarray, med: np.ndarray
                ) -> list[tuple[tuple[int, int, int, int], tuple[float, float]]]:
    """:func:`find_bands` with each band's (ground, paper around it) in [0, 1], given the page's block
    percentiles: only the areas around blocks at least a quarter dark ground are searched (most pages
    have few or none; the search costs 0.03–0.05 s per searched megapixel)."""
    from scipy import ndimage

    paper = float(np.percentile(med, 75))
    dark = p25 < paper - BAND_CONTRAST
    if not dark.any():
        return []
    k = _band_scale(data)
    g = np.ones((data.shape[0] // k, data.shape[1] // k), np.float32)  # reduced where searched, else paper
    thick = np.ones_like(g)
    # dark: below the paper by the contrast; and, tried second, also nearer the darkest ground than the
    # paper (on a much reduced page lines of text turn into a grey that joins a band; at full scale the
    # stricter cut can split a band where its light text reaches across it)
    loose, strict = np.zeros(g.shape, bool), np.zeros(g.shape, bool)
    b, margin = BLOCK / k, 2 * BAND_CLOSE + 20
    groups, n_groups = ndimage.label(_grow(dark, 1), structure=np.ones((3, 3), bool))
    held = np.bincount(groups[dark], minlength=n_groups + 1)  # dark blocks in each group
    least = max(2, math.ceil(BAND_AREA * k * k / (4 * BLOCK * BLOCK)))  # a band's area, a quarter dark per block
    for j, sl in enumerate(ndimage.find_objects(groups), start=1):
        if sl is None or held[j] < least:
            continue
        crop = tuple(slice(max(0, int(s.start * b) - margin), min(n, math.ceil(s.stop * b) + margin))
                     for s, n in zip(sl, g.shape, strict=True))
        g[crop] = reduce_by(data[crop[0].start * k:crop[0].stop * k, crop[1].start * k:crop[1].stop * k], scale, k)
        t = _grey_close(_grey_open(g[crop], BAND_OPEN), BAND_CLOSE)
        thick[crop] = t
        loose[crop] |= _open(t < paper - BAND_CONTRAST, BAND_SIDE)
        strict[crop] |= _open(t < min(paper - BAND_CONTRAST, (paper + float(np.percentile(t, 1))) / 2), BAND_SIDE)
    out: list[tuple[tuple[int, int, int, int], tuple[float, float]]] = []
    taken = np.zeros(g.shape, bool)
    for cand in (loose, strict, None):
        if cand is None:  # last, what is left of the dark areas split by level
            cand = _lighter_parts(loose & ~taken, thick)
        labels, _ = ndimage.label(cand & ~taken)
        areas = np.bincount(labels.ravel())
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None or areas[i] < BAND_AREA:
                continue
            found = _band(g, thick, labels, i, sl, paper, text=k == 1)
            if found is None:
                continue
            box, levels = found
            if taken[box[0]:box[1], box[2]:box[3]].any():
                continue
            y0, y1, x0, x1 = (v * k for v in box)
            # a band reaching the reduced page's far edge reaches the page's (what the reduction cut off)
            y1 = data.shape[0] if box[1] >= g.shape[0] else y1
            x1 = data.shape[1] if box[3] >= g.shape[1] else x1
            if k > 1:  # a reduced page: its text and exact edges are looked for on the page's own pixels
                if not _holds_text(data, scale, (y0, y1, x0, x1), levels, max(3 * k, min(y1 - y0, x1 - x0) // 4)):
                    continue
                y0, y1, x0, x1 = _exact_edges(data, scale, (y0, y1, x0, x1), levels, k)
            out.append(((y0, y1, x0, x1), levels))
            taken[box[0]:box[1], box[2]:box[3]] = True
    return out


def _lighter_parts(mask: np.ndarray, thick: np.ndarray) -> np.ndarray:
    """The lighter of two grey levels of each dark area of ``mask`` that holds two (Otsu's cut of its
    ``thick`` values, the levels at least half :data:`BAND_CONTRAST` apart): a band running into a darker
    scan border or shadow, which joins them into one area that is no rectangle."""
    from scipy import ndimage

    out = np.zeros(mask.shape, bool)
    labels, _ = ndimage.label(mask)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == i
        vals = thick[sl][comp]
        if vals.size < 2 * BAND_AREA:
            continue
        hist, edges = np.histogram(vals, bins=64)
        w = np.cumsum(hist) / vals.size  # Otsu: the cut with the largest variance between the two classes
        mu = np.cumsum(hist * (edges[:-1] + edges[1:]) / 2) / vals.size
        between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
        cut = float(edges[1 + int(np.argmax(between[:-1]))])
        light, dark = vals[vals > cut], vals[vals <= cut]
        if min(light.size, dark.size) < BAND_AREA or float(light.mean() - dark.mean()) < BAND_CONTRAST / 2:
            continue
        out[sl] |= _open(comp & (thick[sl] > cut), BAND_SIDE)
    return out


def _slide(a: np.ndarray, k: int, axis: int, op: Callable[..., np.ndarray], lo: int,
           fill: float | bool | None) -> np.ndarray:
    """``op`` (``np.minimum`` or ``np.maximum``) over the window ``a[i + lo : i + lo + k]`` along ``axis``.

    Beyond the array the window sees ``fill``, or the edge value when it is None. By doubling (log2 k
    element-wise passes): several times faster than scipy's 1-D filters, which set the band search's cost.
    """
    n = a.shape[axis]
    before, after = -lo, k - 1 + lo

    def part(f: np.ndarray, start: int, length: int) -> np.ndarray:
        return f[(slice(None),) * axis + (slice(start, start + length),)]

    shape = list(a.shape)
    shape[axis] = n + before + after
    p = np.empty(shape, a.dtype)  # padded by hand: np.pad's overhead is most of a small window's cost
    part(p, before, n)[...] = a
    part(p, 0, before)[...] = part(a, 0, 1) if fill is None else fill
    part(p, before + n, after)[...] = part(a, n - 1, 1) if fill is None else fill

    f, w = p, 1
    while 2 * w <= k:
        f = op(part(f, 0, f.shape[axis] - w), part(f, w, f.shape[axis] - w))
        w *= 2
    return op(part(f, 0, n), part(f, k - w, n))


def _filter(a: np.ndarray, k: int, op: Callable[..., np.ndarray], fill: float | bool | None = None,
            reflect: bool = False) -> np.ndarray:
    """A k×k minimum or maximum filter (``reflect``: the window mirrored, for the second half of an opening
    or closing with an even ``k``)."""
    lo = -(k - 1 - k // 2) if reflect else -(k // 2)
    return _slide(_slide(a, k, 0, op, lo, fill), k, 1, op, lo, fill)


def _grey_open(a: np.ndarray, k: int) -> np.ndarray:
    """Grey opening by a k×k square: light features narrower than k removed."""
    return _filter(_filter(a, k, np.minimum), k, np.maximum, reflect=True)


def _grey_close(a: np.ndarray, k: int) -> np.ndarray:
    """Grey closing by a k×k square: dark features narrower than k removed."""
    return _filter(_filter(a, k, np.maximum), k, np.minimum, reflect=True)


def _open(mask: np.ndarray, side: int) -> np.ndarray:
    """Binary opening by a ``side``-pixel square: the union of all such squares that fit in the mask."""
    return _filter(_filter(mask, side, np.minimum, False), side, np.maximum, False, reflect=True)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: what is not in it and not connected to the window's border (one
    labelling; scipy's ``binary_fill_holes`` grows from the border step by step)."""
    from scipy import ndimage

    labels, _ = ndimage.label(~mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return mask | (~np.isin(labels, edge[edge > 0]) & (labels > 0))


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """A mask grown by ``r`` pixels (a square's reach)."""
    return _filter(mask, 2 * r + 1, np.maximum, False)


def _band(g: np.ndarray, thick: np.ndarray, labels: np.ndarray, i: int, sl: tuple[slice, slice],
          paper: float, text: bool) -> tuple[tuple[int, int, int, int], tuple[float, float]] | None:
    """The rectangle of a thick dark area when it passes as a band (page coordinates of ``g``) and its
    (ground, paper around it), else None. ``text``: look for its light text here (else the caller looks
    on the page's own pixels)."""
    from scipy import ndimage

    h, w = g.shape
    win = tuple(slice(max(0, s.start - 20), min(n, s.stop + 20)) for s, n in zip(sl, g.shape, strict=True))
    oy, ox = win[0].start, win[1].start
    comp = labels[win] == i
    if int(comp.sum()) < BAND_AREA:
        return None
    tw, gw = thick[win], g[win]
    ground = float(np.median(tw[comp]))
    ring = _grow(comp, 15) & ~_grow(comp, 5)
    local = float(np.median(tw[ring])) if ring.any() else paper
    contrast = local - ground
    if contrast < BAND_CONTRAST:
        return None
    mid = (ground + local) / 2
    reg = _open((tw < mid) & _grow(comp, 3), BAND_SIDE)
    parts, n = ndimage.label(reg)
    if n == 0:
        return None
    reg = parts == 1 + int(np.argmax(ndimage.sum(reg, parts, range(1, n + 1))))
    reg = _fill_holes(reg)
    shut = _filter(_grow(reg, BAND_CLOSE // 2), BAND_CLOSE, np.minimum) | reg
    ys, xs = np.nonzero(reg)
    ya, yb = (int(v) for v in np.percentile(ys, [1, 99]))
    xa, xb = (int(v) for v in np.percentile(xs, [1, 99]))
    # the edges: the outermost rows (columns) that cover at least half the band's width (height)
    rows = np.flatnonzero(shut[:, xa:xb + 1].mean(axis=1) >= 0.5)
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(shut[y0:y1].mean(axis=0) >= 0.5)
    if cols.size == 0:
        return None
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    if min(y1 - y0, x1 - x0) < BAND_SIDE or float(shut[y0:y1, x0:x1].mean()) < BAND_FILL:
        return None
    # the closing takes the page's edge for dark: a side it carried to the edge goes back to where the
    # band's ground begins (the first row or column, from the edge, whose median is below the mid level)
    r = BAND_CLOSE
    if oy + y0 == 0:
        y0 += int(np.argmax(np.append(np.median(gw[y0:y0 + r, x0:x1], axis=1) < mid, True)))
    if oy + y1 == h:
        y1 -= int(np.argmax(np.append(np.median(gw[y1 - r:y1, x0:x1], axis=1)[::-1] < mid, True)))
    if ox + x0 == 0:
        x0 += int(np.argmax(np.append(np.median(gw[y0:y1, x0:x0 + r], axis=0) < mid, True)))
    if ox + x1 == w:
        x1 -= int(np.argmax(np.append(np.median(gw[y0:y1, x1 - r:x1], axis=0)[::-1] < mid, True)))
    # a dark area along a page edge (a scan border, a binding shadow) is a band only when it plainly holds
    # light text (below; on a reduced page, where that is not looked at here, never)
    vertical = y1 - y0 > x1 - x0
    along_edge = (ox + x0 < 3 or ox + x1 > w - 3) if vertical else (oy + y0 < 3 or oy + y1 > h - 3)
    if along_edge and not text:
        return None
    # inside, the band's light text is removed up to the width dark text is removed outside; outside, a
    # place along the edge is light when one of its rows (columns) 2 to 6 pixels out is, in the page or
    # with its dark text removed: a ruling or a line of text running close along the edge leaves it sharp,
    # a dark area going on beyond it does not, unless it is darker than the band's edge by a step (a scan
    # border the band runs into; a ground that only darkens on has no step)
    solid = _grey_open(gw, BAND_CLOSE)
    for inside, outside, off_page, across in (
            (np.s_[y0 + 3:y0 + 7, x0:x1], np.s_[max(0, y0 - 6):max(0, y0 - 2), x0:x1], oy + y0 < 7, 0),
            (np.s_[y1 - 7:y1 - 3, x0:x1], np.s_[y1 + 2:y1 + 6, x0:x1], oy + y1 > h - 7, 0),
            (np.s_[y0:y1, x0 + 3:x0 + 7], np.s_[y0:y1, max(0, x0 - 6):max(0, x0 - 2)], ox + x0 < 7, 1),
            (np.s_[y0:y1, x1 - 7:x1 - 3], np.s_[y0:y1, x1 + 2:x1 + 6], ox + x1 > w - 7, 1)):
        strip_in = solid[inside]
        straight = float((strip_in < mid).mean()) if strip_in.size else 0.0
        strip_out = (tw[outside] >= mid) | (gw[outside] >= mid)
        if not off_page and strip_out.size:
            if strip_out.shape == strip_in.shape:  # or a darker area it runs into, in a step at the edge
                step = np.median(tw[inside], axis=across, keepdims=True) - contrast / 4
                strip_out = strip_out | (tw[outside] < step)
            straight = min(straight, float(strip_out.any(axis=across).mean()))
        if straight < BAND_STRAIGHT:
            return None
    inner = _filter(reg[y0:y1, x0:x1], 7, np.minimum, False)
    vals = gw[y0:y1, x0:x1][inner]
    if vals.size == 0:
        return None
    if float((np.abs(vals - ground) < 0.2 * contrast).mean()) < BAND_FLAT:
        return None
    q = min(y1 - y0, x1 - x0) // 4
    core = inner[q:inner.shape[0] - q, q:inner.shape[1] - q]
    lit = (gw[y0 + q:y1 - q, x0 + q:x1 - q] > ground + 0.3 * contrast) & core
    if text and (not core.any() or lit.sum() < BAND_LIGHT * core.sum()):
        return None
    if along_edge and _open(lit, 2).sum() < BAND_EDGE_LIGHT * core.sum():  # letters, not specks of dust
        return None
    reach = ndimage.distance_transform_cdt(gw[y0:y1, x0:x1] < mid, metric="chessboard")  # (the dearest test last)
    reach = reach[reach > 0]  # (a box dark all over has no light pixel to measure from: no light text either)
    if reach.size == 0 or float(np.percentile(reach, 99)) < BAND_REACH * math.sqrt(h * w / 1e6):
        return None
    return (oy + y0, oy + y1, ox + x0, ox + x1), (ground, local)


def _exact_edges(data: np.ndarray, scale: float, box: tuple[int, int, int, int], levels: tuple[float, float],
                 k: int) -> tuple[int, int, int, int]:
    """A band's edges found on a reduced page, placed to the pixel on the page itself: within 2k pixels of
    each, the first row (column) from outside whose median, along the band, is darker than its mid level."""
    y0, y1, x0, x1 = box
    h, w = data.shape
    mid = float(np.mean(levels)) * scale
    step = max(1, (x1 - x0) // 2000), max(1, (y1 - y0) // 2000)

    def rows(a: int, b: int) -> np.ndarray:  # median grey of rows a..b-1 along the band
        return np.median(data[a:b, x0:x1:step[0]], axis=1)

    def cols(a: int, b: int) -> np.ndarray:
        return np.median(data[y0:y1:step[1], a:b], axis=0)

    r = 2 * k

    def span(profile: Callable[[int, int], np.ndarray], lo: int, hi: int, n: int) -> tuple[int, int]:
        a = max(0, lo - r)
        dark = np.flatnonzero(profile(a, min(n, lo + r)) < mid)
        first = a + int(dark[0]) if dark.size else lo
        a = max(0, hi - r)
        dark = np.flatnonzero(profile(a, min(n, hi + r)) < mid)
        return first, (a + int(dark[-1]) + 1 if dark.size else hi)

    top, bottom = span(rows, y0, y1, h)
    left, right = span(cols, x0, x1, w)
    return top, bottom, left, right


def _holds_text(data: np.ndarray, scale: float, box: tuple[int, int, int, int], levels: tuple[float, float],
                margin: int) -> bool:
    """Light text inside a band, looked for in the page's own pixels (on a reduced huge page a band's
    strokes average away), about a million of them at most."""
    y0, y1, x0, x1 = box
    y0, y1, x0, x1 = y0 + margin, y1 - margin, x0 + margin, x1 - margin
    if y1 <= y0 or x1 <= x0:
        return False
    step = max(1, int(math.sqrt((y1 - y0) * (x1 - x0) / 1_000_000)))
    vals = data[y0:y1:step, x0:x1:step].astype(np.float32) / np.float32(scale)
    ground, paper = levels
    return float((vals > ground + 0.3 * (paper - ground)).mean()) >= BAND_LIGHT

"""Reverse-printed bands, found pixel by pixel (see :func:`find_bands` and the package's description)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .blocks import BLOCK, block_percentiles, reduce_by
from .morph import fill_holes, grey_close, grey_open, grow, open_mask, slide, square_filter

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
#: A flat ground: at least this share of the pixels inside lie within a fifth of the contrast of the median
#: of its dark pixels (a band is printed in one tone; a line of bold or blurred text is not).
BAND_FLAT = 0.6
#: No light hole inside is larger than this share of the rectangle (letters are small holes; paper framed
#: by a band and dark scan borders round it is one large hole).
BAND_HOLE = 0.1
#: Wide ground: 1 % of its dark pixels lie at least this many pixels (chessboard distance) from the nearest
#: light pixel inside it, on a searched page of a megapixel (on a smaller one, as many fewer as its side is
#: shorter). A band's ground has margins and spaces between words; a word of heavy ink, its gaps taken for
#: light text, is nowhere wider than its strokes. (Bands of the band pages of ``benchmarks/polarity.py``:
#: 24 or more; words of heavy handwriting that passed every other test: 18 or less.)
BAND_REACH = 21
#: Light text inside: at least this share of the pixels, in strokes of 2×2 pixels or more, lie above the
#: ground (the higher of the thick area's level and its dark pixels' median) by 0.3 of the contrast, in
#: the band's middle (its rectangle less a quarter of its short side all round: a solid bar, a redaction
#: over text, has light pixels only where the lines it touches come in at its edges).
BAND_LIGHT = 0.01
#: A dark area along a page's edge is a band when light text covers at least this share of its middle, in
#: strokes of 2×2 pixels or more (a scan border's dust is specks; the mottle of a scanner bed's texture
#: along a bleed-through class page covered 4 %, heading bands on cropped band pages 10 % or more).
BAND_EDGE_LIGHT = 0.06
#: A band's blurred edge is looked for this many pixels (of the reduced page) on each side of it.
BAND_EDGE = 2


def find_bands(data: np.ndarray, scale: float = 255.0) -> list[tuple[int, int, int, int]]:
    """Reverse-printed bands of a page: dark rectangles, parallel to its edges, holding light text.

    See the package's description and the ``BAND_*`` constants for the tests a dark area must pass. Edges are
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
    return [box for box, _ in search(data, scale, p25, med)]


def band_scale(data: np.ndarray) -> int:
    """How many times a page is reduced for the band search (to at most :data:`BAND_PIXELS`)."""
    return max(1, math.ceil(math.sqrt(data.size / BAND_PIXELS)))


def search(data: np.ndarray, scale: float, p25: np.ndarray, med: np.ndarray
           ) -> list[tuple[tuple[int, int, int, int], tuple[float, float]]]:
    """:func:`find_bands` with each band's (ground, paper around it) in [0, 1], given the page's block
    percentiles: only the areas around blocks at least a quarter dark ground are searched (most pages
    have few or none; the search costs 0.03–0.05 s per searched megapixel)."""
    from scipy import ndimage

    paper = float(np.percentile(med, 75))
    dark = p25 < paper - BAND_CONTRAST
    if not dark.any():
        return []
    k = band_scale(data)
    g = np.ones((data.shape[0] // k, data.shape[1] // k), np.float32)  # reduced where searched, else paper
    thick = np.ones_like(g)
    # dark: below the paper by the contrast; and, tried second, also nearer the darkest ground than the
    # paper (on a much reduced page lines of text turn into a grey that joins a band; at full scale the
    # stricter cut can split a band where its light text reaches across it)
    loose, strict = np.zeros(g.shape, bool), np.zeros(g.shape, bool)
    b, margin = BLOCK / k, 2 * BAND_CLOSE + 20
    groups, n_groups = ndimage.label(grow(dark, 1), structure=np.ones((3, 3), bool))
    held = np.bincount(groups[dark], minlength=n_groups + 1)  # dark blocks in each group
    least = max(2, math.ceil(BAND_AREA * k * k / (4 * BLOCK * BLOCK)))  # a band's area, a quarter dark per block
    for j, sl in enumerate(ndimage.find_objects(groups), start=1):
        if sl is None or held[j] < least:
            continue
        crop = tuple(slice(max(0, int(s.start * b) - margin), min(n, math.ceil(s.stop * b) + margin))
                     for s, n in zip(sl, g.shape, strict=True))
        g[crop] = reduce_by(data[crop[0].start * k:crop[0].stop * k, crop[1].start * k:crop[1].stop * k], scale, k)
        t = grey_close(grey_open(g[crop], BAND_OPEN), BAND_CLOSE)
        thick[crop] = t
        loose[crop] |= open_mask(t < paper - BAND_CONTRAST, BAND_SIDE)
        strict[crop] |= open_mask(t < min(paper - BAND_CONTRAST, (paper + float(np.percentile(t, 1))) / 2), BAND_SIDE)
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
            box = _extend(g, box, float(np.mean(levels)))
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
        out[sl] |= open_mask(comp & (thick[sl] > cut), BAND_SIDE)
    return out


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
    ring = grow(comp, 15) & ~grow(comp, 5)
    local = float(np.median(tw[ring])) if ring.any() else paper
    contrast = local - ground
    if contrast < BAND_CONTRAST:
        return None
    mid = (ground + local) / 2
    reg = open_mask((tw < mid) & grow(comp, 3), BAND_SIDE)
    parts, n = ndimage.label(reg)
    if n == 0:
        return None
    reg = parts == 1 + int(np.argmax(ndimage.sum(reg, parts, range(1, n + 1))))
    reg, hole = fill_holes(reg)
    shut = square_filter(grow(reg, BAND_CLOSE // 2), BAND_CLOSE, np.minimum) | reg
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
    solid = grey_open(gw, BAND_CLOSE)
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
    inner = square_filter(reg[y0:y1, x0:x1], 7, np.minimum, False)
    vals = gw[y0:y1, x0:x1][inner]
    if vals.size == 0:
        return None
    dk = vals[vals < mid]
    base = float(np.median(dk)) if dk.size else ground
    flat = float((np.abs(vals - base) < 0.2 * contrast).mean())
    if flat < BAND_FLAT or hole > BAND_HOLE * (y1 - y0) * (x1 - x0):
        return None
    q = min(y1 - y0, x1 - x0) // 4
    core = inner[q:inner.shape[0] - q, q:inner.shape[1] - q]
    lit = (gw[y0 + q:y1 - q, x0 + q:x1 - q] > max(ground, base) + 0.3 * contrast) & core
    lit = open_mask(lit, 2)  # letters, not specks of dust or the grain of a noisy ground
    if text and (not core.any() or lit.sum() < BAND_LIGHT * core.sum()):
        return None
    if along_edge and lit.sum() < BAND_EDGE_LIGHT * core.sum():
        return None
    reach = ndimage.distance_transform_cdt(gw[y0:y1, x0:x1] < mid, metric="chessboard")  # (the dearest test last)
    reach = reach[reach > 0]  # (a box dark all over has no light pixel to measure from: no light text either)
    if reach.size == 0 or float(np.percentile(reach, 99)) < BAND_REACH * math.sqrt(h * w / 1e6):
        return None
    return (oy + y0, oy + y1, ox + x0, ox + x1), (ground, local)


def _extend(g: np.ndarray, box: tuple[int, int, int, int], mid: float) -> tuple[int, int, int, int]:
    """A band's box carried on along its length over ground that goes on as a band: dark between its
    edges and light beyond them (a band's stretch without text, or one its light letters split off,
    fails the tests on its own)."""
    y0, y1, x0, x1 = box
    if y1 - y0 > x1 - x0:  # a vertical band: the same along the columns
        t0, t1, s0, s1 = _extend(g.T, (x0, x1, y0, y1), mid)
        return s0, s1, t0, t1
    h, w = g.shape
    k = BAND_CLOSE
    inside = (g[y0 + 2:y1 - 2] < mid).mean(axis=0)
    outside = [(g[a:b] < mid).mean(axis=0) for a, b in ((y0 - 6, y0 - 2), (y1 + 2, y1 + 6)) if a >= 0 and b <= h]
    ok = inside >= 0.5
    for o in outside:
        ok &= o < 0.5
    # gaps narrower than a closing (a letter as tall as the band, specks) are bridged
    run = slide(slide(ok, k, 0, np.maximum, -(k // 2), None), k, 0, np.minimum, -(k - 1 - k // 2), None)
    while x0 > 0 and run[x0 - 1]:
        x0 -= 1
    while x1 < w and run[x1]:
        x1 += 1
    while x0 < box[2] and not ok[x0]:  # ending where the band's ground does, not in a bridged gap
        x0 += 1
    while x1 > box[3] and not ok[x1 - 1]:
        x1 -= 1
    return y0, y1, x0, x1


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

"""DIBCO evaluation metrics for binarized pages, and the pseudo-F-measure weight maps.

Every metric takes boolean ink masks (True = text) of equal shape and is vectorised with numpy, so a
10-megapixel page scores in well under a second. The definitions are those of the DIBCO competitions:

* F-measure, precision, recall, accuracy in percent (0-100).
* Pseudo-F-measure (Ntirogiannis, Gatos & Pratikakis, IEEE TIP 22(2), 2013) from the two weight maps the
  DIBCO tool writes as ``<stem>_RWeights.dat`` (pseudo-recall weights) and ``<stem>_PWeights.dat``
  (pseudo-precision weights minus one). :func:`pseudo_weights` computes the same maps from the ground
  truth alone; on the DIBCO conformance page it reproduces the shipped files to their six printed decimals.
* PSNR with C = 1 over the two binary images, in dB.
* DRD (Lu, Kot & Shi 2004) as the DIBCO tool computes it: 5×5 reciprocal-distance weights, pixels outside
  the page do not count, NUBN counts only the complete 8×8 blocks of the ground truth that hold both ink
  and paper.
* NRM = (FN/(FN+TP) + FP/(FP+TN)) / 2 and MCC (-1..1, not percent).

Conventions where a ratio has a zero denominator (so nothing ever returns NaN): a recall or precision with
nothing to find / nothing found is 100 (vacuously perfect), and a F-measure is 0 as soon as either part is
0. Hence two empty pages score FM 100, an empty ground truth with predicted ink scores FM 0, and a page with
ink but an empty prediction scores FM 0. Identical images get PSNR :data:`PSNR_IDENTICAL` (100 dB) instead
of infinity. NRM terms with a zero denominator are 0. MCC is 1 for identical images and 0 where it is
otherwise undefined. DRD is 0 without flipped pixels; when the ground truth has no mixed 8×8 block the
denominator NUBN is taken as 1.
"""

from __future__ import annotations

import heapq
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .exceptions import InputError

#: PSNR reported for identical images (a finite stand-in for infinity: any error on a page of fewer than
#: 10^10 pixels scores lower).
PSNR_IDENTICAL = 100.0

#: DRD block size for NUBN and weight-window side, as in Lu, Kot & Shi (2004).
DRD_BLOCK = 8
DRD_WINDOW = 5

#: Metric names in report order: the keys of :meth:`Scores.as_dict`.
KEYS = ("fm", "precision", "recall", "pfm", "pseudo_precision", "pseudo_recall", "psnr", "drd", "nrm",
        "mcc", "accuracy")


def _drd_weights() -> np.ndarray:
    """Normalised reciprocal-distance matrix (centre 0) of the DRD paper."""
    r = DRD_WINDOW // 2
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    dist = np.hypot(dy, dx)
    w = np.divide(1.0, dist, out=np.zeros_like(dist), where=dist > 0)
    return w / w.sum()


_DRD_W = _drd_weights()


# --------------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of a prediction against its ground truth (positive = ink)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def _masks(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gt, dtype=bool)
    p = np.asarray(pred, dtype=bool)
    if g.ndim != 2 or p.ndim != 2:
        raise InputError(f"masks must be 2-D (ground truth {g.shape}, prediction {p.shape})")
    if g.shape != p.shape:
        raise InputError(f"size mismatch: ground truth {g.shape[1]}×{g.shape[0]}, "
                         f"prediction {p.shape[1]}×{p.shape[0]}")
    return g, p


def confusion(gt: np.ndarray, pred: np.ndarray) -> Confusion:
    """Count TP, FP, FN, TN of a prediction.

    Args:
        gt: ground-truth ink mask (True = text).
        pred: predicted ink mask of the same shape.

    Returns:
        The four counts.

    Raises:
        InputError: the masks are not 2-D or differ in shape.
    """
    g, p = _masks(gt, pred)
    tp = int(np.count_nonzero(g & p))
    gi = int(np.count_nonzero(g))
    pi = int(np.count_nonzero(p))
    fn = gi - tp
    fp = pi - tp
    return Confusion(tp, fp, fn, g.size - tp - fp - fn)


def _ratio(num: float, den: float) -> float:
    """Percent ratio that is vacuously perfect when there is nothing to count."""
    return 100.0 if den == 0 else 100.0 * num / den


def _harmonic(a: float, b: float) -> float:
    return 0.0 if a <= 0 or b <= 0 else 2.0 * a * b / (a + b)


def _as_confusion(gt_or_c: np.ndarray | Confusion, pred: np.ndarray | None) -> Confusion:
    if isinstance(gt_or_c, Confusion):
        return gt_or_c
    if pred is None:
        raise TypeError("pass a Confusion or both masks")
    return confusion(gt_or_c, pred)


def recall(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Recall in percent: the share of ground-truth ink that the prediction finds (100 if there is none)."""
    c = _as_confusion(gt, pred)
    return _ratio(c.tp, c.tp + c.fn)


def precision(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Precision in percent: the share of predicted ink that is ink (100 if nothing is predicted)."""
    c = _as_confusion(gt, pred)
    return _ratio(c.tp, c.tp + c.fp)


def fmeasure(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """F-measure in percent (harmonic mean of precision and recall; 100 for two empty pages)."""
    c = _as_confusion(gt, pred)
    return _harmonic(recall(c), precision(c))


def accuracy(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Share of correctly classified pixels, in percent."""
    c = _as_confusion(gt, pred)
    return _ratio(c.tp + c.tn, c.total)


def psnr(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio with C = 1 in dB (:data:`PSNR_IDENTICAL` for identical images)."""
    c = _as_confusion(gt, pred)
    wrong = c.fp + c.fn
    if wrong == 0 or c.total == 0:
        return PSNR_IDENTICAL
    return min(PSNR_IDENTICAL, 10.0 * math.log10(c.total / wrong))


def nrm(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Negative rate metric (0 = perfect, 0.5 = chance), as a fraction."""
    c = _as_confusion(gt, pred)
    nr_fn = c.fn / (c.fn + c.tp) if c.fn + c.tp else 0.0
    nr_fp = c.fp / (c.fp + c.tn) if c.fp + c.tn else 0.0
    return (nr_fn + nr_fp) / 2.0


def mcc(gt: np.ndarray | Confusion, pred: np.ndarray | None = None) -> float:
    """Matthews correlation coefficient (-1..1; 1 for identical images, 0 where undefined otherwise)."""
    c = _as_confusion(gt, pred)
    den = float(c.tp + c.fp) * float(c.tp + c.fn) * float(c.tn + c.fp) * float(c.tn + c.fn)
    if den == 0:
        return 1.0 if c.fp == 0 and c.fn == 0 else 0.0
    return (float(c.tp) * c.tn - float(c.fp) * c.fn) / math.sqrt(den)


# --------------------------------------------------------------------------------------------------
# DRD
# --------------------------------------------------------------------------------------------------


def nubn(gt: np.ndarray, block: int = DRD_BLOCK) -> int:
    """Number of complete ``block``×``block`` ground-truth blocks holding both ink and paper.

    Partial blocks at the right and bottom edges are not counted, as in the DIBCO tool.
    """
    g = np.asarray(gt, dtype=bool)
    hb, wb = g.shape[0] // block, g.shape[1] // block
    if hb == 0 or wb == 0:
        return 0
    sums = g[:hb * block, :wb * block].reshape(hb, block, wb, block).sum(axis=(1, 3), dtype=np.int32)
    return int(np.count_nonzero((sums > 0) & (sums < block * block)))


def drd(gt: np.ndarray, pred: np.ndarray) -> float:
    """Distance-reciprocal distortion (lower is better).

    For every flipped pixel k, DRD_k sums the weights of the 5×5 window over the ground-truth pixels that
    differ from the prediction at k; window cells outside the page add nothing. DRD = sum DRD_k / NUBN.

    Raises:
        InputError: the masks are not 2-D or differ in shape.
    """
    g, p = _masks(gt, pred)
    flips = np.flatnonzero(g != p)
    if flips.size == 0:
        return 0.0
    return _drd_sum(g, flips) / max(nubn(g), 1)


def _drd_sum(g: np.ndarray, flips: np.ndarray) -> float:
    """Sum of DRD_k over the flipped pixels (flat indices into ``g``)."""
    # At a flipped pixel the prediction is the opposite of the ground truth there, so a window cell
    # "differs from the prediction" exactly when it equals the ground truth at the centre. Cells outside
    # the page hold 2, which equals neither value.
    r = DRD_WINDOW // 2
    h, w = g.shape
    pad = np.full((h + 2 * r, w + 2 * r), 2, np.uint8)
    pad[r:-r, r:-r] = g
    flat = pad.ravel()
    wp = w + 2 * r
    centre = (flips // w + r) * wp + (flips % w + r)
    own = flat[centre]
    total = 0.0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            weight = _DRD_W[dy + r, dx + r]
            if weight == 0:
                continue
            total += weight * np.count_nonzero(flat[centre + (dy * wp + dx)] == own)
    return float(total)


# --------------------------------------------------------------------------------------------------
# Pseudo-F-measure
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PseudoWeights:
    """The two weight maps of the pseudo-metrics, in the layout of the DIBCO ``.dat`` files.

    Attributes:
        recall: GW, the pseudo-recall weight of each ground-truth ink pixel (0 elsewhere).
        precision: PW - 1, the extra pseudo-precision weight of each pixel (a false alarm counts 1 + PW - 1).
        source: where the maps come from (``"file"`` or ``"generated"``).
    """

    recall: np.ndarray
    precision: np.ndarray
    source: str = "file"


def read_weights(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """Read one DIBCO weight file: whitespace-separated floats, one per pixel, row-major.

    Args:
        path: the ``.dat`` file.
        shape: (height, width) of the page it belongs to.

    Returns:
        float64 array of ``shape``.

    Raises:
        InputError: unreadable file, a token that is not a number, or the wrong number of values.
    """
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or e})") from e
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as e:
        raise InputError(f"{p}: not a weight file (non-numeric value)") from e
    need = int(shape[0]) * int(shape[1])
    if values.size != need:
        raise InputError(f"{p}: {values.size} values, expected {need} ({shape[1]}×{shape[0]} page)")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{p}: weight file holds non-finite values")
    return values.reshape(shape)


def write_weights(path: str | os.PathLike[str], weights: np.ndarray) -> None:
    """Write a weight map in the DIBCO ``.dat`` layout (six decimals, one row of the page per line)."""
    target = Path(path)
    w = np.asarray(weights, dtype=np.float64)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        np.savetxt(tmp, w, fmt="%f", delimiter="  ")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_weights(recall_path: str | os.PathLike[str], precision_path: str | os.PathLike[str],
                 shape: tuple[int, int]) -> PseudoWeights:
    """Read the ``_RWeights.dat`` / ``_PWeights.dat`` pair of a page.

    Raises:
        InputError: see :func:`read_weights`.
    """
    return PseudoWeights(read_weights(recall_path, shape), read_weights(precision_path, shape), "file")


@dataclass(frozen=True)
class PseudoScores:
    """Pseudo-F-measure with its two parts, in percent."""

    pfm: float
    precision: float
    recall: float


def pseudo_fmeasure(gt: np.ndarray, pred: np.ndarray, weights: PseudoWeights) -> PseudoScores:
    """Pseudo-F-measure, pseudo-precision and pseudo-recall in percent.

    Pseudo-recall weighs each ground-truth ink pixel by GW; pseudo-precision counts each predicted ink
    pixel as 1 + (PW - 1).

    Raises:
        InputError: the masks or weight maps differ in shape.
    """
    g, p = _masks(gt, pred)
    rw = np.asarray(weights.recall, dtype=np.float64)
    pw = np.asarray(weights.precision, dtype=np.float64)
    if rw.shape != g.shape or pw.shape != g.shape:
        raise InputError(f"weight maps {rw.shape} / {pw.shape} do not match the page {g.shape}")
    hit = g & p
    false_alarm = p & ~g
    w_tp = float(rw[hit].sum())
    w_fn = float(rw[g & ~p].sum())
    p_tp = float(np.count_nonzero(hit)) + float(pw[hit].sum())
    p_fp = float(np.count_nonzero(false_alarm)) + float(pw[false_alarm].sum())
    prec = _ratio(p_tp, p_tp + p_fp)
    rec = _ratio(w_tp, w_tp + w_fn)
    return PseudoScores(_harmonic(prec, rec), prec, rec)


# --------------------------------------------------------------------------------------------------
# All metrics of a page
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """All metrics of one page; ``pfm`` and its parts are None without weight maps."""

    fm: float
    precision: float
    recall: float
    pfm: float | None
    pseudo_precision: float | None
    pseudo_recall: float | None
    psnr: float
    drd: float
    nrm: float
    mcc: float
    accuracy: float

    def as_dict(self) -> dict[str, float | None]:
        """Plain dict in :data:`KEYS` order (for JSON and CSV)."""
        d = asdict(self)
        return {k: d[k] for k in KEYS}


def evaluate(gt: np.ndarray, pred: np.ndarray, weights: PseudoWeights | None = None) -> Scores:
    """Score a binarized page against its ground truth.

    Args:
        gt: ground-truth ink mask (True = text).
        pred: predicted ink mask of the same shape.
        weights: pseudo-metric weight maps (from :func:`load_weights` or :func:`pseudo_weights`);
            without them the pseudo-metrics are None.

    Returns:
        The page's :class:`Scores`.

    Raises:
        InputError: the masks or weight maps differ in shape.
    """
    g, p = _masks(gt, pred)
    c = confusion(g, p)
    ps = pseudo_fmeasure(g, p, weights) if weights is not None else None
    return Scores(
        fm=fmeasure(c), precision=precision(c), recall=recall(c),
        pfm=ps.pfm if ps else None,
        pseudo_precision=ps.precision if ps else None,
        pseudo_recall=ps.recall if ps else None,
        psnr=psnr(c), drd=drd(g, p), nrm=nrm(c), mcc=mcc(c), accuracy=accuracy(c),
    )


def mean_scores(scores: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean of each metric over pages; a metric missing (None) on some pages is averaged over the rest,
    and is None when no page has it."""
    out: dict[str, float | None] = {}
    for k in KEYS:
        vals = [s[k] for s in scores if s.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


# --------------------------------------------------------------------------------------------------
# Pseudo-weight generation (Ntirogiannis, Gatos & Pratikakis 2013, as the DIBCO tool computes it)
# --------------------------------------------------------------------------------------------------
#
# The DIBCO weight files come from a tool whose details go beyond the paper (a particular thinning, ring
# searches limited to a component's bounding box, 8-bit arithmetic, in-place passes in component order).
# The steps below follow that behaviour so that the maps match the published files; the in-place passes
# are reduced to the few pixels whose result depends on the order, everything else is vectorised.

# Neighbour codes: bit k set when neighbour k is set, in the order N, NE, E, SE, S, SW, W, NW.
# Deletion table of the clean-up pass that follows Zhang-Suen thinning (Lee & Chen 1992, Table 1, in the
# variant that reproduces the DIBCO weight files): bit c of this number says "delete" for code c.
_CLEANUP_DELETE_BITS = 0x4850A0215B5B2020A0A0000020A020200A5AA0AA5B59A0AA20F0000020D06020
_CLEANUP_DELETE = np.array([(_CLEANUP_DELETE_BITS >> c) & 1 for c in range(256)], dtype=bool)

_NO_DISTANCE = 250  # background beyond every stroke's reach: precision weight 0
_UNREACHED = 65535


def _zhang_suen_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion look-up tables of the two Zhang-Suen (1984) sub-iterations, indexed by neighbour code."""
    first = np.zeros(256, dtype=bool)
    second = np.zeros(256, dtype=bool)
    for code in range(256):
        n, ne, e, se, s, sw, w, nw = ((code >> k) & 1 for k in range(8))
        ring = (n, ne, e, se, s, sw, w, nw, n)
        count = n + ne + e + se + s + sw + w + nw
        transitions = sum(1 for k in range(8) if not ring[k] and ring[k + 1])
        if not 2 <= count <= 6 or transitions != 1:
            continue
        first[code] = not (n and e and s) and not (e and s and w)
        second[code] = not (n and e and w) and not (n and s and w)
    return first, second


_ZS_FIRST, _ZS_SECOND = _zhang_suen_tables()


def _neighbour_offsets(stride: int) -> np.ndarray:
    return np.array([-stride, -stride + 1, 1, stride + 1, stride, stride - 1, -1, -stride - 1], np.int64)


def _codes(flat: np.ndarray, idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    code = np.zeros(idx.shape, np.uint8)
    for k, off in enumerate(offsets):
        code |= flat[idx + off] << np.uint8(k)
    return code


@dataclass
class _Components:
    """8-connected components numbered 1..n in the raster order of their first pixel."""

    labels: np.ndarray  # int32 H×W, 0 = not in the mask
    n: int
    y0: np.ndarray  # inclusive bounding boxes, indexed by label (entry 0 unused)
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    first: np.ndarray  # flat index of each component's first pixel


def _label(mask: np.ndarray) -> _Components:
    """Label 8-connected components from horizontal runs: runs touching in the next row are merged."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)
    row = row.astype(np.int64)
    start = start.astype(np.int64)
    end = stop.astype(np.int64) - 1
    runs = start.size
    empty = np.zeros(1, np.int64)
    if runs == 0:
        return _Components(np.zeros((h, w), np.int32), 0, empty, empty, empty, empty, empty)
    stride = w + 2
    start_key = row * stride + start
    end_key = row * stride + end
    # Runs of the next row that touch run a (8-connectivity: columns start-1 .. end+1) form a contiguous
    # range in raster order.
    lo = np.searchsorted(end_key, (row + 1) * stride + start - 1, "left")
    hi = np.searchsorted(start_key, (row + 1) * stride + end + 1, "right")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(runs), count)
    b = np.repeat(lo, count) + np.arange(a.size) - np.repeat(np.cumsum(count) - count, count)
    parent = np.arange(runs)
    while a.size:
        ra, rb = parent[a], parent[b]
        low = np.minimum(ra, rb)
        hooked = parent.copy()
        np.minimum.at(hooked, ra, low)
        np.minimum.at(hooked, rb, low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, parent):
            break
        parent = hooked
    # Each component's root is its smallest run index, i.e. the run holding its first pixel.
    roots, comp = np.unique(parent, return_inverse=True)
    comp = comp.astype(np.int64) + 1
    n = roots.size
    labels = np.zeros(h * w, np.int32)
    labels[np.flatnonzero(mask)] = np.repeat(comp, end - start + 1)
    big = np.iinfo(np.int64).max
    y0 = np.full(n + 1, big)
    x0 = np.full(n + 1, big)
    y1 = np.full(n + 1, -1, np.int64)
    x1 = np.full(n + 1, -1, np.int64)
    np.minimum.at(y0, comp, row)
    np.maximum.at(y1, comp, row)
    np.minimum.at(x0, comp, start)
    np.maximum.at(x1, comp, end)
    first = np.zeros(n + 1, np.int64)
    first[1:] = row[roots] * w + start[roots]
    return _Components(labels.reshape(h, w), n, y0, y1, x0, x1, first)


def _thin(layer: np.ndarray) -> np.ndarray:
    """Skeleton: parallel Zhang-Suen sub-iterations to a fixed point, then sequential clean-up passes.

    Pixels outside the page count as unset. Only the current boundary is examined in each sub-iteration.
    """
    h, w = layer.shape
    stride = w + 2
    grid = np.zeros((h + 2, stride), np.uint8)
    grid[1:-1, 1:-1] = layer
    flat = grid.ravel()
    offsets = _neighbour_offsets(stride)
    ink = np.flatnonzero(flat)
    frontier = ink[_codes(flat, ink, offsets) != 255]
    queued = np.zeros(flat.size, bool)
    queued[frontier] = True

    def sub_iteration(table: np.ndarray) -> bool:
        nonlocal frontier
        kill = table[_codes(flat, frontier, offsets)]
        if not kill.any():
            return False
        dead = frontier[kill]
        flat[dead] = 0
        queued[dead] = False
        exposed = (dead[:, None] + offsets[None, :]).ravel()
        exposed = np.unique(exposed[(flat[exposed] == 1) & ~queued[exposed]])
        queued[exposed] = True
        frontier = np.concatenate([frontier[~kill], exposed])
        return True

    while True:
        changed = sub_iteration(_ZS_FIRST)
        changed = sub_iteration(_ZS_SECOND) or changed
        if not changed:
            break

    # The clean-up pass deletes in raster order and each test sees the deletions before it: only
    # pixels that are deletable now, or whose earlier neighbours were just deleted, need a look.
    later = (1, stride - 1, stride, stride + 1)
    offs = offsets.tolist()
    while True:
        ink = np.flatnonzero(flat)
        todo = ink[_CLEANUP_DELETE[_codes(flat, ink, offsets)]].tolist()
        if not todo:
            break
        heapq.heapify(todo)
        removed = False
        last = -1
        while todo:
            i = heapq.heappop(todo)
            if i == last or not flat[i]:
                continue
            last = i
            code = 0
            for k, off in enumerate(offs):
                if flat[i + off]:
                    code |= 1 << k
            if _CLEANUP_DELETE[code]:
                flat[i] = 0
                removed = True
                for off in later:
                    if flat[i + off]:
                        heapq.heappush(todo, i + off)
        if not removed:
            break
    return grid[1:-1, 1:-1].astype(bool)


def _chessboard(seeds: np.ndarray, need: np.ndarray | None = None) -> np.ndarray:
    """Chessboard distance to the nearest seed (breadth-first), :data:`_UNREACHED` where none is reachable.

    With ``need``, stops once every pixel of ``need`` has its distance (the rest may stay unreached).
    """
    h, w = seeds.shape
    stride = w + 2
    dist = np.full((h + 2) * stride, _UNREACHED, np.int64)
    seen = np.ones((h + 2, stride), bool)
    seen[1:-1, 1:-1] = False
    seen = seen.ravel()
    front = np.flatnonzero(np.pad(seeds, 1).ravel())
    seen[front] = True
    dist[front] = 0
    wanted = None
    left = 0
    if need is not None:
        wanted = np.pad(need, 1).ravel()
        left = int(np.count_nonzero(wanted)) - int(np.count_nonzero(wanted[front]))
    offsets = _neighbour_offsets(stride)
    slot = np.zeros(dist.size, np.int64)
    r = 0
    while front.size and (wanted is None or left > 0):
        r += 1
        nb = (front[:, None] + offsets[None, :]).ravel()
        nb = nb[~seen[nb]]
        slot[nb] = np.arange(nb.size)
        nb = nb[slot[nb] == np.arange(nb.size)]  # drop duplicates without sorting
        seen[nb] = True
        dist[nb] = r
        if wanted is not None:
            left -= int(np.count_nonzero(wanted[nb]))
        front = nb
    return dist.reshape(h + 2, stride)[1:-1, 1:-1]


def _has_distance(d: np.ndarray) -> np.ndarray:
    return (d != 0) & (d < _NO_DISTANCE)


def _seed_empty_components(skeleton: np.ndarray, comps: _Components) -> None:
    """Give each component that thinned away one skeleton pixel: its rounded centroid if that lies on
    the component, else its first pixel."""
    if comps.n == 0:
        return
    h, w = skeleton.shape
    lab = comps.labels.ravel()
    has = np.zeros(comps.n + 1, bool)
    has[lab[skeleton.ravel() & (lab > 0)]] = True
    missing = np.flatnonzero(~has[1:]) + 1
    if missing.size == 0:
        return
    pix = np.flatnonzero(np.isin(lab, missing))
    own = lab[pix]
    cnt = np.bincount(own, minlength=comps.n + 1)
    sx = np.bincount(own, weights=pix % w, minlength=comps.n + 1)
    sy = np.bincount(own, weights=pix // w, minlength=comps.n + 1)
    for c in missing.tolist():
        cx = math.floor(sx[c] / cnt[c] + 0.5)
        cy = math.floor(sy[c] / cnt[c] + 0.5)
        if 0 <= cx < w and 0 <= cy < h and comps.labels[cy, cx] == c:
            skeleton[cy, cx] = True
        else:
            skeleton.flat[comps.first[c]] = True


def _clamped_neighbours(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Up, down, left, right neighbour values; at the page edge a missing neighbour is the pixel itself."""
    p = np.pad(a, 1, mode="edge")
    return p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]


def _raise_flat_ridges(d: np.ndarray, skeleton: np.ndarray) -> None:
    """In place: a skeleton pixel whose distance equals all four neighbours' is raised by one.

    The tool runs this in place in raster order, so a raised up or left neighbour no longer equals it;
    raising never makes a later pixel qualify, so only the initial candidates need a sequential look.
    """
    h, w = d.shape
    up, down, left, right = _clamped_neighbours(d)
    cand = np.flatnonzero(_has_distance(d) & skeleton & (up == d) & (down == d) & (left == d) & (right == d))
    raised: set[int] = set()
    for i in cand.tolist():
        y, x = divmod(i, w)
        if (y > 0 and i - w in raised) or (x > 0 and i - 1 in raised):
            continue
        raised.add(i)
    if raised:
        d.flat[np.fromiter(raised, np.int64)] += 1


def _nearest_ring(centers: np.ndarray, comp: np.ndarray, comps: _Components, target: np.ndarray,
                  lower: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each centre, the target pixels at the smallest chessboard distance inside the bounding box of
    the centre's component.

    Returns:
        (radius per centre, -1 where the box holds no target; centre index of each pair; flat index of
        each pair's target pixel).
    """
    n = centers.size
    radius = np.full(n, -1, np.int64)
    cy, cx = centers // w, centers % w
    by0, by1 = comps.y0[comp], comps.y1[comp]
    bx0, bx1 = comps.x0[comp], comps.x1[comp]
    reach = np.maximum.reduce([cx - bx0, bx1 - cx, cy - by0, by1 - cy])
    tflat = target.ravel()
    found_c: list[np.ndarray] = []
    found_q: list[np.ndarray] = []
    r_try = np.minimum(np.maximum(lower, 0), reach)
    active = np.arange(n)
    while active.size:
        r = int(r_try[active].min())
        now = r_try[active] == r
        group, active = active[now], active[~now]
        if r == 0:
            dy = np.zeros(1, np.int64)
            dx = np.zeros(1, np.int64)
        else:
            k = np.arange(-r, r + 1)
            inner = k[1:-1]
            dy = np.concatenate([np.full(k.size, -r), np.full(k.size, r), inner, inner])
            dx = np.concatenate([k, k, np.full(inner.size, -r), np.full(inner.size, r)])
        flat_off = dy * w + dx
        hit_any = np.zeros(group.size, bool)
        # A ring wholly inside the box needs no clipping: one gather per cell.
        inside = (cy[group] - r >= by0[group]) & (cy[group] + r <= by1[group]) & \
                 (cx[group] - r >= bx0[group]) & (cx[group] + r <= bx1[group])
        chunk = max(1, 2_000_000 // flat_off.size)
        for sel in (np.flatnonzero(inside), np.flatnonzero(~inside)):
            for s0 in range(0, sel.size, chunk):
                part = sel[s0:s0 + chunk]
                g = group[part]
                if inside[part[0]]:
                    q = centers[g][:, None] + flat_off[None, :]
                    ok = tflat[q]
                else:
                    yy = cy[g][:, None] + dy[None, :]
                    xx = cx[g][:, None] + dx[None, :]
                    ok = (yy >= by0[g][:, None]) & (yy <= by1[g][:, None]) & \
                         (xx >= bx0[g][:, None]) & (xx <= bx1[g][:, None])
                    q = yy * w + xx
                    ok[ok] = tflat[q[ok]]
                gi, oi = np.nonzero(ok)
                found_c.append(g[gi])
                found_q.append(q[gi, oi])
                hit_any[part] = ok.any(axis=1)
        radius[group[hit_any]] = r
        miss = group[~hit_any]
        miss = miss[reach[miss] > r]  # a ring that already covers the whole box ends the search
        r_try[miss] = r + 1
        active = np.concatenate([active, miss])
    pc = np.concatenate(found_c) if found_c else np.zeros(0, np.int64)
    pq = np.concatenate(found_q) if found_q else np.zeros(0, np.int64)
    return radius, pc, pq


def _ordered_centers(d: np.ndarray, comps: _Components) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with a distance, in component then raster order (the order of the tool's passes)."""
    lab = comps.labels.ravel()
    centers = np.flatnonzero(_has_distance(d).ravel() & (lab > 0))
    comp = lab[centers].astype(np.int64)
    order = np.argsort(comp * lab.size + centers, kind="stable")
    return centers[order], comp[order]


def _endpoint_inherit(factor: np.ndarray, skeleton: np.ndarray, comps: _Components) -> None:
    """In place: a skeleton end point (exactly one skeleton neighbour) takes that neighbour's factor + 1.

    Neighbours are clamped at the page edge (an edge pixel counts itself). For the lower-right neighbour
    the tool reads the factor at column 0 or 1 of the next row instead of the neighbour's column; this
    is kept because the published weight files depend on it.
    """
    h, w = skeleton.shape
    sk = skeleton.ravel()
    idx = np.flatnonzero(sk)
    if idx.size == 0:
        return
    y, x = idx // w, idx % w
    left = np.where(x > 0, -1, 0)
    right = np.where(x < w - 1, 1, 0)
    up = np.where(y > 0, -1, 0)
    down = np.where(y < h - 1, 1, 0)
    probes = (
        ((y + up) * w + x, None),
        ((y + down) * w + x, None),
        (y * w + x + left, None),
        (y * w + x + right, None),
        ((y + up) * w + x + left, None),
        ((y + down) * w + x + right, (y + down) * w + right),
        ((y + down) * w + x + left, None),
        ((y + up) * w + x + right, None),
    )
    count = np.zeros(idx.size, np.int64)
    source = np.full(idx.size, -1, np.int64)
    for where, read in probes:
        on = sk[where]
        count += on
        source = np.where(on, where if read is None else read, source)
    end = count == 1
    ends, src = idx[end], source[end]
    if ends.size == 0:
        return
    lab = comps.labels.ravel()
    order = np.argsort(lab[ends].astype(np.int64) * lab.size + ends, kind="stable")
    ends, src = ends[order], src[order]
    rank = np.full(sk.size, -1, np.int64)
    rank[ends] = np.arange(ends.size)
    # An end point reading another end point that was already updated must wait for it; all others
    # read the factor as it was before the pass.
    waits = (rank[src] >= 0) & (rank[src] < np.arange(ends.size))
    value = factor[src[~waits]]
    take = value > 0
    factor[ends[~waits][take]] = (value[take] + 1) & 0xFF
    for i, s in zip(ends[waits].tolist(), src[waits].tolist(), strict=True):
        v = int(factor[s])
        if v > 0:
            factor[i] = (v + 1) & 0xFF


def _spread_along_stroke(norm: np.ndarray, centers: np.ndarray, h: int, w: int) -> None:
    """In place: a centre whose value differs from all four (non-zero) neighbours takes its left
    neighbour's value, in raster order, each test seeing the updates before it."""
    is_center = np.zeros(h * w, bool)
    is_center[centers] = True
    up, down, left, right = _clamped_neighbours(norm.reshape(h, w))
    c = norm.reshape(h, w)
    ok = (up != 0) & (down != 0) & (left != 0) & (right != 0) & (c != up) & (c != down) & (c != left) & \
         (c != right)
    todo = np.flatnonzero(ok.ravel() & is_center).tolist()
    heapq.heapify(todo)
    last = -1
    while todo:
        i = heapq.heappop(todo)
        if i == last:
            continue
        last = i
        y, x = divmod(i, w)
        v = norm[i]
        u = norm[i - w] if y > 0 else v
        dn = norm[i + w] if y < h - 1 else v
        lf = norm[i - 1] if x > 0 else v
        rt = norm[i + 1] if x < w - 1 else v
        if u and dn and lf and rt and v != u and v != dn and v != lf and v != rt:
            norm[i] = lf
            for j in (i + 1, i + w):
                if j < h * w and is_center[j]:
                    heapq.heappush(todo, j)


def _medial_normalization(d: np.ndarray, skeleton: np.ndarray, contour: np.ndarray,
                          comps: _Components) -> tuple[np.ndarray, np.ndarray]:
    """Per-skeleton stroke factor and the normalisation NR of each pixel with a distance (Eq. 3).

    Returns:
        (factor, norm) as flat int64 arrays.
    """
    h, w = d.shape
    has = _has_distance(d)
    to_skel = _chessboard(skeleton, need=has)
    reach_map = np.where(skeleton & ~contour, 1, to_skel & 0xFF).ravel()
    factor = skeleton.astype(np.int64).ravel()
    centers, comp = _ordered_centers(d, comps)
    lower = to_skel.ravel()[centers]
    radius, pc, pq = _nearest_ring(centers, comp, comps, skeleton, np.where(lower >= _UNREACHED, 0, lower), w)
    df = d.ravel()
    # Every centre writes the skeleton pixels on its ring; the last centre in pass order wins.
    by_target = np.lexsort((pc, pq))
    tq, tc = pq[by_target], pc[by_target]
    last = np.ones(tq.size, bool)
    last[:-1] = tq[1:] != tq[:-1]
    tq, tc = tq[last], tc[last]
    dq = df[tq]
    factor[tq] = np.where(reach_map[centers[tc]] >= dq, dq + 1, dq) & 0xFF
    _endpoint_inherit(factor, skeleton, comps)
    best = np.full(centers.size, -1, np.int64)
    np.maximum.at(best, pc, df[pq] * factor[pq])
    norm = np.zeros(h * w, np.int64)
    norm[centers] = np.where(radius >= 0, best, 0)
    _spread_along_stroke(norm, centers, h, w)
    return factor, norm


def pseudo_weights(gt: np.ndarray) -> PseudoWeights:
    """Compute the pseudo-recall and pseudo-precision weight maps of a ground-truth page.

    Follows Ntirogiannis, Gatos & Pratikakis (IEEE TIP 2013) as implemented by the DIBCO evaluation tool:
    skeleton of the text, distance from the text contour, stroke-width normalisation along the skeleton
    for the recall weights; the same on the background skeleton, limited to each component's stroke
    reach and to the gap between neighbouring components, for the precision weights. On the DIBCO
    conformance page the result equals the published ``.dat`` files to their six printed decimals.
    Costs a few seconds per megapixel, far more than the metrics themselves.

    Args:
        gt: ground-truth ink mask (True = text).

    Returns:
        :class:`PseudoWeights` with ``source="generated"``.
    """
    g = np.asarray(gt, dtype=bool)
    if g.ndim != 2:
        raise InputError(f"ground truth must be 2-D, got shape {g.shape}")
    h, w = g.shape
    size = h * w
    # ---- recall weights: GW = D / NR on the text
    comps = _label(g)
    pad = np.pad(g, 1)
    contour = g & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
    skeleton = _thin(g)
    _seed_empty_components(skeleton, comps)
    to_contour = _chessboard(contour)
    d = np.where(g, np.where(contour & skeleton, 1, to_contour & 0xFF), 0).astype(np.int64)
    _raise_flat_ridges(d, skeleton)
    factor, norm = _medial_normalization(d, skeleton, contour, comps)
    df = d.ravel()
    rw = np.zeros(size)
    ok = (df != 0) & (norm != 0)
    rw[ok] = df[ok] / norm[ok]

    # ---- stroke width of each component: twice the mean factor over its skeleton
    lab = comps.labels.ravel()
    on = skeleton.ravel() & (lab > 0)
    total = np.bincount(lab[on], weights=factor[on], minlength=comps.n + 1).astype(np.int64)
    count = np.bincount(lab[on], minlength=comps.n + 1)
    width = np.where(count > 0, (total // np.maximum(count, 1)) * 2, 0)

    # ---- precision weights: PW - 1 = min(Dp / NP, 2) on the background near the text
    width_on_contour = np.where(contour, width[comps.labels] & 0xFF, 0).ravel()
    region = np.zeros((h + 1, w + 1), np.int64)
    if comps.n:
        m = 2 * width[1:]
        ry0 = np.clip(comps.y0[1:] - m, 0, h - 1)
        ry1 = np.clip(comps.y1[1:] + m, 0, h - 1)
        rx0 = np.clip(comps.x0[1:] - m, 0, w - 1)
        rx1 = np.clip(comps.x1[1:] + m, 0, w - 1)
        np.add.at(region, (ry0, rx0), 1)
        np.add.at(region, (ry0, rx1 + 1), -1)
        np.add.at(region, (ry1 + 1, rx0), -1)
        np.add.at(region, (ry1 + 1, rx1 + 1), 1)
    region = (region.cumsum(0).cumsum(1)[:h, :w] > 0) & ~g
    bg = ~g
    bcomps = _label(bg)
    inner = bg.copy()
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    bskeleton = _thin(inner)
    _seed_empty_components(bskeleton, bcomps)
    dp = np.where(g, 0, np.where(region, to_contour & 0xFF, _NO_DISTANCE)).astype(np.int64)
    _raise_flat_ridges(dp, bskeleton)
    _, np_raw = _medial_normalization(dp, bskeleton, np.zeros_like(g), bcomps)
    dpf = dp.ravel()
    centers, comp = _ordered_centers(dp, bcomps)
    npv = np.floor(np.sqrt(np_raw[centers]) + 0.5).astype(np.int64)
    # Stroke reach of the nearest text contour, and whether that ring touches two components.
    lower = to_contour.ravel()[centers]
    radius, pc, pq = _nearest_ring(centers, comp, bcomps, contour, np.where(lower >= _UNREACHED, 0, lower), w)
    reach = np.full(centers.size, -1, np.int64)
    np.maximum.at(reach, pc, width_on_contour[pq])
    plab = lab[pq].astype(np.int64)
    lmin = np.full(centers.size, np.iinfo(np.int64).max)
    lmax = np.full(centers.size, -1, np.int64)
    np.minimum.at(lmin, pc, plab)
    np.maximum.at(lmax, pc, plab)
    found = radius >= 0
    dpc = dpf[centers]
    within = found & (dpc <= reach)
    merge = np.zeros(size, np.int64)
    merge[centers] = np.where(within & (lmax > lmin), npv, 0) & 0xFF
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = (merge.reshape(h, w) != 0).cumsum(0).cumsum(1)
    cy, cx = centers // w, centers % w
    gap = np.where(within, reach - dpc, 0)
    ya, yb = np.clip(cy - gap, 0, h - 1), np.clip(cy + gap, 0, h - 1)
    xa, xb = np.clip(cx - gap, 0, w - 1), np.clip(cx + gap, 0, w - 1)
    merges_near = sat[yb + 1, xb + 1] - sat[ya, xb + 1] - sat[yb + 1, xa] + sat[ya, xa]
    merging = (gap > 0) & (merges_near > 0)
    npf = np.where(within, np.where(merging & (npv < reach), npv, reach) & 0xFF, 0)
    pw = np.zeros(size)
    take = npf != 0
    pw[centers[take]] = np.minimum(dpf[centers[take]] / npf[take], 2.0)
    return PseudoWeights(rw.reshape(h, w), pw.reshape(h, w), "generated")

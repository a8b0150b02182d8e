"""Morphology for the band search: square minimum and maximum filters by doubling, and what is built on them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def slide(a: np.ndarray, k: int, axis: int, op: Callable[..., np.ndarray], lo: int,
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


def square_filter(a: np.ndarray, k: int, op: Callable[..., np.ndarray], fill: float | bool | None = None,
                  reflect: bool = False) -> np.ndarray:
    """A k×k minimum or maximum filter (``reflect``: the window mirrored, for the second half of an opening
    or closing with an even ``k``)."""
    lo = -(k - 1 - k // 2) if reflect else -(k // 2)
    return slide(slide(a, k, 0, op, lo, fill), k, 1, op, lo, fill)


def grey_open(a: np.ndarray, k: int) -> np.ndarray:
    """Grey opening by a k×k square: light features narrower than k removed."""
    return square_filter(square_filter(a, k, np.minimum), k, np.maximum, reflect=True)


def grey_close(a: np.ndarray, k: int) -> np.ndarray:
    """Grey closing by a k×k square: dark features narrower than k removed."""
    return square_filter(square_filter(a, k, np.maximum), k, np.minimum, reflect=True)


def open_mask(mask: np.ndarray, side: int) -> np.ndarray:
    """Binary opening by a ``side``-pixel square: the union of all such squares that fit in the mask."""
    return square_filter(square_filter(mask, side, np.minimum, False), side, np.maximum, False, reflect=True)


def fill_holes(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The mask with its holes filled (what is not in it and not connected to the window's border), and the
    largest hole's area: one labelling (scipy's ``binary_fill_holes`` grows from the border step by step)."""
    from scipy import ndimage

    labels, _ = ndimage.label(~mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = ~np.isin(labels, edge[edge > 0]) & (labels > 0)
    largest = int(np.bincount(labels[holes]).max()) if holes.any() else 0
    return mask | holes, largest


def grow(mask: np.ndarray, r: int) -> np.ndarray:
    """A mask grown by ``r`` pixels (a square's reach)."""
    return square_filter(mask, 2 * r + 1, np.maximum, False)

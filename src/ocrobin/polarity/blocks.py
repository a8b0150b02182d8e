"""The page on a grid of blocks: the percentiles that say which way its strokes go, and reduced copies."""

from __future__ import annotations

import math

import numpy as np

#: Side of the analysis blocks in pixels.
BLOCK = 32
#: Pixels the model looks at when it confirms a decision (the area is reduced to this size).
CHECK_PIXELS = 400_000
#: Percentiles measured in each block.
PERCENTILES = (2, 25, 50, 75, 98)


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

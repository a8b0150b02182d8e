"""Where a page with a reverse-printed band loses, and what inference could win back with a perfect band box.

On the synthetic band pages of ``benchmarks/polarity.py`` (same seed, same pages), the band's box is known
exactly (where the page with the band differs from the same page without it). Each row is one way of
putting a result together, scored against the page's ground truth and counted as within 1 FM of the
page without the band (the target of ``--polarity auto``):

* ``auto``: ``--polarity auto`` as shipped;
* ``inside perfect`` / ``outside perfect``: the band page's result with the pixels inside (outside) the box
  taken from the page without the band: how much of the loss lies on each side of the band's edge;
* ``box inverted``: outside as the model reads the band page, inside from the model on the box alone,
  inverted;
* ``filled + as is`` / ``filled + inverted``: outside from the page with the box filled with the paper's
  median grey (so the band cannot disturb the model's view of the paper around it), inside as the model
  reads the band page, or from the inverted page with everything outside the box set to the band's
  inverted ground;
* ``best of the two filled``: per page, the better of the two (an upper bound of choosing between them);
* ``inverted in place, two norms``: the whole page through the model once, the box inverted in place and
  contrast-normalised on its own, the rest normalised without the box's pixels (the model's page
  normalisation, measured apart for the two parts, instead of once over the page).

    .venv/bin/python benchmarks/band_oracle.py ../shared/data/val ../shared/data/train [-m MODEL] [--bands 40]
"""

from __future__ import annotations

import copy
import os
import sys
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ocrobin.datasets import find_pairs
from ocrobin.metrics import fmeasure
from ocrobin.models import apply_page_norm, page_norm_mapping


def band_box(with_band: np.ndarray, without: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of where the two pages differ by more than 40 grey levels (opened by 5×5)."""
    a = with_band.mean(axis=2) if with_band.ndim == 3 else with_band
    b = without.mean(axis=2) if without.ndim == 3 else without
    d = ndimage.binary_opening(np.abs(a.astype(np.float32) - b.astype(np.float32)) > 40, np.ones((5, 5), bool))
    ys, xs = np.nonzero(d)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def main() -> None:
    from polarity import band_args, band_pages

    args, auto, normal = band_args(__doc__)
    pairs = [p for root in args.data for p in find_pairs(root) if p.img is not None and p.gt is not None]
    names = ["auto", "inside perfect", "outside perfect", "box inverted", "filled + as is", "filled + inverted",
             "best of the two filled", "inverted in place, two norms"]
    spec = normal.page_norm
    raw = copy.copy(normal)  # the same model without its page normalisation: it gets pages normalised here
    raw.info = copy.copy(normal.info)
    raw.info.meta = {k: v for k, v in normal.info.meta.items() if k != "page_norm"}
    rows = []
    for img_b, img_n, ink in band_pages(args.bands, args.seed, [str(p.gt) for p in pairs]):
        y0, y1, x0, x1 = band_box(img_b, img_n)
        box = np.zeros(ink.shape, bool)
        box[y0:y1, x0:x1] = True
        grey = (img_b.mean(axis=2) if img_b.ndim == 3 else img_b).astype(np.float32)
        ring = ndimage.binary_dilation(box, iterations=30) & ~box
        paper, ground = float(np.median(grey[ring])), float(np.median(grey[box]))
        filled = grey.copy()
        filled[box] = paper
        inv = 255 - grey
        inv[~box] = 255 - ground

        def mask(page: np.ndarray, b: Any = normal) -> np.ndarray:
            return b.run(np.clip(page, 0, 255).astype(np.uint8)).ink_mask()

        without = mask(img_n, auto)
        as_is = mask(img_b)
        crop = as_is.copy()
        crop[y0:y1, x0:x1] = mask(255 - grey[y0:y1, x0:x1])
        m_fill, m_inv = mask(filled), mask(inv)
        g1 = torch.from_numpy(grey / 255)
        two = apply_page_norm(g1, page_norm_mapping(grey[~box][None] / 255, spec)).numpy()
        inside = torch.from_numpy(1 - grey[box] / 255)
        two[box] = apply_page_norm(inside, page_norm_mapping(inside.numpy()[None], spec)).numpy()
        m_two = mask(np.round(two * 255), raw)
        f = [fmeasure(ink, m) for m in (
            mask(img_b, auto), np.where(box, without, as_is), np.where(box, as_is, without), crop,
            np.where(box, as_is, m_fill), np.where(box, m_inv, m_fill))]
        rows.append([fmeasure(ink, without)] + f + [max(f[4], f[5]), fmeasure(ink, m_two)])
    a = np.array(rows)
    print(f"{len(rows)} band pages; without band: mean FM {a[:, 0].mean():.2f}")
    for j, name in enumerate(names, start=1):
        print(f"{name:30s} mean FM {a[:, j].mean():6.2f}   within 1 FM of the page without band: "
              f"{int((a[:, j] >= a[:, 0] - 1).sum())} of {len(rows)}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main()

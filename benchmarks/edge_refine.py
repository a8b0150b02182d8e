"""Where stroke edges should sit: the model's mask against edges re-placed by the page's own grey levels.

On clean pages a plain threshold beats the model by about 1 FM on edge pixels alone (the model issue,
and ``benchmarks/error_classes.py``'s ``clean`` set). This measures an inference-side answer: keep the
model's decision of *where* the strokes are, and re-decide only the pixels within 1 px of a stroke's
edge by the local grey levels: ink where the grey is below ``ink + alpha × (paper − ink)``, with ``ink``
and ``paper`` the mean grey of the model's ink and non-ink pixels in a window of ``2w + 1`` pixels, and
only where that local contrast exceeds ``c`` grey levels. ``alpha`` 0.5 puts the edge at the half-way
grey (where a rendered stroke's ground truth has it); larger values draw strokes thicker.

Prints FM per set for the model and each variant, and the mean over sets. Judge a variant by sets the
model was not trained on (val, SMADI_MSI2015, the synthetic class sets), one left out at a time.

    .venv/bin/python benchmarks/edge_refine.py ../shared/data/val ../shared/data/train [runs/classes/sets/clean]
        [-m MODEL] [--threads 2]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from scipy import ndimage

from ocrobin.datasets import find_pairs
from ocrobin.imageio import iter_pages, read_ground_truth
from ocrobin.infer import Binarizer
from ocrobin.metrics import fmeasure

#: (w, alpha, c) of the variants measured.
VARIANTS = [(w, a, c) for w in (7, 15) for a in (0.5, 0.65) for c in (0, 80)]


def refined(grey: np.ndarray, ink: np.ndarray, w: int, alpha: float, c: float) -> np.ndarray:
    """``ink`` with the pixels within 1 px of its edges re-decided by the local grey levels (see above)."""
    g = grey.astype(np.float32)
    size = 2 * w + 1

    def mean(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a.astype(np.float32), size=size, mode="nearest")

    n_ink, n_paper = mean(ink), mean(~ink)
    level_ink = mean(ink * g) / np.maximum(n_ink, 1e-6)
    level_paper = mean(~ink * g) / np.maximum(n_paper, 1e-6)
    ring = ndimage.binary_dilation(ink) & ~ndimage.binary_erosion(ink)
    use = ring & (n_ink > 0.02) & (n_paper > 0.02) & (level_paper - level_ink > c)
    return np.where(use, g < level_ink + alpha * (level_paper - level_ink), ink)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="DIBCO-style sets or folders of sets")
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = Binarizer(args.model)
    names = ["model"] + [f"w{w} a{a:g} c{c:g}" for w, a, c in VARIANTS]
    fm: dict[str, list[list[float]]] = defaultdict(list)
    for root in args.data:
        for p in find_pairs(root):
            if p.img is None or p.gt is None:
                continue
            page = next(iter_pages(p.img)).data
            grey = page if page.ndim == 2 else page.mean(axis=2)
            gt = read_ground_truth(p.gt)
            ink = b.run(page).ink_mask()
            fm[p.set].append([fmeasure(gt, ink)] + [fmeasure(gt, refined(grey, ink, *v)) for v in VARIANTS])
    print(f"{'set':16s}" + "".join(f"{n:>15s}" for n in names))
    means = []
    for s, rows in fm.items():
        m = np.mean(rows, axis=0)
        means.append(m)
        print(f"{s:16s}" + "".join(f"{x:15.2f}" for x in m))
    print(f"{'mean of sets':16s}" + "".join(f"{x:15.2f}" for x in np.mean(means, axis=0)))


if __name__ == "__main__":
    main()

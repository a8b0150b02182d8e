"""Automatic polarity on real and synthetic pages: what ``--polarity auto`` costs and buys.

Three measurements, all with one model and its usual cut (0.5):

1. every page of the DIBCO-style sets given: FM with ``auto`` against ``normal`` (must be identical: normal
   pages lose nothing) and the page's decision;
2. the same pages inverted (negatives): FM with ``auto`` against the upright page's (target: within 0.5);
3. synthetic pages made by ``ocrobin degrade`` (default preset) with an ``inverted_band`` and, from the same
   seed, without it: FM with ``auto`` (target: at least the page without the band − 1), and with ``normal``.

    .venv/bin/python benchmarks/polarity.py ../shared/data/val ../shared/data/train [-m MODEL] [--bands 40]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch

from ocrobin import degrade as D
from ocrobin.datasets import find_pairs
from ocrobin.imageio import iter_pages, read_ground_truth
from ocrobin.infer import Binarizer
from ocrobin.metrics import fmeasure
from ocrobin.polarity import find_bands


def band_pages(n: int, seed: int, truths: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(page with band, page without, ground truth) for ``n`` seeds: ground truth of real pages re-degraded
    (half) or rendered pages, default preset, the band forced on in the first."""
    source = D.PageSource(pairs=truths, render_fraction=0.5)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        clean, info = source.page(rng, (int(rng.integers(600, 1200)), int(rng.integers(600, 1200))))
        params = D.draw_params(rng, clean.shape, "default", disable=["inverted", "inverted_band"])
        band = copy.deepcopy(params)
        band["effects"]["inverted_band"] = D.draw_params(rng, clean.shape, only=["inverted_band"])["effects"][
            "inverted_band"]
        verso = source.verso(rng, clean.shape, info)
        state = rng.bit_generator.state
        img_b, ink, _ = D.degrade(clean, rng, band, verso=verso)
        rng.bit_generator.state = state
        img_n, ink_n, _ = D.degrade(clean, rng, params, verso=verso)
        assert np.array_equal(ink, ink_n)
        out.append((img_b, img_n, ink))
    return out


def band_args(doc: str) -> tuple[argparse.Namespace, Binarizer, Binarizer]:
    """The command line shared with ``band_oracle.py``: (arguments, ``auto`` and ``normal`` binarizers)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="DIBCO-style sets or folders of sets")
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--bands", type=int, default=40, help="synthetic pages with an inverted band (default 40)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, Binarizer(args.model, polarity="auto"), Binarizer(args.model, polarity="normal")


def main() -> None:
    from band_oracle import band_box

    args, auto, normal = band_args(__doc__)

    def fm(b: Binarizer, page: np.ndarray, gt: np.ndarray) -> tuple[float, str]:
        r = b.run(page)
        return fmeasure(gt, r.ink_mask()), r.polarity

    pairs = [p for root in args.data for p in find_pairs(root) if p.img is not None and p.gt is not None]
    t0 = time.perf_counter()
    changed, far, rows = 0, [], []
    for p in pairs:
        page = next(iter_pages(p.img)).data
        gt = read_ground_truth(p.gt)
        fa, da = fm(auto, page, gt)
        fn, _ = fm(normal, page, gt)
        fi, di = fm(auto, (255 - page) if page.dtype == np.uint8 else (1.0 - page), gt)
        changed += fa != fn
        rows.append((f"{p.set}/{p.stem}", fa, fn, fi, da, di))
        if abs(fi - fa) > 0.5:
            far.append(rows[-1])
    n = len(rows)
    print(f"{n} pages ({time.perf_counter() - t0:.0f} s)")
    print(f"upright, auto vs normal: {n - changed} of {n} identical FM; decisions: "
          f"{sum(r[4] == 'normal' for r in rows)} normal")
    print(f"inverted, auto: {sum(r[5] == 'inverted' for r in rows)} of {n} decided inverted; "
          f"{n - len(far)} of {n} within 0.5 FM of upright (mean |diff| "
          f"{np.mean([abs(r[3] - r[1]) for r in rows]):.3f}, max {max(abs(r[3] - r[1]) for r in rows):.3f})")
    for r in far:
        print(f"  {r[0]}: upright {r[1]:.2f}, inverted {r[3]:.2f} (decided {r[5]})")
    if args.bands:
        truths = [str(p.gt) for p in pairs]
        ok, rows_b = 0, []
        for img_b, img_n, ink in band_pages(args.bands, args.seed, truths):
            fb, db = fm(auto, img_b, ink)
            fbn, _ = fm(normal, img_b, ink)
            f0, _ = fm(auto, img_n, ink)
            gray = img_b.mean(axis=2).astype(np.uint8) if img_b.ndim == 3 else img_b
            rows_b.append((fb, fbn, f0, db, band_box(img_b, img_n), find_bands(gray)))
            ok += fb >= f0 - 1.0
        a = np.array([r[:3] for r in rows_b])
        print(f"{len(rows_b)} synthetic pages with an inverted band: auto FM >= page without band - 1 on {ok}; "
              f"mean FM with band auto {a[:, 0].mean():.2f}, normal {a[:, 1].mean():.2f}, without band "
              f"{a[:, 2].mean():.2f}; regions found on {sum(r[3] == 'inverted-regions' for r in rows_b)}")
        for j, (fb, fbn, f0, db, drawn, found) in enumerate(rows_b):
            if fb < f0 - 1.0:
                print(f"  band page {j}: auto {fb:.2f} ({db}), normal {fbn:.2f}, without band {f0:.2f}; band drawn "
                      f"at {drawn}, found: {', '.join(map(str, found)) or 'none'}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main()

"""Time the evaluation metrics on a synthetic 10-megapixel page.

Prints the time of :func:`ocrobin.metrics.evaluate` (all metrics, pseudo-F-measure included, with the
weight maps already in memory), of DRD alone, and of :func:`ocrobin.metrics.pseudo_weights` (generating
the weight maps from the ground truth, done once per ground-truth page).

    .venv/bin/python benchmarks/metrics_speed.py [--width 3200 --height 3200 --repeat 5 --skip-weights]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image, ImageDraw

from ocrobin import metrics


def synthetic_page(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A text-like ground truth (lines of stroke 'words') and a plausible prediction of it."""
    rng = np.random.default_rng(seed)
    img = Image.new("1", (width, height), 1)
    draw = ImageDraw.Draw(img)
    line_h = 60
    for top in range(80, height - 80, line_h):
        x = 60
        while x < width - 200:
            word = int(rng.integers(40, 200))
            for _ in range(word // 12):
                x0 = x + int(rng.integers(0, word))
                y0 = top + int(rng.integers(5, 30))
                x1 = x0 + int(rng.integers(-10, 14))
                y1 = y0 + int(rng.integers(8, 28))
                draw.line((x0, y0, x1, y1), fill=0, width=int(rng.integers(2, 6)))
                if rng.random() < 0.3:
                    r = int(rng.integers(4, 10))
                    draw.ellipse((x0, y0, x0 + r, y0 + r), outline=0, width=2)
            x += word + int(rng.integers(20, 45))
    gt = ~np.asarray(img, dtype=bool)
    # Prediction: ground truth shifted by a pixel, with speckle noise and a few dropped pixels.
    pred = np.roll(gt, 1, axis=1)
    pred ^= rng.random(gt.shape) < 0.002
    pred &= rng.random(gt.shape) > 0.01
    return gt, pred


def timed(fn, repeat: int) -> tuple[float, object]:
    best = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best.append(time.perf_counter() - t0)
    return statistics.median(best), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=3200)
    ap.add_argument("--height", type=int, default=3200)
    ap.add_argument("--repeat", type=int, default=5, help="runs of the metrics; the median is printed")
    ap.add_argument("--skip-weights", action="store_true",
                    help="do not time weight generation (use random weight maps for the metrics)")
    args = ap.parse_args()

    gt, pred = synthetic_page(args.width, args.height)
    mp = gt.size / 1e6
    print(f"page {args.width}×{args.height} = {mp:.2f} MP, text {gt.mean() * 100:.1f} %, "
          f"flipped {np.count_nonzero(gt != pred) / gt.size * 100:.2f} %")
    if args.skip_weights:
        rng = np.random.default_rng(1)
        weights = metrics.PseudoWeights(rng.random(gt.shape) * gt, rng.random(gt.shape) * 2, "random")
    else:
        t, weights = timed(lambda: metrics.pseudo_weights(gt), 1)
        print(f"pseudo_weights (generate GW/PW from the ground truth): {t:.2f} s/page ({t / mp:.2f} s/MP)")
    t, scores = timed(lambda: metrics.evaluate(gt, pred, weights), args.repeat)
    print(f"evaluate (all metrics incl. pFM, DRD): {t:.3f} s/page (median of {args.repeat})")
    t, _ = timed(lambda: metrics.drd(gt, pred), args.repeat)
    print(f"drd alone: {t:.3f} s/page")
    t, _ = timed(lambda: metrics.confusion(gt, pred), args.repeat)
    print(f"confusion counts alone: {t:.3f} s/page")
    s = scores.as_dict()
    print("scores: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items() if v is not None))


if __name__ == "__main__":
    main()

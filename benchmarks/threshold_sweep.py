"""F-measure of one model at several ink thresholds, per set of DIBCO-style pages.

Finds the threshold to calibrate a model with (``ocrobin export CKPT --release OUT --threshold T``): run
it on training pages, never on the pages you report. Each page is binarized once; its ink probability is
then cut at every threshold. Prints one row per set (mean FM over its pages), the mean over sets (each
set counts once, whatever its size) and the best threshold of that mean.

    .venv/bin/python benchmarks/threshold_sweep.py -m MODEL DATA [DATA ...] [--thresholds 0.3,0.4,0.5]
        [--exclude SET ...] [--threads 2]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from ocrobin.datasets import find_pairs
from ocrobin.imageio import read_gray, read_ground_truth
from ocrobin.infer import Binarizer
from ocrobin.metrics import confusion, fmeasure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="DIBCO-style sets or folders of sets")
    ap.add_argument("-m", "--model", default="default", help="model name or file (default: default)")
    ap.add_argument("--thresholds", default="0.3,0.35,0.4,0.45,0.5,0.55,0.6", help="comma-separated")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="SET", help="sets to leave out of the mean")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ts = [float(t) for t in args.thresholds.split(",")]
    binarizer = Binarizer(args.model)
    fm: dict[str, list[list[float]]] = defaultdict(list)
    for root in args.data:
        for pair in find_pairs(root):
            if pair.img is None or pair.gt is None or pair.set in args.exclude:
                continue
            prob = binarizer.binarize(read_gray(pair.img))
            gt = read_ground_truth(pair.gt)
            fm[pair.set].append([fmeasure(confusion(gt, prob > t)) for t in ts])
    if not fm:
        raise SystemExit("no img/gt pairs found")
    print(f"model {binarizer.name}; FM by threshold")
    print(f"{'set':<16}" + "".join(f"{t:>8.2f}" for t in ts))
    means = []
    for name in sorted(fm):
        row = np.mean(fm[name], axis=0)
        means.append(row)
        print(f"{name:<16}" + "".join(f"{v:8.2f}" for v in row))
    overall = np.mean(means, axis=0)
    print(f"{'mean of sets':<16}" + "".join(f"{v:8.2f}" for v in overall))
    best = int(np.argmax(overall))
    print(f"best threshold {ts[best]:.2f}: mean FM {overall[best]:.2f} (at 0.50: "
          f"{overall[ts.index(0.5)]:.2f})" if 0.5 in ts else f"best threshold {ts[best]:.2f}")


if __name__ == "__main__":
    main()

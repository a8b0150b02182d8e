"""How well the per-page confidence predicts the page's FM, and its calibration.

For every page of the DIBCO-style sets given: the model's uncertainty (Σ (1 − |2p − 1|) / Σ p) and
confidence (what ``ocrobin binarize --report`` writes) and the page's FM against its ground truth. Prints
the Spearman correlation of confidence with FM over all pages and per set, and a least-squares
calibration ``FM / 100 ≈ a − b × uncertainty`` to store in a model file (``meta["confidence"]``), fitted on
the pages given — fit it on training pages, report it on others.

    .venv/bin/python benchmarks/confidence.py ../shared/data/val ../shared/data/train [-m MODEL] [--fit]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import torch
from scipy.stats import spearmanr

from ocrobin.datasets import find_pairs
from ocrobin.imageio import iter_pages, read_ground_truth
from ocrobin.infer import Binarizer
from ocrobin.metrics import fmeasure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="DIBCO-style sets or folders of sets")
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fit", action="store_true", help="print the calibration fitted on these pages")
    ap.add_argument("--low-fm", type=float, default=80.0,
                    help="the FM below which a page should be flagged low-confidence (default 80)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = Binarizer(args.model)
    rows = []
    for root in args.data:
        for p in find_pairs(root):
            if p.img is None or p.gt is None:
                continue
            r = b.run(next(iter_pages(p.img)).data)
            rows.append((p.set, p.stem, r.uncertainty, r.confidence, fmeasure(read_ground_truth(p.gt), r.ink_mask()),
                         r.confidence < r.low_confidence))
    unc = np.array([r[2] for r in rows])
    conf = np.array([r[3] for r in rows])
    fm = np.array([r[4] for r in rows])
    rho = spearmanr(conf, fm).statistic
    rho_u = spearmanr(-unc, fm).statistic
    print(f"{len(rows)} pages: Spearman(confidence, FM) = {rho:.3f} (of −uncertainty, unclipped: {rho_u:.3f})")
    by = defaultdict(list)
    for r in rows:
        by[r[0]].append(r)
    for s, rs in sorted(by.items()):
        if len(rs) >= 5:
            rr = spearmanr([r[3] for r in rs], [r[4] for r in rs]).statistic
            print(f"  {s:24s} {len(rs):3d} pages  Spearman {rr:6.3f}  mean FM {np.mean([r[4] for r in rs]):6.2f}  "
                  f"mean confidence {np.mean([r[3] for r in rs]):.3f}")
    flagged = np.array([r[5] for r in rows])
    print(f"  with the model's calibration: pages below {args.low_fm:g} FM: {int((fm < args.low_fm).sum())}, flagged "
          f"low-confidence: {int(flagged.sum())}, both: {int((flagged & (fm < args.low_fm)).sum())}")
    if args.fit:
        slope, icpt = np.polyfit(unc, fm / 100.0, 1)
        a, bb = float(icpt), float(-slope)
        low = args.low_fm / 100.0  # the calibrated confidence estimates FM / 100
        print("calibration: " + json.dumps({"confidence": {"a": round(a, 4), "b": round(bb, 4)},
                                            "low_confidence": round(low, 3)}))
        pred = np.clip(a - bb * unc, 0, 1) * 100
        print(f"  fitted: mean |FM − 100 × confidence| = {np.mean(np.abs(pred - fm)):.2f} FM; pages below "
              f"{args.low_fm:g} FM: {int((fm < args.low_fm).sum())}, flagged: {int((pred < args.low_fm).sum())}, "
              f"both: {int(((fm < args.low_fm) & (pred < args.low_fm)).sum())} (threshold {low:.3f})")


if __name__ == "__main__":
    main()

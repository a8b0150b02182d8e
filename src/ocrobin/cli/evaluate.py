"""``ocrobin eval --pred DIR --gt DIR``: DIBCO metrics of binarized pages against ground truth."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="score binarized pages against ground truth (FM, pFM, PSNR, DRD, NRM, MCC)",
        description="Pair prediction and ground-truth pages by file stem (predictions may be <stem>.bin.png "
        "or <stem>.<ext>), print one line per page and the mean. Prediction text = grey below 128; "
        "ground-truth text = black (DIBCO) unless --gt-text-white. pFM uses <stem>_RWeights.dat / "
        "<stem>_PWeights.dat from --weights when present, else weights generated from the ground truth "
        "(as the DIBCO tool does). Exit status 1 if any page could not be scored.",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of binarized pages")
    p.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth pages")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="folder of DIBCO pseudo-F-measure weight files <stem>_RWeights.dat / <stem>_PWeights.dat")
    p.add_argument("--no-generate-weights", action="store_true",
                   help="pFM only from weight files; pages without them report pFM n/a (faster)")
    p.add_argument("--gt-text-white", action="store_true", help="ground truth has white text on black")
    p.add_argument("--json", metavar="FILE", default=None, help="write per-page and mean scores as JSON")
    p.add_argument("--csv", metavar="FILE", default=None, help="write per-page scores as CSV")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the mean row and failures")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bench import evaluate_dirs, format_table, write_csv, write_json
    from ..paths import check_no_clash

    outputs = [o for o in (args.json, args.csv) if o]
    if outputs:
        inputs = [f for d in (args.pred, args.gt, args.weights) if d and Path(d).is_dir()
                  for f in Path(d).rglob("*") if f.is_file()]
        check_no_clash(inputs, outputs)

    def on_page(row: dict | None, fail: dict | None) -> None:
        if fail is not None:
            print(f"FAILED {fail['error']}", file=sys.stderr, flush=True)

    report = evaluate_dirs(args.pred, args.gt, weights_dir=args.weights, gt_text_white=args.gt_text_white,
                           generate_weights=not args.no_generate_weights, on_page=on_page)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    table = format_table([] if args.quiet else report.pages, report.mean if report.pages else None)
    print(table)
    n = len(report.pages)
    missing_pfm = sum(1 for r in report.pages if r.get("pfm") is None)
    if missing_pfm == n and n:
        print("pFM: n/a (no weight files)")
    elif missing_pfm:
        print(f"pFM: n/a on {missing_pfm} page(s) without weight files; mean pFM over the other "
              f"{n - missing_pfm}")
    generated = sum(1 for r in report.pages if r.get("pfm_weights") == "generated")
    if generated:
        print(f"pFM weights generated from the ground truth for {generated} of {n} page(s)")
    print(f"{n} page(s) scored, {len(report.failed)} failed")
    if args.json:
        write_json(args.json, {"pages": report.pages, "mean": report.mean, "failed": report.failed})
    if args.csv:
        write_csv(args.csv, report.pages)
    return 1 if report.failed else 0

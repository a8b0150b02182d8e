"""``ocrobin bench --data DIR``: FM, pFM, PSNR, DRD and speed of our models and classic methods."""

from __future__ import annotations

import argparse

#: Same as ``ocrobin.bench.DEFAULT_METHODS`` / ``CLASSIC`` (repeated so that building the parser imports
#: nothing heavy; a test keeps them in step).
DEFAULT_METHODS = ("default", "lstm2-seed", "otsu", "sauvola", "wolf", "isauvola", "su", "nick", "bataineh")
CLASSIC_NAMES = ("otsu", "sauvola", "wolf", "isauvola", "su", "nick", "bataineh", "niblack", "bernsen", "gatos",
                 "wan", "trsingh")


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="benchmark binarization methods on DIBCO-style sets",
        description="Run every method on every page of SET/img, score against SET/gt (text black) with "
        "SET/weights/<stem>_RWeights.dat etc. for pFM when present (else generated weights), and time the "
        "binarization alone (each method runs once untimed on its first page first). Writes OUT/results.json, "
        "OUT/results.md (one table per set, sorted by FM) and "
        f"OUT/fm_vs_speed.png. Classic methods (doxapy): {', '.join(CLASSIC_NAMES)}; add parameters as "
        "NAME:key=value,... (Sauvola defaults to window=75,k=0.2). Any other name is one of our models "
        "(a packaged name or a model file), thresholded at 0.5; NAME:tta averages a model over the page and "
        "its flips (as binarize --tta).",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="a set (img/ + gt/) or a folder of sets")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"methods to run (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--out", default="bench-out", metavar="DIR", help="output folder (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads for our models")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N pages per set")
    p.add_argument("--save-pred", action="store_true", help="keep binarized pages in OUT/pred/SET/METHOD/")
    p.add_argument("--no-generate-weights", action="store_true",
                   help="pFM only from weight files (pFM n/a elsewhere; saves seconds per page)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..bench import markdown_table, run_bench
    from ..exceptions import UsageError

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    methods = args.methods if args.methods else list(DEFAULT_METHODS)
    results = run_bench(args.data, methods, args.out, limit=args.limit, threads=args.threads,
                        save_pred=args.save_pred, generate_weights=not args.no_generate_weights,
                        progress=not args.no_progress)
    print(markdown_table(results))
    print(f"results: {args.out}/results.json, {args.out}/results.md, {args.out}/fm_vs_speed.png")
    failed = sum(len(m["failed"]) for s in results["sets"] for m in s["methods"])
    skipped = sum(len(s["skipped"]) for s in results["sets"])
    if failed or skipped:
        print(f"{failed} method run(s) failed, {skipped} page(s) skipped (see above)")
    return 1 if failed or skipped else 0

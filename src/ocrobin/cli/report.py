"""``ocrobin report``: summarise a run report (``ocrobin binarize --report``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="summarise a run report of ocrobin binarize",
        description="Summarise a run report written by 'ocrobin binarize --report FILE' (.jsonl or .csv): "
        "pages done, skipped, failed and done by other runs, the flags raised, the confidence distribution, "
        "the least confident pages and the failures. A page reported several times (a resumed run) counts "
        "once, with its latest result.",
    )
    p.add_argument("report", metavar="REPORT", help="the report file (.jsonl or .csv)")
    p.add_argument("-n", "--least", type=int, default=10, metavar="N",
                   help="list the N least confident pages (default 10; 0 = none)")
    p.add_argument("--plot", default=None, metavar="FILE", help="draw the confidence histogram into FILE (.png)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..batch import plot_confidence, read_report, summarize
    from ..exceptions import UsageError
    from ..infer import LOW_CONFIDENCE
    from ..paths import check_no_clash

    if args.least < 0:
        raise UsageError("--least must be 0 or more")
    rows = read_report(args.report)
    print(summarize(rows, args.least))
    if args.plot:
        check_no_clash([args.report], [args.plot], "plot")
        plot_confidence(rows, args.plot, LOW_CONFIDENCE)
        print(f"confidence histogram in {args.plot}")
    return 0

"""Held-out synthetic pages, one set per error class of unseen collections, scored by ``ocrobin bench``.

The model issue names what goes wrong on collections the models never saw: dark borders, binding shadows
and facing-page slivers; sharp bleed-through; printed rulings and grids; and clean high-contrast pages,
where a plain threshold places stroke edges better. This makes one DIBCO-style set per class (``img/``,
``gt/``) from the ground truth of pages no model trains on (default: the val set), half of them rendered,
with the class's effects forced on every page (``ocrobin degrade --force``) and seeds no training run
uses, then runs ``ocrobin bench`` over them (``OUT/bench/results.md``), so a recipe or a model can be
judged per class beside the classic methods. The sets are made once and reused.

    .venv/bin/python benchmarks/error_classes.py [--pairs ../shared/data/val] [--pages 20] [--out DIR]
        [--methods default otsu ...] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocrobin.bench import DEFAULT_METHODS, run_bench
from ocrobin.degrade.generate import SynthConfig, generate
from ocrobin.degrade.sources import list_pair_truths

#: class → effects forced on each of its pages. Seeds 501.. (the training data of docs/model-v2.md uses 100,
#: 200–209, 300 and 301).
CLASSES = {
    "border": ("border", "page_edge", "binding", "facing_page"),
    "bleed_sharp": ("bleed_sharp",),
    "rulings": ("rulings",),
    "clean": ("clean",),
}
SEED = 500


def make_sets(pairs: str, out: Path, pages: int) -> None:
    """Write the class sets under ``out`` (a set whose folders exist is kept as it is)."""
    truths = list_pair_truths(pairs)
    for i, (name, effects) in enumerate(CLASSES.items(), start=1):
        root = out / name
        if (root / "img").is_dir() and (root / "gt").is_dir():
            continue
        cfg = SynthConfig(seed=SEED + i, size=(768, 1280), pairs=tuple(truths), render_fraction=0.5,
                          force=effects, disable=("inverted", "inverted_band"))
        for sub in ("img", "gt"):
            (root / f"{sub}.part").mkdir(parents=True, exist_ok=True)
        for s in generate(cfg, pages):  # the set's folders appear only once they are complete
            (root / "img.part" / f"{s.record['__key__']}.png").write_bytes(s.record["gray.png"])
            (root / "gt.part" / f"{s.record['__key__']}.png").write_bytes(s.record["bin.png"])
        for sub in ("img", "gt"):
            (root / f"{sub}.part").rename(root / sub)
        print(f"{name}: {pages} pages, effects {', '.join(effects)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="../shared/data/val", help="DIBCO-style pages whose ground truth is used")
    ap.add_argument("--pages", type=int, default=20, help="pages per class (default 20)")
    ap.add_argument("--out", default="runs/classes", help="folder of the sets and the bench results")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="as ocrobin bench --methods")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for our models")
    args = ap.parse_args()
    out = Path(args.out)
    make_sets(args.pairs, out / "sets", args.pages)
    run_bench(out / "sets", args.methods, out=out / "bench", threads=args.threads, generate_weights=False,
              progress=False)
    print((out / "bench" / "results.md").read_text())


if __name__ == "__main__":
    main()

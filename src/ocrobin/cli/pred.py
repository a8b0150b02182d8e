"""``ocrobin-pred``: the original prediction tool's interface over tar shards."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Binarize ``gray.png`` samples of input shards into ``bin.png`` samples of output shards."""
    p = argparse.ArgumentParser(
        prog="ocrobin-pred",
        description="Binarize the gray.png of every sample of the input shards (the original ocrobin-pred "
        "interface; 'ocrobin binarize --shards' has more options).",
    )
    p.add_argument("input", nargs="+", help="input shards, e.g. 'in-{000000..000009}.tar'")
    p.add_argument("-o", "--output", required=True, help="output shard pattern, e.g. 'out-%%06d.tar'")
    p.add_argument("-m", "--model", default=None, help="model name, our file or a legacy .pt")
    p.add_argument("--batchsize", type=int, default=1,
                   help="accepted for compatibility; pages are run one at a time (results are identical)")
    p.add_argument("--invert", action="store_true", help="invert the input first (light text on dark ground)")
    p.add_argument("--input-key", default="gray.png", help="sample key of the page (default gray.png)")
    p.add_argument("--prob", action="store_true", help="also write prob.png")
    p.add_argument("--overwrite", action="store_true", help="redo output shards that exist")
    args = p.parse_args(argv)
    from . import main as ocrobin_main

    cmd = ["binarize", "--shards", *args.input, "-o", args.output, "--input-key", args.input_key]
    if args.model:
        cmd += ["-m", args.model]
    for flag in ("invert", "prob", "overwrite"):
        if getattr(args, flag):
            cmd.append(f"--{flag}")
    return ocrobin_main(cmd)


if __name__ == "__main__":
    sys.exit(main())

"""Speed and memory of one model on one page: prints s/MP (min and median of several runs) and peak RSS.

Examples:
    python benchmarks/speed.py                                  # default model, synthetic 2000x3000 page
    python benchmarks/speed.py -m lstm2-seed --page ../shared/seed/sample.png
    python benchmarks/speed.py --size 10000x10000 --repeats 1   # a 100-MP page (tiled automatically)
    python benchmarks/speed.py --size 10000x10000 --cli         # the same through 'ocrobin binarize'

Peak RSS is that of a fresh child process that runs only the measured work, so figures do not depend on
what ran before. ``--cli`` measures the whole command: read, binarize, threshold and write a 1-bit PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from pages import save_page

CHILD = r"""
import json, resource, sys, time
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
from ocrobin.infer import Binarizer
from ocrobin.imageio import read_gray
gray = read_gray(args["page"])
b = Binarizer(args["model"], tile=args["tile"])
times = []
for _ in range(args["repeats"]):
    t = time.perf_counter()
    b.binarize(gray)
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "pixels": int(gray.size), "model": b.name,
                  "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default=None, help="model name or file (default: packaged default)")
    p.add_argument("--page", default=None, help="a real page image (default: synthetic page of --size)")
    p.add_argument("--size", default="2000x3000", help="synthetic page size WxH (default 2000x3000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default automatic, 0 = never)")
    p.add_argument("--cli", action="store_true", help="time 'ocrobin binarize' end to end instead")
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as d:
        page = args.page or os.path.join(d, "page.png")
        if not args.page:
            save_page(page, *size)
        return measure(args, page)


def measure(args: argparse.Namespace, page: str) -> int:
    """Time the model (or the whole CLI) on the page file ``page`` and print the figures."""
    if args.cli:
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "ocrobin", "binarize", page, "-o", os.path.join(d, "out"), "--overwrite",
                   "--no-progress", "--threads", str(args.threads)]
            if args.model:
                cmd += ["-m", args.model]
            if args.tile is not None:
                cmd += ["--tile", str(args.tile)]
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times.append(time.perf_counter() - t)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        with Image.open(page) as im:
            pixels = im.size[0] * im.size[1]
        name = args.model or "default"
    else:
        spec = {"model": args.model, "page": page, "repeats": args.repeats + 1, "threads": args.threads,
                "tile": args.tile}
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], check=True, capture_output=True,
                           text=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        times, pixels, rss, name = res["times"][1:], res["pixels"], res["rss_kb"], res["model"]
    mp = pixels / 1e6
    print(f"model {name}: page {mp:.1f} MP, {len(times)} runs, threads {args.threads}"
          f"{' (whole CLI)' if args.cli else ''}")
    print(f"  s/MP  min {min(times) / mp:.3f}  median {statistics.median(times) / mp:.3f}")
    print(f"  peak RSS {rss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

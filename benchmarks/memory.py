"""Peak memory of ``ocrobin binarize`` on huge pages, against the bound 1.5 bytes per pixel + 400 MiB.

Each case is a fresh ``ocrobin binarize`` process (one worker) on one synthetic page; its peak RSS comes from
the kernel (``getrusage`` of the finished child, the figure ``/usr/bin/time -v`` prints). ``--prob`` adds
1 byte per pixel to the bound (the 8-bit probability map is one).

    .venv/bin/python benchmarks/memory.py --size 16000x15000                 # 240 MP, every case
    .venv/bin/python benchmarks/memory.py --size 8000x6000 --cases png-grey-png,tif-rgb-tif-prob
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from pages import synthetic_page
from PIL import Image

WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)"
           ".returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")

#: input format - colour - output format [- prob]
CASES = ("png-grey-png", "png-grey-tif", "png-rgb-png", "tif-grey-png", "tif-grey-tif", "tif-rgb-tif",
         "png-grey-png-prob", "tif-rgb-tif-prob")


def write_page(path: str, width: int, height: int, rgb: bool) -> None:
    """The synthetic page as PNG or (strip-wise LZW) TIFF, grey or colour, 300 dpi."""
    Image.MAX_IMAGE_PIXELS = None
    g = synthetic_page(width, height)
    if rgb:
        a = np.empty((height, width, 3), np.uint8)
        for c, tint in enumerate((1.0, 0.96, 0.88)):  # a warm paper tint
            np.multiply(g, tint, out=a[..., c], casting="unsafe")
        del g
        img = Image.fromarray(a)
    else:
        img = Image.fromarray(g)
    if path.endswith(".tif"):
        img.save(path, dpi=(300, 300), compression="tiff_lzw")
    else:
        img.save(path, dpi=(300, 300), compress_level=1)


def run_case(page: str, out: str, fmt: str, prob: bool, threads: int) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit status) of one ``ocrobin binarize`` run in a fresh process."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ocrobin"), "binarize", page, "-o", out, "--format",
           fmt, "--workers", "1", "--threads", str(threads), "--no-progress", "--overwrite"]
    if prob:
        cmd.append("--prob")
    t = time.perf_counter()
    # a wrapper process whose only child is the command: its children's peak RSS is the command's
    r = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if r.returncode:
        sys.stderr.write(r.stderr[-2000:])
    return seconds, int(r.stdout.split()[-1]) * 1024, r.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="16000x15000", help="page size WxH (default 16000x15000 = 240 MP)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated (default all: {','.join(CASES)})")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--keep", default=None, metavar="DIR", help="write pages here and keep them (default: temp)")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    mp = w * h / 1e6
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or tmp
        os.makedirs(where, exist_ok=True)
        print(f"page {w}x{h} ({mp:.0f} MP), {args.threads} threads; bound = 1.5 B/px + 400 MiB (+1 B/px with --prob)")
        print(f"{'case':22s} {'s':>7s} {'s/MP':>7s} {'peak MiB':>9s} {'B/px':>6s} {'bound MiB':>10s}  ok")
        made: dict[str, str] = {}
        for case in args.cases.split(","):
            parts = case.split("-")
            src, colour, fmt, prob = parts[0], parts[1], parts[2], len(parts) > 3
            key = f"{src}-{colour}"
            if key not in made:
                made[key] = os.path.join(where, f"page-{w}x{h}-{colour}.{src}")
                if not os.path.exists(made[key]):
                    write_page(made[key], w, h, colour == "rgb")
            seconds, peak, rc = run_case(made[key], os.path.join(tmp, "out"), fmt, prob, args.threads)
            bound = (1.5 + (1.0 if prob else 0.0)) * w * h + 400 * 2**20
            good = rc == 0 and peak <= bound
            ok &= good
            print(f"{case:22s} {seconds:7.1f} {seconds / mp:7.3f} {peak / 2**20:9.0f} {peak / (w * h):6.2f} "
                  f"{bound / 2**20:10.0f}  {'yes' if good else 'NO'}{'' if rc == 0 else f' (exit {rc})'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    sys.exit(main())

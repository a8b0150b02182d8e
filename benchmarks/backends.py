"""Compare inference back-ends and the Ray engine's throughput.

``onnx``: seconds per megapixel of the PyTorch and the ONNX Runtime back-end in the same run, same
model, same page, same thread count (model exported to a temporary file first); prints min and median
over several repeats after one warm-up run each.

``ray``: pages per second of :func:`ocrobin.distributed.binarize_shards_ray` on generated shards with
1, 2, ... local workers (each count in a fresh local Ray instance; start-up is timed separately and not
counted in pages/s).

    .venv/bin/python benchmarks/backends.py onnx [--model lstm2-seed] [--page PNG | --width W --height H]
                                                 [--threads 1] [--repeat 5] [--tile 0]
    .venv/bin/python benchmarks/backends.py ray [--model lstm2-seed] [--workers 1 2] [--shards 4]
                                                [--per-shard 8] [--width W --height H]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pages import synthetic_page


def _times(fn, repeat: int) -> list[float]:
    fn()  # warm-up (allocations, ONNX Runtime's first-run planning)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_onnx(args: argparse.Namespace) -> None:
    import torch

    from ocrobin.infer import Binarizer
    from ocrobin.onnx import OnnxBinarizer, export_onnx

    torch.set_num_threads(args.threads)
    if args.page:
        from ocrobin.imageio import read_gray

        page = read_gray(args.page)
        what = args.page
    else:
        page = synthetic_page(args.width, args.height)
        what = "synthetic page"
    mp = page.shape[0] * page.shape[1] / 1e6
    tile = args.tile if args.tile >= 0 else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        report = export_onnx(args.model, path)
        backends = {
            "torch": Binarizer(args.model, tile=tile, threads=args.threads),
            "onnxruntime": OnnxBinarizer(path, threads=args.threads, tile=tile),
        }
        print(f"model {args.model}, {what} {page.shape[1]}×{page.shape[0]} ({mp:.2f} MP), "
              f"{args.threads} thread(s), tile {'auto' if tile is None else tile}, {args.repeat} repeats; "
              f"export check max |Δp| {report.max_diff:.1e}")
        results = {}
        for name, b in backends.items():
            t = _times(lambda b=b: b.binarize(page), args.repeat)
            results[name] = b.binarize(page)
            print(f"  {name:12s} min {min(t) / mp:7.3f} s/MP   median {statistics.median(t) / mp:7.3f} s/MP")
        diff = float(np.abs(results["torch"] - results["onnxruntime"]).max())
        print(f"  max |Δp| torch vs onnxruntime on this page: {diff:.1e}")


def _make_shards(folder: Path, n: int, per: int, width: int, height: int) -> None:
    from ocrobin.imageio import encode_png
    from ocrobin.shards import ShardSink

    for s in range(n):
        with ShardSink(str(folder / "in-%06d.tar"), maxcount=per, start=s) as sink:
            for k in range(per):
                gray = synthetic_page(width, height, s * per + k)
                sink.write({"__key__": f"p{s:03d}{k:03d}", "gray.png": encode_png(gray)})


def bench_ray(args: argparse.Namespace) -> None:
    import ray

    from ocrobin.distributed import binarize_shards_ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _make_shards(folder, args.shards, args.per_shard, args.width, args.height)
        pages = args.shards * args.per_shard
        spec = str(folder / f"in-{{000000..{args.shards - 1:06d}}}.tar")
        print(f"model {args.model}, {args.shards} shards × {args.per_shard} pages of "
              f"{args.width}×{args.height}, {os.cpu_count()} CPUs")
        for n in args.workers:
            t0 = time.perf_counter()
            ray.init(num_cpus=n + 1, include_dashboard=False, logging_level="warning")
            startup = time.perf_counter() - t0
            try:
                out = folder / f"out-{n}"
                summary = binarize_shards_ray(args.model, [spec], str(out / "out-%06d.tar"), num_workers=n,
                                              batch_size=args.batch_size, progress=False)
            finally:
                ray.shutdown()
            assert summary.done == pages, summary.line()
            print(f"  {n} worker(s): {pages / summary.seconds:6.2f} pages/s, "
                  f"{summary.pixels / 1e6 / summary.seconds:6.2f} MP/s "
                  f"({summary.seconds:.1f} s incl. worker start-up and model load; "
                  f"Ray start {startup:.1f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("onnx", help="torch vs onnxruntime, s/MP")
    o.add_argument("--model", default="lstm2-seed")
    o.add_argument("--page", help="a page image (default: a synthetic page)")
    o.add_argument("--width", type=int, default=1600)
    o.add_argument("--height", type=int, default=1200)
    o.add_argument("--threads", type=int, default=1)
    o.add_argument("--repeat", type=int, default=5)
    o.add_argument("--tile", type=int, default=-1, help="tile side (0: never tile; default: automatic)")
    r = sub.add_parser("ray", help="pages/s of the Ray engine with 1, 2, ... local workers")
    r.add_argument("--model", default="lstm2-seed")
    r.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    r.add_argument("--shards", type=int, default=4)
    r.add_argument("--per-shard", type=int, default=8)
    r.add_argument("--width", type=int, default=600)
    r.add_argument("--height", type=int, default=800)
    r.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    if args.what == "onnx":
        bench_onnx(args)
    else:
        bench_ray(args)


if __name__ == "__main__":
    sys.exit(main())

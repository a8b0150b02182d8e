"""Throughput of a whole ``ocrobin binarize`` run against the model's compute alone, and the cost of tiling.

1. ``folder``: a folder of synthetic pages of 2–10 MP. The model's compute-only MP/s (``Binarizer.run`` on
   pages already in memory, ``--threads`` threads, one process) against the whole command's MP/s (read,
   polarity, model, encode, write) with 1 worker × ``--threads`` threads and with ``--threads`` workers × 1
   thread, and the same pages packed as shards (``--shards K`` pages each) with ``--threads`` workers:
   the whole command should reach 90 % of the compute-only figure. All of them run in turn,
   ``--repeats`` rounds; each round's ratios are printed, and the best times are compared.
2. ``tiles``: one page of ``--page-size`` run untiled and tiled with each ``--tiles SIDE/OVERLAP``, the
   configurations in turn, best of ``--repeats``: s/MP relative to untiled, and the share of pixels equal
   to the untiled result. The allocator is set up as in the command (``--glibc-malloc``: left as glibc has
   it, which favours the untiled pass: its large blocks are reused instead of mapped afresh).
3. ``gpu``: the folder's pages on a CUDA device: the model alone (batched tiles) in pages/s and MP/s, its
   peak device memory, agreement with the CPU result, and the whole ``ocrobin binarize --device cuda``.

    .venv/bin/python benchmarks/throughput.py folder --pages 50 --threads 2
    .venv/bin/python benchmarks/throughput.py tiles --page-size 3560x2670 --tiles 2048/128,2560/64,3072/64
    .venv/bin/python benchmarks/throughput.py tiles --glibc-malloc   # glibc's own allocator settings
    .venv/bin/python benchmarks/throughput.py gpu --pages 50       # on a machine with a CUDA device
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch
from pages import synthetic_page
from PIL import Image


def make_folder(folder: str, pages: int, seed: int = 0) -> list[str]:
    """``pages`` synthetic PNG pages of 2 to 10 MP (sizes seeded), 300 dpi."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(pages):
        mp = rng.uniform(2.0, 10.0)
        aspect = rng.uniform(1.2, 1.5)
        h = int(np.sqrt(mp * 1e6 * aspect))
        w = int(mp * 1e6 / h)
        p = os.path.join(folder, f"page-{i:03d}.png")
        if not os.path.exists(p):
            Image.fromarray(synthetic_page(w, h, seed=i)).save(p, dpi=(300, 300), compress_level=1)
        paths.append(p)
    return paths


def pack_shards(paths: list[str], folder: str, per_shard: int = 10) -> str:
    """The pages as ``gray.png`` samples in shards of ``per_shard``; returns their brace pattern."""
    os.makedirs(folder, exist_ok=True)
    n = (len(paths) + per_shard - 1) // per_shard
    for i in range(n):
        with tarfile.open(os.path.join(folder, f"pages-{i:06d}.tar"), "w") as tar:
            for p in paths[i * per_shard:(i + 1) * per_shard]:
                tar.add(p, arcname=os.path.basename(p)[:-len(".png")] + ".gray.png")
    return os.path.join(folder, f"pages-{{{0:06d}..{n - 1:06d}}}.tar")


def folder(args: argparse.Namespace) -> None:
    from ocrobin.imageio import iter_pages
    from ocrobin.infer import Binarizer

    with tempfile.TemporaryDirectory() as tmp:
        src = args.keep or os.path.join(tmp, "pages")
        paths = make_folder(src, args.pages)
        torch.set_num_threads(args.threads)
        b = Binarizer(args.model)
        pages = [next(iter_pages(p)).data for p in paths]
        mp = sum(p.size for p in pages) / 1e6
        b.run(pages[0][:512, :512])
        exe = os.path.join(os.path.dirname(sys.executable), "ocrobin")
        configs: list[tuple[int, int, bool]] = [(1, args.threads, False), (args.threads, 1, False)]
        shards = None
        if args.shards:
            shards = pack_shards(paths, os.path.join(tmp, "shards"), args.shards)
            configs.append((args.threads, 1, True))
        best: dict[object, float] = {"compute": float("inf"), **{c: float("inf") for c in configs}}
        print(f"{len(paths)} pages, {mp:.0f} MP; {args.repeats} rounds, each: compute only, then the command "
              f"with each configuration (a slow spell of the machine hits all of them)")
        for rnd in range(args.repeats):
            t = time.perf_counter()
            for p in pages:
                b.run(p)
            times: dict[object, float] = {"compute": time.perf_counter() - t}
            for workers, threads, sharded in configs:
                out = os.path.join(tmp, f"out-{workers}-{int(sharded)}-{rnd}")
                what = ["--shards", shards, "-o", os.path.join(out, "out-%06d.tar")] if sharded else [src, "-o", out]
                cmd = [exe, "binarize", *what, "--workers", str(workers), "--threads", str(threads), "--no-progress"]
                if args.model:
                    cmd += ["-m", args.model]
                os.makedirs(out, exist_ok=True)
                t = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                times[(workers, threads, sharded)] = time.perf_counter() - t
                if r.returncode:
                    sys.stderr.write(r.stderr)
                shutil.rmtree(out, ignore_errors=True)
            print(f"round {rnd + 1}: compute only {mp / times['compute']:.2f} MP/s; " + "; ".join(
                f"{name(*c)} {100 * times['compute'] / times[c]:.0f} %" for c in configs))
            for k, v in times.items():
                best[k] = min(best[k], v)
        compute = mp / best["compute"]
        print(f"best: model compute only ({args.threads} threads): {compute:.2f} MP/s")
        for c in configs:
            dt = best[c]
            print(f"best: ocrobin binarize {name(*c)}: {mp / dt:.2f} MP/s "
                  f"({dt:.1f} s, process start included) = {100 * mp / dt / compute:.0f} % of compute only")


def name(workers: int, threads: int, sharded: bool) -> str:
    """How a configuration is printed."""
    return f"{'--shards ' if sharded else ''}--workers {workers} --threads {threads}"


def tiles(args: argparse.Namespace) -> None:
    from ocrobin.infer import Binarizer
    from ocrobin.runtime import release_freed_memory

    if not args.glibc_malloc:
        release_freed_memory()  # the allocator settings of the command
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.page_size.lower().split("x"))
    page = synthetic_page(w, h)
    mp = page.size / 1e6
    specs = [(0, 0)] + [tuple(int(v) for v in spec.split("/")) for spec in args.tiles.split(",")]
    runs = [Binarizer(args.model, tile=side, overlap=ov) for side, ov in specs]
    for b in runs:
        b.run(page[:512, :512])
    best = [float("inf")] * len(runs)
    masks: list[np.ndarray | None] = [None] * len(runs)
    for _ in range(args.repeats):  # the configurations in turn, so a slow spell of the machine hits them all
        for i, b in enumerate(runs):
            t = time.perf_counter()
            r = b.run(page)
            best[i] = min(best[i], time.perf_counter() - t)
            masks[i] = r.ink_mask()
    base, ref = best[0] / mp, masks[0]
    print(f"page {w}x{h} ({mp:.1f} MP), {args.threads} threads, best of {args.repeats} (configurations in turn)")
    print(f"untiled: {base:.4f} s/MP")
    for (side, ov), t, m in zip(specs[1:], best[1:], masks[1:], strict=True):
        s = t / mp
        print(f"tile {side} overlap {ov}: {s:.4f} s/MP = {100 * (s / base - 1):+.1f} % against untiled; "
              f"{100 * (m == ref).mean():.4f} % of pixels equal")


def gpu(args: argparse.Namespace) -> None:
    """Pages/s on a CUDA device: the model alone and the whole command, and agreement with the CPU."""
    from ocrobin.imageio import iter_pages
    from ocrobin.infer import Binarizer

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (tests/test_infer.py's CUDA test skips too)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = args.keep or os.path.join(tmp, "pages")
        paths = make_folder(src, args.pages)
        pages = [next(iter_pages(p)).data for p in paths]
        mp = sum(p.size for p in pages) / 1e6
        torch.set_num_threads(args.threads)
        cuda = Binarizer(args.model, device="cuda")
        cuda.run(pages[0])  # kernels chosen, memory pooled
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        results = [cuda.run(p) for p in pages]
        dt = time.perf_counter() - t  # run() hands back host arrays: the device is done
        print(f"{torch.cuda.get_device_name()}: {len(pages)} pages, {mp:.0f} MP; model alone (tiles of "
              f"{cuda.tile} px, {cuda.batch_tiles} per batch): {len(pages) / dt:.2f} pages/s, {mp / dt:.1f} MP/s; "
              f"peak device memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
        cpu = Binarizer(args.model)
        equal = [(cpu.run(pages[i]).ink_mask() == results[i].ink_mask()).mean() for i in range(min(3, len(pages)))]
        print(f"pixels equal to the CPU result: {', '.join(f'{100 * e:.3f} %' for e in equal)} (first pages)")
        del pages, results
        exe = os.path.join(os.path.dirname(sys.executable), "ocrobin")
        cmd = [exe, "binarize", src, "-o", os.path.join(tmp, "out"), "--device", "cuda", "--no-progress"]
        if args.model:
            cmd += ["-m", args.model]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t
        if r.returncode:
            sys.stderr.write(r.stderr)
            sys.exit(f"ocrobin binarize --device cuda failed (exit status {r.returncode})")
        print(f"ocrobin binarize --device cuda: {len(paths) / dt:.2f} pages/s, {mp / dt:.1f} MP/s ({dt:.1f} s, "
              "process start included)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("folder")
    f.add_argument("--pages", type=int, default=50)
    f.add_argument("--keep", default=None, metavar="DIR", help="keep the generated pages here")
    f.add_argument("--repeats", type=int, default=3, help="rounds (default 3); the best of each is compared")
    f.add_argument("--shards", type=int, default=10, metavar="K",
                   help="also run the pages packed as shards of K (default 10; 0: not)")
    g = sub.add_parser("gpu", help="pages/s on a CUDA device (prints that there is none where there is none)")
    g.add_argument("--pages", type=int, default=50)
    g.add_argument("--keep", default=None, metavar="DIR", help="keep the generated pages here")
    t = sub.add_parser("tiles")
    t.add_argument("--page-size", default="3560x2670", help="WxH (default 3560x2670, 9.5 MP)")
    t.add_argument("--tiles", default="2048/128,2048/64,2560/64,3072/64", help="SIDE/OVERLAP,...")
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--glibc-malloc", action="store_true",
                   help="keep glibc's adaptive mmap threshold instead of the command's fixed one")
    for p in (f, g, t):
        p.add_argument("-m", "--model", default=None)
        p.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    {"folder": folder, "gpu": gpu, "tiles": tiles}[args.what](args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main()

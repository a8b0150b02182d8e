"""Throughput of synthetic pair generation (``ocrobin degrade``): pages/s and MP/s for 1 and more workers.

Each page is rendered, degraded and encoded to PNG exactly as the command does (``make_sample``), on
square pages of ``--size`` pixels. A second table splits the single-worker time into its stages.

    .venv/bin/python benchmarks/degrade_speed.py --pages 24 --size 1024 --workers 1,2
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ocrobin.degrade import SynthConfig, degrade, draw_params, generate, page_seed  # noqa: E402
from ocrobin.imageio import encode_png  # noqa: E402
from ocrobin.render import font_paths, render_page  # noqa: E402


def throughput(cfg: SynthConfig, pages: int, workers: int) -> tuple[float, float]:
    """(pages/s, MP/s) of making ``pages`` pages with ``workers`` processes."""
    t0 = time.perf_counter()
    pixels = sum(s.pixels for s in generate(cfg, pages, workers))
    dt = time.perf_counter() - t0
    return pages / dt, pixels / 1e6 / dt


def stages(size: int, pages: int, preset: str, rgb: bool) -> dict[str, float]:
    """Seconds per page spent rendering, degrading and PNG-encoding (one process)."""
    out = {"render": 0.0, "degrade": 0.0, "encode": 0.0}
    for i in range(pages):
        rng = np.random.default_rng(page_seed(12345, i))
        t0 = time.perf_counter()
        clean = render_page(rng, (size, size))
        t1 = time.perf_counter()
        img, ink, _ = degrade(clean, rng, draw_params(rng, clean.shape, preset, rgb=rgb), rgb=rgb)
        t2 = time.perf_counter()
        encode_png(img)
        encode_png(np.where(ink, 0, 255).astype(np.uint8))
        t3 = time.perf_counter()
        out["render"] += t1 - t0
        out["degrade"] += t2 - t1
        out["encode"] += t3 - t2
    return {k: v / pages for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=24, help="pages per measurement (default 24)")
    ap.add_argument("--size", type=int, default=1024, help="page side in pixels (default 1024: about 1 MP)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--rgb", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    n = len(font_paths())
    print(
        f"fonts: {n} found in {time.perf_counter() - t0:.2f} s (once per run); cpu cores: {os.cpu_count()}; "
        f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    cfg = SynthConfig(seed=12345, size=(args.size, args.size), preset=args.preset, rgb=args.rgb)
    print(f"{args.pages} pages of {args.size}x{args.size}, preset {args.preset}{', rgb' if args.rgb else ''}")
    print(f"{'workers':>8} {'pages/s':>8} {'MP/s':>8}")
    for w in (int(x) for x in args.workers.split(",")):
        ps, mps = throughput(cfg, args.pages, w)
        print(f"{w:>8} {ps:>8.2f} {mps:>8.2f}")
    st = stages(args.size, max(4, args.pages // 2), args.preset, args.rgb)
    total = sum(st.values())
    print(
        "one worker, seconds per page: "
        + ", ".join(f"{k} {v:.3f}" for k, v in st.items())
        + f", total {total:.3f}"
    )


if __name__ == "__main__":
    main()

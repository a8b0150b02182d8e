"""``ocrobin degrade``: write synthetic (degraded grey, clean binary) training pairs as webdataset shards."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from ..exceptions import UsageError

PREVIEW_SAMPLES = 16
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")
MIN_SIDE, MAX_SIDE = 16, 16384


def add_parser(subparsers: Any, name: str) -> argparse.ArgumentParser:
    """Register the sub-command."""
    p = subparsers.add_parser(
        name,
        help="make synthetic training pairs (webdataset shards)",
        description="Render or read clean pages, degrade them like old scans and write (gray.png, bin.png, "
        "json) samples into tar shards. The same seed gives byte-identical shards, whatever "
        "the number of workers.",
    )
    p.add_argument("--pages", type=int, metavar="N", help="number of pages to make")
    p.add_argument(
        "--out", metavar="PATTERN", help="shard names with one integer field, e.g. 'synth-%%06d.tar'"
    )
    p.add_argument("--shard-size", type=int, default=500, metavar="K", help="pages per shard (default 500)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="run seed (default 0)")
    p.add_argument(
        "--size",
        default="512..1536",
        metavar="MIN..MAX",
        help="page side range in pixels, height and width drawn separately (default 512..1536)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="W", help="worker processes (default 1)")
    p.add_argument(
        "--preset",
        default="default",
        metavar="NAME",
        help="degradation preset: default, mild, heavy, original, none (default: default)",
    )
    p.add_argument(
        "--clean",
        action="append",
        metavar="DIR",
        help="folder of clean pages (any image format, ink dark) to degrade; repeatable",
    )
    p.add_argument(
        "--pairs",
        action="append",
        metavar="DIR",
        help="DIBCO-style folder (SET/img, SET/gt); its ground truth is re-degraded; repeatable",
    )
    p.add_argument(
        "--render-fraction",
        type=float,
        metavar="F",
        help="share of rendered pages when --clean/--pairs are given (default 0; 1 without them)",
    )
    p.add_argument("--rgb", action="store_true", help="colour images (gray.png holds RGB)")
    p.add_argument("--disable", default="", metavar="EFFECT[,EFFECT...]", help="effects to leave out")
    p.add_argument("--force", default="", metavar="EFFECT[,EFFECT...]",
                   help="effects drawn on every page (the others as the preset says; a 'clean' page keeps only "
                   "its own few), e.g. inverted_band")
    p.add_argument(
        "--preview",
        metavar="GRID.png",
        help="also write a contact sheet of the first 16 pages (image above, ground truth below); "
        "may be used without --out",
    )
    return p


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``MIN..MAX`` (or one number) into a page side range.

    Raises:
        UsageError: not two integers, MIN > MAX, or outside the supported range.
    """
    m = _SIZE_RE.match(text or "")
    if not m:
        raise UsageError(f"--size {text!r}: expected MIN..MAX in pixels, e.g. 512..1536")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if lo > hi:
        raise UsageError(f"--size {text!r}: MIN is larger than MAX")
    if lo < MIN_SIDE or hi > MAX_SIDE:
        raise UsageError(f"--size {text!r}: sides must lie in {MIN_SIDE}..{MAX_SIDE}")
    return lo, hi


def check_pattern(pattern: str) -> None:
    """Check an output pattern has exactly one integer field.

    Raises:
        UsageError: no field, a bad field, or a pattern that gives the same name for every shard.
    """
    try:
        a, b = pattern % 0, pattern % 1
    except (TypeError, ValueError):
        raise UsageError(f"--out {pattern!r}: needs one integer field such as %06d") from None
    if a == b:
        raise UsageError(f"--out {pattern!r}: needs one integer field such as %06d")


def run(args: argparse.Namespace) -> int:
    """Make the pages, write shards and/or the preview, print the throughput."""
    from tqdm import tqdm

    from ..degrade import (
        SynthConfig,
        check_effects,
        contact_sheet,
        generate,
        get_preset,
        list_clean,
        list_pair_truths,
    )
    from ..imageio import save_image
    from ..paths import check_no_clash
    from ..shards import ShardSink

    if args.out is None and args.preview is None:
        raise UsageError("nothing to do: give --out PATTERN and/or --preview FILE")
    if args.pages is None:
        if args.out is not None:
            raise UsageError("--pages N is required with --out")
        args.pages = PREVIEW_SAMPLES
    if args.pages < 1:
        raise UsageError(f"--pages must be at least 1, got {args.pages}")
    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {args.shard_size}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    if args.render_fraction is not None and not 0.0 <= args.render_fraction <= 1.0:
        raise UsageError(f"--render-fraction must lie in 0..1, got {args.render_fraction}")
    size = parse_size(args.size)
    get_preset(args.preset)
    disable = tuple(check_effects(args.disable.split(",")))
    force = tuple(check_effects(args.force.split(",")))
    if set(force) & set(disable):
        raise UsageError(f"--force and --disable name the same effect: {', '.join(sorted(set(force) & set(disable)))}")
    if args.out is not None:
        check_pattern(args.out)
    clean = [f for d in args.clean or [] for f in list_clean(d)]
    pairs = [f for d in args.pairs or [] for f in list_pair_truths(d)]
    outputs = [args.out % i for i in range(-(-args.pages // args.shard_size))] if args.out is not None else []
    if args.preview:
        outputs.append(args.preview)
    check_no_clash(clean + pairs, outputs)
    cfg = SynthConfig(
        seed=args.seed,
        size=size,
        preset=args.preset,
        rgb=args.rgb,
        clean=tuple(clean),
        pairs=tuple(pairs),
        render_fraction=args.render_fraction,
        disable=disable,
        force=force,
    )

    count = args.pages if args.out is not None else min(args.pages, PREVIEW_SAMPLES)
    keep = PREVIEW_SAMPLES if args.preview else 0
    previews = []
    pixels = 0
    t0 = time.perf_counter()
    sink = ShardSink(args.out, args.shard_size) if args.out is not None else None
    with tqdm(total=count, unit="page", disable=None, file=sys.stderr) as bar:
        try:
            for s in generate(cfg, count, args.workers, keep):
                if sink is not None:
                    sink.write(s.record)
                if s.arrays is not None:
                    previews.append(s.arrays)
                pixels += s.pixels
                bar.update(1)
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
    if sink is not None:
        sink.close()
    dt = max(time.perf_counter() - t0, 1e-9)
    if args.preview:
        sheet = contact_sheet(previews)
        fmt = "jpeg" if args.preview.lower().endswith((".jpg", ".jpeg")) else None
        save_image(sheet, args.preview, fmt=fmt)
    mp = pixels / 1e6
    where = f" into {len(sink.written)} shard(s)" if sink is not None else ""
    print(
        f"{count} pages ({mp:.1f} MP){where} in {dt:.1f} s: {count / dt:.2f} pages/s, {mp / dt:.2f} MP/s"
        + (f"; preview {args.preview}" if args.preview else "")
    )
    return 0

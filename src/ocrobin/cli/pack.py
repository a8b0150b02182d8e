"""``ocrobin shards``: pack DIBCO-style folders (SET/img, SET/gt) into training shards."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..exceptions import DataError, InputError, UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def add_parser(subparsers: Any, name: str) -> argparse.ArgumentParser:
    """Register the sub-command."""
    p = subparsers.add_parser(
        name,
        help="pack DIBCO-style image/ground-truth folders into shards",
        description="Find DIBCO-style sets below DIR (folders holding img/ and gt/ with matching file stems; "
        "DIR may itself be a set) and write their pairs as gray.png / bin.png / json samples. "
        "Pairs with a missing file or different sizes are reported and skipped (exit status 1).",
    )
    p.add_argument("--pairs", required=True, metavar="DIR", help="root of the DIBCO-style sets")
    p.add_argument(
        "--out",
        required=True,
        metavar="PATTERN",
        help="shard names with one integer field, e.g. 'real-%%06d.tar'",
    )
    p.add_argument("--shard-size", type=int, default=100, metavar="K", help="pairs per shard (default 100)")
    p.add_argument("--rgb", action="store_true", help="keep colour images in colour (default: 8-bit grey)")
    return p


def safe_key(set_name: str, stem: str) -> str:
    """Sample key ``SET_stem`` with dots and other separators replaced (webdataset splits keys at dots)."""
    return _UNSAFE.sub("_", f"{set_name}_{stem}").strip("_") or "page"


def _image_bytes(path: Path, rgb: bool) -> tuple[bytes, tuple[int, int]]:
    """The page re-encoded as an 8-bit PNG (grey, or RGB for colour pages with ``rgb``) and its (h, w)."""
    import numpy as np
    from PIL import Image, ImageOps

    from ..imageio import encode_png, read_gray

    if rgb:
        try:
            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA", "LA", "RGBa"):
                    im = ImageOps.exif_transpose(im)
                    rgba = im.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    colour = Image.alpha_composite(white, rgba).convert("RGB")
                    a = np.asarray(colour)
                    if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])):
                        return encode_png(a), a.shape[:2]
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read ({e})") from e
    g = read_gray(path)
    return encode_png(np.round(g * 255.0).astype(np.uint8)), g.shape


def run(args: argparse.Namespace) -> int:
    """Pack the pairs; report and skip bad ones; exit 1 if any was skipped."""
    import numpy as np

    from ..datasets import find_pairs
    from ..imageio import encode_png, read_ground_truth
    from ..shards import ShardSink
    from .degrade import check_pattern

    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {args.shard_size}")
    check_pattern(args.out)
    root = Path(args.pairs)
    pages = find_pairs(root)
    if not pages:
        raise DataError(f"{root}: no DIBCO-style sets (SET/img + SET/gt) found")
    from ..paths import check_no_clash
    from ..shards import shard_name

    inputs = [f for pf in pages for f in (pf.img, pf.gt) if f is not None]
    check_no_clash(inputs, [shard_name(args.out, i) for i in range(-(-len(pages) // args.shard_size))],
                   "output shard")
    problems = 0
    packed = 0
    sets: set[str] = set()
    keys: set[str] = set()

    def skip(msg: str) -> None:
        nonlocal problems
        problems += 1
        print(f"ocrobin shards: skipped {msg}", file=sys.stderr)

    with ShardSink(args.out, args.shard_size) as sink:
        for pf in pages:
            if pf.gt is None:
                skip(f"{pf.img}: no ground truth in {pf.img.parent.parent / 'gt'}")  # type: ignore[union-attr]
                continue
            if pf.img is None:
                skip(f"{pf.gt}: no image in {pf.gt.parent.parent / 'img'}")
                continue
            try:
                gray, shape = _image_bytes(pf.img, args.rgb)
                ink = read_ground_truth(pf.gt)
            except InputError as e:
                skip(str(e))
                continue
            if ink.shape != tuple(shape):
                skip(
                    f"{pf.gt}: size {ink.shape[1]}x{ink.shape[0]} differs from {pf.img} "
                    f"({shape[1]}x{shape[0]})"
                )
                continue
            key = safe_key(pf.set, pf.stem)
            if key in keys:
                skip(f"{pf.img}: key {key!r} already used by another page")
                continue
            keys.add(key)
            meta = {
                "set": pf.set,
                "stem": pf.stem,
                "source": "pairs",
                "size": [int(shape[0]), int(shape[1])],
                "img": pf.img.name,
                "gt": pf.gt.name,
            }
            sink.write(
                {
                    "__key__": key,
                    "gray.png": gray,
                    "bin.png": encode_png(np.where(ink, 0, 255).astype(np.uint8)),
                    "json": json.dumps(meta, sort_keys=True, separators=(",", ":")).encode(),
                }
            )
            packed += 1
            sets.add(pf.set)
    print(
        f"{packed} pairs from {len(sets)} set(s) into {len(sink.written)} shard(s)"
        + (f"; {problems} skipped" if problems else "")
    )
    return 1 if problems else 0

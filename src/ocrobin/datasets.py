"""DIBCO-style folders (``SET/img/<stem>.*`` and ``SET/gt/<stem>.*``): the one place that knows that layout.

Training, benchmarks, ``ocrobin shards`` and ``ocrobin degrade --pairs`` all find their pages here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .exceptions import DataError
from .imageio import IMAGE_SUFFIXES

_GT_SUFFIXES = ("", "_gt", "_GT", "-gt", "-GT", "_mask")


@dataclass
class PairFiles:
    """One page of a DIBCO-style set: ``SET/img/<stem>.*`` and ``SET/gt/<stem>.*``."""

    set: str
    stem: str
    img: Path | None
    gt: Path | None


def find_sets(root: str | os.PathLike[str]) -> list[Path]:
    """Folders below ``root`` (or ``root`` itself) that hold an ``img`` or ``gt`` sub-folder, sorted.

    Raises:
        DataError: ``root`` is not a directory.
    """
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"{r}: no such directory")
    if (r / "img").is_dir() or (r / "gt").is_dir():
        return [r]
    sets = []
    for dirpath, dirs, _files in os.walk(r):
        dirs.sort()
        d = Path(dirpath)
        if (d / "img").is_dir() or (d / "gt").is_dir():
            sets.append(d)
            dirs[:] = []
    return sets


def images_by_stem(d: Path) -> dict[str, Path]:
    """Image files of one folder by stem (the first in name order where several share a stem)."""
    out: dict[str, Path] = {}
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                out.setdefault(p.stem, p)
    return out


def find_pairs(root: str | os.PathLike[str]) -> list[PairFiles]:
    """Every page of every DIBCO-style set under ``root``; ``img`` or ``gt`` is None where it is missing.

    The set name is the set folder's path relative to ``root`` (its own name when ``root`` is a set).

    Raises:
        DataError: ``root`` is not a directory.
    """
    r = Path(root)
    out = []
    for s in find_sets(r):
        name = s.name if s == r else s.relative_to(r).as_posix()
        imgs, gts = images_by_stem(s / "img"), images_by_stem(s / "gt")
        used: set[str] = set()
        for stem, img in imgs.items():
            gt = None
            for suf in _GT_SUFFIXES:
                if stem + suf in gts:
                    gt = gts[stem + suf]
                    used.add(stem + suf)
                    break
            out.append(PairFiles(name, stem, img, gt))
        for gstem, gt in gts.items():
            if gstem not in used:
                out.append(PairFiles(name, gstem, None, gt))
    return out


def complete_pairs(root: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """(image, ground truth) of every page under ``root`` that has both.

    Raises:
        DataError: ``root`` is not a directory, holds no set, or no complete pair.
    """
    pairs = find_pairs(root)
    if not pairs:
        raise DataError(f"{root}: no DIBCO-style set (SET/img and SET/gt) found")
    done = [(p.img, p.gt) for p in pairs if p.img is not None and p.gt is not None]
    if not done:
        raise DataError(f"{root}: no img/gt pairs found")
    return done

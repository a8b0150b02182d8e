"""Output paths must never be input paths: one check for every command that reads some files and writes others.

A run that writes over its own inputs destroys them (an output shard pattern equal to the input pattern),
and one that reads its own outputs pollutes every rerun (``scans/`` binarized into ``scans/bin/``). Paths
are compared resolved (symlinks, ``..``) and, where both exist, as the same file on disk, which also
catches case-insensitive file systems.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .exceptions import UsageError

PathLike = str | os.PathLike[str]


def resolved(path: PathLike) -> Path:
    """The absolute path with symlinks and ``..`` resolved (the path need not exist)."""
    return Path(os.path.realpath(os.fspath(path)))  # realpath, not abspath first: link/.. is the parent of its target


def _key(path: Path) -> tuple[str, tuple[int, int] | None]:
    try:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    except OSError:
        ident = None
    return os.path.normcase(str(path)), ident


def check_no_clash(inputs: Iterable[PathLike], outputs: Iterable[PathLike], what: str = "output") -> None:
    """Refuse a run whose outputs include one of its inputs.

    Args:
        inputs: every file the run reads.
        outputs: every file the run may write.
        what: how to call an output in the message.

    Raises:
        UsageError: one line naming the output and the input it would overwrite.
    """
    by_name: dict[str, Path] = {}
    by_file: dict[tuple[int, int], Path] = {}
    for p in inputs:
        if "://" in os.fspath(p):
            continue
        r = resolved(p)
        name, ident = _key(r)
        by_name[name] = Path(p)
        if ident is not None:
            by_file[ident] = Path(p)
    if not by_name:
        return
    for o in outputs:
        r = resolved(o)
        name, ident = _key(r)
        src = by_name.get(name) or (by_file.get(ident) if ident is not None else None)
        if src is not None:
            raise UsageError(f"{what} {o} is the input {src}: it would be overwritten (choose another {what})")


def inside(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved)."""
    p, f = resolved(path), resolved(folder)
    return p == f or f in p.parents

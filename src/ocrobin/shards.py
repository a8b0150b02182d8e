"""Tar shards in the webdataset layout: the one place that knows ``KEY.gray.png`` / ``KEY.bin.png``.

Samples are dicts of raw bytes keyed by extension (``"gray.png"``, ``"bin.png"``, ``"json"``) plus
``__key__``; decoding images is :mod:`ocrobin.imageio`'s job. Reading is webdataset's; writing goes
through :class:`ShardSink`, which writes each shard to a temporary name and renames it when complete,
so a killed job never leaves a half-written shard under the final name.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

# webdataset is imported where it is used: a run over files never needs it, and importing it in the fork
# server would hold every run's first page up by a fifth of a second.
if TYPE_CHECKING:
    import webdataset as wds

from .exceptions import ShardError

#: Key of the input page in a training / prediction sample (the original ocrobin's convention).
GRAY_KEY = "gray.png"
#: Key of the ground truth or output: 0 = ink, 255 = paper.
BIN_KEY = "bin.png"
#: Key of the 8-bit ink probability written by ``--prob``.
PROB_KEY = "prob.png"
#: Key of the per-sample JSON metadata.
JSON_KEY = "json"

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "ppm", "pgm", "pbm", "pnm", "bmp", "webp")

Handler = Callable[[Exception], bool]


def reraise(exn: Exception) -> bool:
    """Error policy for library calls: stop at the first problem."""
    raise exn


def expand_urls(spec: str | Iterable[str]) -> list[str]:
    """Expand brace patterns (``in-{000000..000009}.tar``) into a list of shard paths or URLs."""
    from webdataset.shardlists import expand_urls as expand

    if isinstance(spec, str):
        return list(expand(spec))
    urls: list[str] = []
    for s in spec:
        urls.extend(expand(s))
    return urls


def iter_samples(
    urls: str | Iterable[str],
    handler: Handler = reraise,
    shuffle_shards: bool = False,
    seed: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield raw samples (``__key__``, ``__url__`` and bytes per extension) from shards in order.

    Args:
        urls: a brace pattern or a list of shard paths.
        handler: webdataset error handler; :func:`reraise` stops, ``wds.warn_and_continue`` skips.
        shuffle_shards: visit shards in a random order (training).
        seed: seed for the shard order.

    Raises:
        ShardError: a shard does not exist (with the default handler).
    """
    paths = expand_urls(urls)
    for p in paths:
        if "://" not in p and not p.startswith("pipe:") and not os.path.exists(p):
            err = ShardError(f"{p}: shard not found")
            if handler(err):
                continue
    existing = [p for p in paths if "://" in p or p.startswith("pipe:") or os.path.exists(p)]
    if not existing:
        return
    import webdataset as wds

    ds = wds.WebDataset(
        existing,
        handler=handler,
        shardshuffle=len(existing) if shuffle_shards else False,
        seed=seed,
        empty_check=False,
        nodesplitter=None,  # every process reads what it is given; callers split work themselves
    )
    yield from ds


def image_key(sample: dict[str, Any], preferred: str = GRAY_KEY) -> str:
    """Return the key holding the input page: ``preferred`` or its stem with any image extension.

    Raises:
        ShardError: no such key in the sample (message names the sample and the keys it has).
    """
    if preferred in sample:
        return preferred
    stem = preferred.split(".")[0]
    for ext in IMAGE_EXTENSIONS:
        if f"{stem}.{ext}" in sample:
            return f"{stem}.{ext}"
    keys = sorted(k for k in sample if not k.startswith("__"))
    raise ShardError(
        f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')!r} has no {preferred!r} "
        f"(keys: {', '.join(keys) or 'none'})"
    )


def shard_name(pattern: str, index: int) -> str:
    """Format an output shard name from a ``%06d``-style pattern."""
    try:
        return pattern % index
    except TypeError as e:
        raise ShardError(f"output pattern {pattern!r} needs one integer field such as %06d") from e


class ShardSink:
    """Write samples into numbered shards, each written atomically.

    Args:
        pattern: output name with one integer field, e.g. ``out-%06d.tar``.
        maxcount: samples per shard (a new shard starts after that many).
        start: number of the first shard.
    """

    def __init__(self, pattern: str, maxcount: int = 1000, start: int = 0) -> None:
        if maxcount < 1:
            raise ShardError("shard size must be at least 1")
        shard_name(pattern, 0)
        self.pattern = pattern
        self.maxcount = maxcount
        self.index = start
        self.count = 0
        self.written: list[str] = []
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._stream: io.BufferedWriter | None = None
        self._writer: wds.TarWriter | None = None

    def _open(self) -> None:
        self._final = Path(shard_name(self.pattern, self.index))
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self._final.with_name(f".{self._final.name}.{os.getpid()}.tmp")
        self._stream = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close
        import webdataset as wds

        self._writer = wds.TarWriter(self._stream, encoder=False, mtime=0)
        self.count = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        assert self._stream is not None and self._tmp is not None and self._final is not None
        if not self._stream.closed:
            self._stream.close()
        os.replace(self._tmp, self._final)
        self.written.append(str(self._final))
        self._writer = None
        self._stream = None
        self.index += 1

    def open(self) -> None:
        """Start the next shard now, so that closing writes it even when it stays empty."""
        if self._writer is None:
            self._open()

    def write(self, sample: dict[str, Any]) -> None:
        """Add one sample (``__key__`` plus bytes per extension)."""
        if "__key__" not in sample:
            raise ShardError("sample has no __key__")
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write({k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")})
        self.count += 1
        if self.count >= self.maxcount:
            self._close()

    def abort(self, keep: bool = False) -> None:
        """Drop the shard in progress: its temporary file is removed, or with ``keep`` left for the next
        run to find (and remove), so that it can say a shard was interrupted."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                if self._tmp is not None and self._tmp.exists() and not keep:
                    self._tmp.unlink()
                self._writer = None

    def close(self) -> None:
        """Finish the shard in progress."""
        self._close()

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # only a complete run gives a shard its final name: an interrupted one is not finished
        if exc_type is None:
            self.close()
        else:
            self.abort(keep=exc_type is KeyboardInterrupt)


def count_samples(path: str) -> int:
    """Number of distinct sample keys in one tar shard (used to skip finished shards)."""
    keys = set()
    with tarfile.open(path) as tf:
        for m in tf:
            if m.isfile():
                keys.add(m.name.split(".", 1)[0])
    return len(keys)

"""Binarize webdataset shards on a Ray cluster (extra ``ocrobin[ray]``), or on one machine with Ray.

The pipeline is Ray Data's: a task per input shard reads its samples (``flat_map``), a pool of actors
runs the model (``map_batches`` with a callable class, so each worker loads the model once), and the
driver collects the results and writes output shard *i* for input shard *i* as soon as all its samples
are back. Each output shard is written atomically, so a rerun skips the finished ones (unless
``overwrite``). Samples that cannot be read or binarized are listed, one JSON object per line, in an
errors file with their shard, key and reason; the errors of a shard are written before the shard itself,
and entries of shards that are redone are dropped first, so the file always matches the finished output.

Workers receive the loaded model from the driver, so the model file need only exist where the driver
runs; input shards must be readable by every node (a shared file system or URLs), and outputs are
written by the driver.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import shards
from .batch import Summary, binarize_sample, plan_shards
from .exceptions import OcrobinError, ShardError, UsageError
from .imageio import atomic_path
from .infer import DEFAULT_OVERLAP, Binarizer, load
from .modelfile import ModelInfo

#: Name of the errors file written next to the output shards unless one is named.
ERRORS_NAME = "errors.jsonl"

# Row kinds flowing through the pipeline (all rows have the same columns so Ray can stack them).
_PAGE, _DONE, _ERROR, _END = "page", "done", "error", "end"


def _row(shard: int, seq: int, kind: str, key: str = "", ext: str = "", data: bytes = b"", prob: bytes = b"",
         reason: str = "", pixels: int = 0, count: int = 0, readable: bool = True) -> dict[str, Any]:
    return {"shard": shard, "seq": seq, "kind": kind, "key": key, "ext": ext, "data": data, "prob": prob,
            "reason": reason, "pixels": pixels, "count": count, "readable": readable}


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def read_shard(item: dict[str, Any], input_key: str = shards.GRAY_KEY) -> Iterator[dict[str, Any]]:
    """Rows for one input shard: one per sample (its input image bytes) or read error, then an end row.

    The end row carries how many rows came before it, so the driver knows when the shard is complete,
    and whether the shard could be opened at all (a missing shard gets no output shard, so a rerun
    retries it).
    """
    index, url = int(item["shard"]), str(item["url"])
    if _is_local(url) and not os.path.isfile(url):
        yield _row(index, 0, _ERROR, reason=f"{url}: shard not found")
        yield _row(index, 1, _END, count=1, readable=False)
        return
    problems: list[Exception] = []

    def on_error(exn: Exception) -> bool:
        problems.append(exn)
        return True

    seq = 0

    def drain() -> Iterator[dict[str, Any]]:
        nonlocal seq
        while problems:
            exn = problems.pop(0)
            msg = str(exn) if isinstance(exn, OcrobinError) else f"{type(exn).__name__}: {exn}"
            yield _row(index, seq, _ERROR, reason=msg if url in msg else f"{url}: {msg}")
            seq += 1

    for sample in shards.iter_samples([url], handler=on_error):
        yield from drain()
        key = str(sample.get("__key__", ""))
        try:
            found = shards.image_key(sample, input_key)
        except ShardError as e:
            yield _row(index, seq, _ERROR, key=key, reason=str(e))
        else:
            yield _row(index, seq, _PAGE, key=key, ext=found, data=sample[found])
        seq += 1
    yield from drain()
    yield _row(index, seq, _END, count=seq)


class BinarizeActor:
    """Ray Data callable class: loads the model once per worker, binarizes batches of page rows.

    Args:
        info: the loaded model, shipped from the driver.
        url_of: input shard URL by shard number (for error messages).
        threshold, prob, invert: as in :func:`ocrobin.batch.binarize_sample`.
        threads: torch threads per worker.
        tile, overlap: tiling of large pages, as in :class:`ocrobin.infer.Binarizer`.
    """

    def __init__(self, info: ModelInfo, url_of: dict[int, str], threshold: float = 0.5, prob: bool = False,
                 invert: bool = False, threads: int = 1, tile: int | None = None,
                 overlap: int = DEFAULT_OVERLAP) -> None:
        self.binarizer = Binarizer(info, threads=threads, tile=tile, overlap=overlap)
        self.url_of = url_of
        self.threshold = threshold
        self.prob = prob
        self.invert = invert

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        return _columns([self._one({k: v[i] for k, v in batch.items()}) for i in range(n)])

    def _one(self, r: dict[str, Any]) -> dict[str, Any]:
        shard, seq, kind = int(r["shard"]), int(r["seq"]), str(r["kind"])
        if kind != _PAGE:
            return _row(shard, seq, kind, key=str(r["key"]), reason=str(r["reason"]), count=int(r["count"]),
                        readable=bool(r["readable"]))
        key, found = str(r["key"]), str(r["ext"])
        url = self.url_of.get(shard, "?")
        sample = {"__key__": key, "__url__": url, found: bytes(r["data"])}
        try:
            res = binarize_sample(self.binarizer, sample, input_key=found, t=self.threshold, prob=self.prob,
                                  invert=self.invert)
        except Exception as e:  # noqa: BLE001 - any failure of one page is recorded, not fatal to the run
            msg = str(e) if isinstance(e, OcrobinError) else f"{type(e).__name__}: {e}"
            return _row(shard, seq, _ERROR, key=key, reason=msg if key in msg else f"{url}:{key}: {msg}")
        w, h = _png_size(res[shards.BIN_KEY])
        return _row(shard, seq, _DONE, key=key, data=res[shards.BIN_KEY], prob=res.get(shards.PROB_KEY, b""),
                    pixels=w * h)


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows to a numpy batch: text and bytes as object arrays, numbers and flags typed."""
    cols: dict[str, np.ndarray] = {}
    for k, v in _row(0, 0, _END).items():
        values = [r[k] for r in rows]
        dtype = object if isinstance(v, (str, bytes)) else (bool if isinstance(v, bool) else np.int64)
        cols[k] = np.array(values, dtype=dtype)
    return cols


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG header (the IHDR chunk), without decoding."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@dataclass
class _Shard:
    """What the driver has received of one input shard."""

    index: int
    url: str
    out: str
    pages: list[tuple[int, str, bytes, bytes, int]] = field(default_factory=list)
    errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    seen: int = 0
    expected: int | None = None
    readable: bool = True


def _keep_errors(path: Path, redo: set[str]) -> None:
    """Drop the errors file's entries of shards about to be redone (other lines are kept as they are)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            shard = json.loads(line).get("shard")
        except (json.JSONDecodeError, AttributeError):
            shard = None
        if shard not in redo and line.strip():
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _connect(address: str | None, cpus: int) -> bool:
    """Start or join Ray; True when this call started it (and so must stop it).

    A local instance gets ``cpus`` logical CPUs (the model workers' plus one for the shard readers).
    """
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=cpus, **common)
    return True


def binarize_shards_ray(
    model: Any,
    inputs: list[str],
    output_pattern: str,
    *,
    input_key: str = shards.GRAY_KEY,
    threshold: float = 0.5,
    prob: bool = False,
    invert: bool = False,
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    errors_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    threads: int = 1,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
) -> Summary:
    """Binarize webdataset shards with Ray Data; input shard *i* becomes ``output_pattern % i``.

    Args:
        model: anything :func:`ocrobin.infer.load` takes; loaded once here and shipped to the workers.
        inputs: shard paths or brace patterns (``in-{000000..000999}.tar``).
        output_pattern: output shard name with one integer field (``out-%06d.tar``).
        input_key: sample key of the input page (other image extensions of its stem are accepted).
        threshold: ink threshold on the probability.
        prob: also store the 8-bit ink probability (``prob.png``).
        invert: invert the input pages (white text on black).
        address: Ray cluster to join (``host:6379``, ``auto`` or ``ray://host:10001``); None uses
            ``RAY_ADDRESS`` if set, else starts a local Ray instance (unless this process has one already).
        num_workers: model workers (actors); None: one per CPU locally, all CPUs but one on a cluster.
        batch_size: pages handed to a worker at once (bounds the memory in flight per worker).
        overwrite: redo output shards that exist (default: skip them).
        errors_path: JSON-lines file of failed samples (default: ``errors.jsonl`` beside the outputs).
        progress: show a progress bar of pages.
        threads: torch threads per worker (each worker reserves one Ray CPU).
        tile: tile side of large pages (None: automatic, 0: never), as in :class:`ocrobin.infer.Binarizer`.
        overlap: context pixels around each tile.

    Returns:
        the counters of the run; ``skipped`` counts the samples of output shards that were skipped.

    Raises:
        UsageError: no shards, a pattern that does not number the shards, or Ray is not installed.
        ModelError: the model cannot be loaded.
    """
    try:
        import ray
    except ImportError as e:
        raise UsageError("the ray engine needs the ray extra: pip install 'ocrobin[ray]'") from e
    urls, outs = plan_shards(inputs, output_pattern)
    if batch_size < 1:
        raise UsageError("batch size must be at least 1")
    if num_workers is not None and num_workers < 1:
        raise UsageError("number of workers must be at least 1")
    errors_file = Path(errors_path) if errors_path else Path(output_pattern).parent / ERRORS_NAME
    summary = Summary()
    todo: dict[int, _Shard] = {}
    for i, (url, out) in enumerate(zip(urls, outs, strict=True)):
        if not overwrite and os.path.exists(out):
            summary.skipped += shards.count_samples(out)
        else:
            todo[i] = _Shard(i, url, out)
    if not todo:
        return summary
    info = load(model)
    info = ModelInfo(info.model.cpu().eval(), dict(info.meta), info.path)  # without training state
    errors_file.parent.mkdir(parents=True, exist_ok=True)
    _keep_errors(errors_file, {s.url for s in todo.values()})

    address = address or os.environ.get("RAY_ADDRESS") or None
    threads = max(1, int(threads))
    t0 = time.perf_counter()
    bar = None
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    started = False
    try:
        local_workers = num_workers or max(1, (os.cpu_count() or 1) // threads)
        started = _connect(address, local_workers * threads + 1)
        if num_workers:
            workers = num_workers
        elif started and not address:
            workers = local_workers
        else:  # an existing instance or cluster: all its CPUs but one (for the readers)
            workers = max(1, (int(ray.cluster_resources().get("CPU", 2)) - 1) // threads)
        ctx.enable_progress_bars = False  # one bar of our own instead of one per operator
        items = [{"shard": s.index, "url": s.url} for s in todo.values()]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.flat_map(read_shard, fn_kwargs={"input_key": input_key}, num_cpus=0.5)
        ds = ds.map_batches(
            BinarizeActor,
            fn_constructor_kwargs={"info": info, "url_of": {s.index: s.url for s in todo.values()},
                                   "threshold": threshold, "prob": prob, "invert": invert, "threads": threads,
                                   "tile": tile, "overlap": overlap},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=threads,
        )
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="page", dynamic_ncols=True, desc="binarize (ray)")
        finished = 0
        for row in ds.iter_rows():
            shard = todo[int(row["shard"])]
            kind = str(row["kind"])
            if kind == _END:
                shard.expected = int(row["count"])
                shard.readable = bool(row["readable"])
            else:
                shard.seen += 1
                key = str(row["key"]) or None
                if kind == _DONE:
                    shard.pages.append((int(row["seq"]), str(row["key"]), bytes(row["data"]),
                                        bytes(row["prob"]), int(row["pixels"])))
                else:
                    shard.errors.append((int(row["seq"]), key, str(row["reason"])))
                if bar is not None:
                    bar.update(1)
            if shard.expected is not None and shard.seen == shard.expected:
                _finish_shard(shard, output_pattern, errors_file, summary)
                finished += 1
                if bar is not None:
                    bar.set_postfix(failed=summary.failed, shards=f"{finished}/{len(todo)}")
    finally:
        ctx.enable_progress_bars = bars
        if bar is not None:
            bar.close()
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - t0
    return summary


def _finish_shard(shard: _Shard, pattern: str, errors_file: Path, summary: Summary) -> None:
    """Record a complete shard: its errors first, then its output shard (atomically)."""
    if shard.errors:
        with open(errors_file, "a", encoding="utf-8") as f:
            for _, key, reason in sorted(shard.errors, key=lambda e: e[0]):
                f.write(json.dumps({"shard": shard.url, "key": key, "reason": reason}) + "\n")
    for _, key, reason in shard.errors:
        summary.failed += 1
        summary.errors.append((f"{shard.url}:{key}" if key else shard.url, reason))
    if shard.readable:
        with shards.ShardSink(pattern, maxcount=1 << 62, start=shard.index) as sink:
            for _, key, data, prob, pixels in sorted(shard.pages, key=lambda p: p[0]):
                sample = {"__key__": key, shards.BIN_KEY: data}
                if prob:
                    sample[shards.PROB_KEY] = prob
                sink.write(sample)
                summary.done += 1
                summary.pixels += pixels
            sink.open()  # an input shard whose every sample failed still gets its (empty) output shard
    shard.pages.clear()

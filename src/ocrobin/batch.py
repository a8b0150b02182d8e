"""Batch binarization of files, directories, globs and tar shards.

The error policy is the caller's (``handler=``): the library default raises; the CLI reports one line
per bad input, counts it and goes on, and exits non-zero at the end. Outputs are written atomically and
existing ones are skipped unless ``overwrite``, so a killed batch resumes where it stopped.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import shards
from .exceptions import InputError, OcrobinError, ShardError, UsageError
from .imageio import IMAGE_SUFFIXES, decode_gray, encode_png, ink_to_image, iter_pages, prob_to_image, save_image
from .infer import Binarizer, threshold

ErrorHandler = Callable[[str, Exception], None]


def raise_error(name: str, exn: Exception) -> None:
    """Error policy of library calls: stop at the first bad input."""
    raise exn


@dataclass
class Summary:
    """Counters of a batch run."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    pixels: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Summary) -> None:
        """Merge another run's counters into this one."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed
        self.pixels += other.pixels
        self.seconds += other.seconds
        self.errors.extend(other.errors)

    def line(self) -> str:
        """One-line closing summary."""
        mps = self.pixels / 1e6 / self.seconds if self.seconds > 0 else 0.0
        return (f"done {self.done}, skipped {self.skipped}, failed {self.failed}; "
                f"{self.pixels / 1e6:.1f} MP in {self.seconds:.1f} s ({mps:.2f} MP/s)")


def reporting_handler(summary: Summary, write: Callable[[str], None] | None = None) -> ErrorHandler:
    """Error policy of a batch: print one line naming the input, count it, go on."""
    out = write or (lambda s: print(s, file=sys.stderr))

    def handle(name: str, exn: Exception) -> None:
        msg = str(exn) if isinstance(exn, OcrobinError) else f"{name}: {type(exn).__name__}: {exn}"
        if not msg.startswith(name):
            msg = f"{name}: {msg}"
        summary.failed += 1
        summary.errors.append((name, msg))
        out(f"ocrobin: error: {msg}")

    return handle


# ------------------------------------------------------------------------------------------------- files


@dataclass
class Job:
    """One input file and where its outputs go (``rel`` is the output path without suffix)."""

    path: Path
    rel: Path


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def collect_inputs(inputs: Iterable[str], handler: ErrorHandler = raise_error) -> list[Job]:
    """Expand files, directories (recursively, layout mirrored) and globs into jobs.

    Raises:
        InputError: an input matches nothing (with the default handler).
    """
    jobs: list[Job] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if _is_image(q))
            if not found:
                handler(spec, InputError(f"{spec}: directory holds no images"))
            jobs.extend(Job(q, q.relative_to(p).with_suffix("")) for q in found)
        elif p.is_file():
            jobs.append(Job(p, Path(p.stem)))
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            files = [m for m in matches if _is_image(m)]
            if not files:
                handler(spec, InputError(f"{spec}: no such file" if not matches else f"{spec}: matches no images"))
            jobs.extend(Job(m, Path(m.stem)) for m in files)
    seen: dict[Path, Path] = {}
    unique = []
    for j in jobs:
        if j.rel in seen:
            if seen[j.rel] != j.path:
                handler(str(j.path), InputError(f"{j.path}: output name clashes with {seen[j.rel]}"))
            continue
        seen[j.rel] = j.path
        unique.append(j)
    return unique


def output_paths(outdir: Path, rel: Path, page: int | None, fmt: str) -> tuple[Path, Path]:
    """(binary output, probability output) paths; ``page`` is 1-based for multi-page inputs."""
    stem = rel.name if page is None else f"{rel.name}-{page:04d}"
    base = outdir / rel.parent / stem
    ext = "tif" if fmt in ("tif", "tiff") else "png"
    return base.with_name(base.name + f".bin.{ext}"), base.with_name(base.name + ".prob.png")


def binarize_files(
    binarizer: Binarizer,
    jobs: list[Job],
    outdir: str | os.PathLike[str],
    *,
    fmt: str = "png",
    prob: bool = False,
    t: float = 0.5,
    invert: bool = False,
    overwrite: bool = False,
    handler: ErrorHandler = raise_error,
    progress: bool = False,
) -> Summary:
    """Binarize every page of every job into ``outdir``.

    Args:
        binarizer: the model to run.
        jobs: from :func:`collect_inputs`.
        outdir: output root; the inputs' relative layout is mirrored below it.
        fmt: ``png`` (1-bit PNG) or ``tif`` (1-bit TIFF, CCITT G4).
        prob: also write the 8-bit ink probability.
        t: ink threshold on the probability.
        invert: invert each page first (light text on a dark ground).
        overwrite: redo pages whose outputs exist (default: skip them).
        handler: error policy, called with (input name, exception).
        progress: show a progress bar.

    Returns:
        the counters of the run.
    """
    out = Path(outdir)
    summary = Summary()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="file", dynamic_ncols=True)
    t0 = time.perf_counter()
    for job in jobs:
        try:
            single_bin, single_prob = output_paths(out, job.rel, None, fmt)
            if not overwrite and single_bin.exists() and (not prob or single_prob.exists()):
                summary.skipped += 1
                continue
            for page in iter_pages(job.path):
                number = None if page.count == 1 else page.index + 1
                bin_path, prob_path = output_paths(out, job.rel, number, fmt)
                if not overwrite and bin_path.exists() and (not prob or prob_path.exists()):
                    summary.skipped += 1
                    continue
                p = binarizer.binarize(1.0 - page.gray if invert else page.gray)
                save_image(ink_to_image(threshold(p, t)), bin_path, page.dpi, fmt)
                if prob:
                    save_image(prob_to_image(p), prob_path, page.dpi, "png")
                summary.done += 1
                summary.pixels += int(p.size)
                del p
        except (OcrobinError, OSError, MemoryError) as e:
            handler(str(job.path), e)
        finally:
            if bar is not None:
                bar.update(1)
                el = time.perf_counter() - t0
                bar.set_postfix(pages_s=f"{summary.done / el:.2f}" if el > 0 else "-", failed=summary.failed)
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


# ------------------------------------------------------------------------------------------------ shards


def binarize_sample(binarizer: Binarizer, sample: dict[str, Any], input_key: str = shards.GRAY_KEY,
                    t: float = 0.5, prob: bool = False, invert: bool = False) -> dict[str, Any]:
    """Binarize one shard sample; returns the output sample (``__key__``, ``bin.png``[, ``prob.png``]).

    ``bin.png`` follows the training format: 0 = ink, 255 = paper, 8-bit.

    Raises:
        ShardError: the sample lacks the input key.
        InputError: the image cannot be decoded.
    """
    return _run_sample(binarizer, sample, input_key, t, prob, invert)[0]


def _run_sample(binarizer: Binarizer, sample: dict[str, Any], input_key: str, t: float, prob: bool,
                invert: bool) -> tuple[dict[str, Any], int]:
    key = shards.image_key(sample, input_key)
    name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}.{key}"
    gray = decode_gray(sample[key], name)
    if invert:
        gray = 1.0 - gray
    p = binarizer.binarize(gray)
    out: dict[str, Any] = {"__key__": sample["__key__"]}
    out[shards.BIN_KEY] = encode_png(np.where(threshold(p, t), 0, 255).astype(np.uint8))
    if prob:
        out[shards.PROB_KEY] = encode_png(prob_to_image(p))
    return out, int(p.size)


def shard_outputs(urls: list[str], pattern: str) -> list[str]:
    """Output shard names: input shard *i* goes to ``pattern % i``."""
    return [shards.shard_name(pattern, i) for i in range(len(urls))]


def plan_shards(inputs: str | list[str], output_pattern: str) -> tuple[list[str], list[str]]:
    """(input shards, output shards), one output per input.

    Raises:
        UsageError: no input shards, or a pattern that does not number the outputs.
    """
    urls = shards.expand_urls(inputs)
    if not urls:
        raise UsageError(f"{' '.join([inputs] if isinstance(inputs, str) else inputs)}: no shards")
    outs = shard_outputs(urls, output_pattern)
    if len(set(outs)) != len(outs):
        raise UsageError(f"output pattern {output_pattern!r} must number the shards (e.g. out-%06d.tar)")
    return urls, outs


def binarize_shards(
    binarizer: Binarizer,
    inputs: str | list[str],
    output_pattern: str,
    *,
    input_key: str = shards.GRAY_KEY,
    t: float = 0.5,
    prob: bool = False,
    invert: bool = False,
    overwrite: bool = False,
    handler: ErrorHandler = raise_error,
    progress: bool = False,
) -> Summary:
    """Binarize webdataset shards; input shard *i* becomes output shard ``output_pattern % i``.

    A finished output shard is skipped on a rerun unless ``overwrite``; a bad sample is reported through
    ``handler`` and left out of its output shard.
    """
    urls, outs = plan_shards(inputs, output_pattern)
    summary = Summary()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="page", dynamic_ncols=True)
    t0 = time.perf_counter()
    for i, (url, out) in enumerate(zip(urls, outs, strict=True)):
        if not overwrite and os.path.exists(out):
            summary.skipped += shards.count_samples(out)
            continue

        def on_read_error(exn: Exception, url: str = url) -> bool:
            handler(url, exn if isinstance(exn, OcrobinError) else ShardError(f"{url}: {exn}"))
            return True

        with shards.ShardSink(output_pattern, maxcount=1 << 62, start=i) as sink:
            for sample in shards.iter_samples([url], handler=on_read_error):
                name = f"{url}:{sample.get('__key__', '?')}"
                try:
                    result, pixels = _run_sample(binarizer, sample, input_key, t, prob, invert)
                except OcrobinError as e:
                    handler(name, e)
                    continue
                sink.write(result)
                summary.done += 1
                summary.pixels += pixels
                if bar is not None:
                    bar.update(1)
            sink.open()
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary

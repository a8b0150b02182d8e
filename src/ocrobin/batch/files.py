"""Batch binarization of files: every page of every job into an output folder, resumable and shared.

Outputs are written atomically and existing ones are skipped unless ``overwrite``, so a killed batch
resumes where it stopped; several runs on one output folder split the pages through claims
(:mod:`.claims`); worker processes (:mod:`.workers`) keep every core busy; a run report gets one row per
page as it finishes (:mod:`.report`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import InputError
from ..imageio import atomic_path, iter_pages
from ..infer import Binarizer
from ..paths import resolved
from .claims import STALE_AFTER, Claims
from .common import PAGE_ERRORS, ErrorHandler, Options, Summary, error_message, raise_error
from .inputs import Job, output_paths
from .page import binarize_page
from .report import Report
from .workers import BinarizerSpec, Runner


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


@dataclass(frozen=True)
class FileTask:
    """One job as a worker gets it."""

    job: Job
    outdir: Path
    opts: Options
    inputs: frozenset[str] = frozenset()


@dataclass
class FileOutcome:
    """What a worker reports back for one job."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0
    skipped: int = 0
    pixels: int = 0
    errors: list[tuple[str, Exception]] = field(default_factory=list)


def _done_row(path: Path, number: int | None, out: Path, enc: Any, dpi: Any) -> dict[str, Any]:
    r = enc.result
    return {"input": str(path), "page": number, "output": str(out), "status": "done", "width": r.width,
            "height": r.height, "dpi": list(dpi) if dpi else None, "seconds": round(r.seconds, 4),
            "ink_fraction": round(r.ink_fraction, 6), "polarity": r.polarity,
            "confidence": round(r.confidence, 4), "flags": r.flags}


def run_file(binarizer: Binarizer, task: FileTask) -> FileOutcome:
    """Binarize every page of one file (in a worker or in this process); errors are returned, not raised."""
    job, opts = task.job, task.opts
    res = FileOutcome()
    number: int | None = None
    try:
        for page in iter_pages(job.path):
            number = None if page.count == 1 else page.index + 1
            bin_path, prob_path = output_paths(task.outdir, job.rel, number, opts.fmt)
            if not opts.overwrite and bin_path.exists() and (not opts.prob or prob_path.exists()):
                res.skipped += 1
                res.rows.append({"input": str(job.path), "page": number, "output": str(bin_path),
                                 "status": "skipped"})
                continue
            for out in (bin_path, prob_path) if opts.prob else (bin_path,):
                if str(resolved(out)) in task.inputs:
                    raise InputError(f"{job.path}: its output {out} is one of the inputs; not written")
            enc = binarize_page(binarizer, page, opts)
            write_bytes(bin_path, enc.binary)
            if enc.prob is not None:
                write_bytes(prob_path, enc.prob)
            res.done += 1
            res.pixels += enc.result.pixels
            res.rows.append(_done_row(job.path, number, bin_path, enc, page.dpi))
    except PAGE_ERRORS as e:
        res.errors.append((str(job.path), e))
        res.rows.append({"input": str(job.path), "page": number, "status": "failed",
                         "error": error_message(str(job.path), e)})
    return res


def _outputs_exist(outdir: Path, job: Job, opts: Options) -> bool:
    """Whether a single-page file's outputs exist (multi-page files are checked page by page as they run)."""
    b, p = output_paths(outdir, job.rel, None, opts.fmt)
    return b.exists() and (not opts.prob or p.exists())


def binarize_files(
    binarizer: Binarizer | None,
    jobs: list[Job],
    outdir: str | os.PathLike[str],
    *,
    fmt: str = "png",
    prob: bool = False,
    t: float = 0.5,
    invert: bool = False,
    polarity: str | None = None,
    overwrite: bool = False,
    handler: ErrorHandler = raise_error,
    progress: bool = False,
    workers: int = 1,
    spec: BinarizerSpec | None = None,
    report: Report | None = None,
    claims: bool = True,
    claim_timeout: float = STALE_AFTER,
) -> Summary:
    """Binarize every page of every job into ``outdir``.

    Args:
        binarizer: the model (None: built from ``spec``).
        jobs: from :func:`ocrobin.batch.find_inputs`.
        outdir: output root; the inputs' relative layout is mirrored below it.
        fmt: ``png`` (1-bit PNG) or ``tif`` (1-bit TIFF, CCITT G4).
        prob: also write the 8-bit ink probability.
        t: ink threshold on the probability.
        invert: same as ``polarity="inverted"``.
        polarity: ``auto``, ``normal`` or ``inverted`` (default: the binarizer's).
        overwrite: redo pages whose outputs exist (default: skip them).
        handler: error policy, called with (input name, exception).
        progress: show a progress bar.
        workers: worker processes (each loads the model from ``spec``).
        spec: how workers build their binarizer.
        report: run report to append a row per page to.
        claims: share the work with other runs on the same output folder.
        claim_timeout: seconds after which another host's untouched claim is taken over.

    Returns:
        the counters of the run.
    """
    out = Path(outdir)
    pol = "inverted" if invert else (polarity or (binarizer.polarity if binarizer is not None else None)
                                      or (spec.polarity if spec else "auto"))
    opts = Options(fmt=fmt, prob=prob, threshold=t, polarity=pol, overwrite=overwrite)
    inputs = frozenset(str(resolved(j.path)) for j in jobs)
    summary = Summary()
    owned = Claims(out, stale_after=claim_timeout) if claims else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="file", dynamic_ncols=True)
    t0 = time.perf_counter()
    deferred: list[Job] = []

    def row(**fields: Any) -> None:
        if report is not None:
            report.row(**fields)

    def tick(n: int = 1) -> None:
        if bar is not None:
            bar.update(n)
            el = time.perf_counter() - t0
            bar.set_postfix(pages_s=f"{summary.done / el:.2f}" if el > 0 else "-", failed=summary.failed)

    def elsewhere(job: Job) -> None:
        summary.elsewhere += 1
        row(input=str(job.path), output=str(output_paths(out, job.rel, None, opts.fmt)[0]), status="elsewhere")
        tick()

    # outputs there before this run started were done by earlier runs; those that appear later, by other runs
    done_before = [not overwrite and _outputs_exist(out, job, opts) for job in jobs]

    def todo() -> Iterator[FileTask]:
        for job, before in zip(jobs, done_before, strict=True):
            if before:
                b, _ = output_paths(out, job.rel, None, opts.fmt)
                summary.skipped += 1
                row(input=str(job.path), output=str(b), status="skipped")
                tick()
                continue
            if not overwrite and _outputs_exist(out, job, opts):
                elsewhere(job)
                continue
            if owned is not None:
                if not owned.claim(str(job.rel)):
                    deferred.append(job)
                    continue
                if not overwrite and _outputs_exist(out, job, opts):  # finished while we looked
                    owned.release(str(job.rel))
                    elsewhere(job)
                    continue
            yield FileTask(job, out, opts, inputs)
        # what other runs hold: wait for them, take over what they leave behind
        while deferred:
            assert owned is not None
            for job in list(deferred):
                if not owned._path(str(job.rel)).exists():  # let go: done, or given up (an interrupted run)
                    if _outputs_exist(out, job, opts):
                        deferred.remove(job)
                        elsewhere(job)
                    elif owned.claim(str(job.rel)):
                        deferred.remove(job)
                        yield FileTask(job, out, opts, inputs)
                elif owned.stale(str(job.rel)) and owned.claim(str(job.rel)):
                    deferred.remove(job)
                    yield FileTask(job, out, opts, inputs)
            if deferred:
                time.sleep(0.5)

    runner = Runner(binarizer, spec, workers if len(jobs) > 1 else 1)
    try:
        with runner:
            for task, res in runner.map(run_file, todo()):
                summary.done += res.done
                summary.skipped += res.skipped
                summary.pixels += res.pixels
                for r in res.rows:
                    row(**r)
                for name, e in res.errors:
                    handler(name, e)
                if owned is not None:
                    owned.release(str(task.job.rel))
                tick()
    finally:
        if owned is not None:
            owned.close()
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary

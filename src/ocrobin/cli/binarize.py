"""``ocrobin binarize``: binarize files, directories, globs or tar shards."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="binarize page images or tar shards",
        description="Binarize page images (files, directories recursively, globs) into 1-bit pages, or "
        "webdataset tar shards into shards. Existing outputs are skipped unless --overwrite, so a killed "
        "batch resumes. Bad inputs are reported one line each; the batch goes on and exits with status 1.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, directories or glob patterns")
    p.add_argument("-o", "--output", required=True,
                   help="output directory (files), or output shard pattern such as 'out-%%06d.tar' (--shards)")
    add_model_args(p)
    p.add_argument("--format", choices=("png", "tif"), default="png",
                   help="png: 1-bit PNG (default); tif: 1-bit TIFF with CCITT G4 compression")
    p.add_argument("--prob", action="store_true",
                   help="also write <stem>.prob.png (8-bit, floor(255 × ink probability)); prob.png in shards")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: skip them)")
    p.add_argument("--shards", nargs="+", metavar="SHARDS",
                   help="input webdataset shards, e.g. 'in-{000000..000009}.tar'; input shard i goes to "
                   "the output pattern formatted with i")
    p.add_argument("--input-key", default="gray.png",
                   help="sample key of the page in shards (other image extensions accepted; default gray.png)")
    p.add_argument("--polarity", choices=("auto", "normal", "inverted"), default="auto",
                   help="auto: find light-on-dark pages and regions and binarize them as text, output text "
                   "always black (default); normal: take pages as they are; inverted: light text on a dark "
                   "ground everywhere")
    p.add_argument("--invert", dest="polarity", action="store_const", const="inverted",
                   help="same as --polarity inverted")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes, each running whole pages (read, model, write) with its own model "
                   "(default: one per CPU up to 4; 1 on a GPU)")
    p.add_argument("--report", default=None, metavar="FILE",
                   help="run report: one row per page (.jsonl or .csv), appended and flushed as pages finish")
    p.add_argument("--claim-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="several runs on one output folder split the pages; a claim of another machine not "
                   "renewed for this long is taken over (default 60)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process; ray: Ray Data actors (shards only; extra ocrobin[ray])")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start Ray locally)")
    p.add_argument("--num-workers", type=int, default=None, help="Ray actors running the model")
    p.add_argument("--errors", default=None, metavar="FILE",
                   help="Ray: JSON lines of failed samples (default: errors.jsonl beside the output shards)")
    p.add_argument("--stall-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="Ray: stop when nothing progresses for this long, naming the stuck stage (0 = never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs a model."""
    p.add_argument("-m", "--model", default=None,
                   help="model: a name ('default', 'lstm2-seed'), our .safetensors file, a legacy .pt, or an "
                   ".onnx file with --backend onnxruntime (default: the packaged default model)")
    p.add_argument("--threshold", type=float, default=0.5, help="ink threshold on the probability (default 0.5)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    p.add_argument("--tile", type=int, default=None,
                   help="tile side in pixels (default: automatic above 4.5 MP; 0 = never tile)")
    p.add_argument("--overlap", type=int, default=128, help="context pixels around each tile (default 128)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model with PyTorch (default) or ONNX Runtime (extra ocrobin[onnx])")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the model over the page and its three flips (4x time)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: forward pass in bfloat16 (faster on CPUs with AVX512-BF16/AMX and on GPUs)")
    p.add_argument("--resize", type=float, default=1.0, metavar="S",
                   help="the model sees each page resized by S and the result comes back at the page's size: "
                   "0.5 for scans at twice the resolution of 300-dpi pages (thick strokes), 2 for 150 dpi "
                   "(default 1)")


def binarizer_spec(args: argparse.Namespace, threads: int | None = None):  # noqa: ANN201 - BinarizerSpec
    """How to build the binarizer the model options ask for (also in worker processes)."""
    from ..batch import BinarizerSpec

    return BinarizerSpec(model=args.model, device=args.device, tile=args.tile, overlap=args.overlap,
                         threads=threads if threads is not None else args.threads,
                         polarity=getattr(args, "polarity", "auto") or "auto", tta=getattr(args, "tta", False),
                         precision=getattr(args, "precision", "fp32"), backend=args.backend,
                         resize=getattr(args, "resize", 1.0))


def make_binarizer(args: argparse.Namespace):  # noqa: ANN201 - Binarizer or a subclass
    """The binarizer the model options ask for."""
    return binarizer_spec(args).build()


def _workers(args: argparse.Namespace, jobs: int) -> tuple[int, int | None]:
    """(worker processes, torch threads per worker) for ``jobs`` pages or shards."""
    from ..batch import cpu_count, default_workers
    from ..exceptions import UsageError

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    n = args.workers if args.workers is not None else default_workers(args.device)
    n = max(1, min(n, jobs))
    if n == 1:
        return 1, args.threads
    return n, args.threads or max(1, cpu_count() // n)


def _start_workers_early(args: argparse.Namespace) -> None:
    """When this run will likely use worker processes, start their fork server before this process imports
    torch, so that both imports run at once (see :mod:`ocrobin.runtime`)."""
    from ..runtime import cpu_count, start_worker_server

    if args.engine == "ray":
        return
    wanted = args.workers if args.workers is not None else (cpu_count() if args.device == "cpu" else 1)
    if wanted > 1 and (bool(args.shards) or several_files(args.inputs)):
        start_worker_server()


def several_files(inputs: list[str], scan: int = 10_000) -> bool:
    """Whether ``inputs`` (files and folders) hold at least two files that are not hidden, looking at no more
    than ``scan`` folder entries (past that, yes). Cheap on purpose: it runs before the heavy imports, so
    that a folder of one page starts no worker processes."""
    found = 0
    todo = list(inputs)
    while todo:
        path = todo.pop()
        if not os.path.isdir(path):
            found += 1
        else:
            try:
                with os.scandir(path) as entries:
                    for e in entries:
                        scan -= 1
                        if scan < 0:
                            return True
                        if e.name.startswith("."):
                            continue
                        if e.is_dir():
                            todo.append(e.path)
                        else:
                            found += 1
                        if found >= 2:
                            return True
            except OSError:
                continue  # reported by the walk proper
        if found >= 2:
            return True
    return False


def run(args: argparse.Namespace) -> int:
    _start_workers_early(args)
    from .. import batch
    from ..exceptions import UsageError

    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError("--threshold must lie in [0, 1]")
    progress = not args.no_progress
    if args.shards:
        if args.inputs:
            raise UsageError("give either input files or --shards, not both")
        if args.engine == "ray":
            from ..distributed import binarize_shards_ray

            if args.backend != "torch":
                raise UsageError("--engine ray runs the model with PyTorch; leave out --backend")
            summary = binarize_shards_ray(
                args.model, args.shards, args.output, input_key=args.input_key, threshold=args.threshold,
                prob=args.prob, polarity=args.polarity, address=args.address, num_workers=args.num_workers,
                overwrite=args.overwrite, progress=progress, errors_path=args.errors, report=args.report,
                threads=args.threads or 1, tile=args.tile, overlap=args.overlap, stall_timeout=args.stall_timeout,
            )
            for name, reason in summary.errors:
                print(f"ocrobin: error: {reason if reason.startswith(name) else f'{name}: {reason}'}", file=sys.stderr)
        else:
            from ..paths import check_no_clash

            urls, _ = batch.plan_shards(args.shards, args.output)
            if args.report:
                check_no_clash(urls, [args.report], "report")
            summary = batch.Summary()
            n, threads = _workers(args, 1 << 30)
            spec = binarizer_spec(args, threads)
            binarizer = binarizer_spec(args).build()
            handler = batch.reporting_handler(summary, _writer(progress))
            with _report(args) as report:
                summary.add(batch.binarize_shards(
                    binarizer, args.shards, args.output, input_key=args.input_key, t=args.threshold, prob=args.prob,
                    polarity=args.polarity, overwrite=args.overwrite, handler=handler, progress=progress,
                    workers=n, spec=spec, report=report, claim_timeout=args.claim_timeout,
                ))
    else:
        if args.engine == "ray":
            raise UsageError("--engine ray works on --shards")
        if not args.inputs:
            raise UsageError("no inputs given")
        summary = batch.Summary()
        write = _writer(progress)
        handler = batch.reporting_handler(summary, write)
        found = batch.find_inputs(args.inputs, handler, exclude=[args.output], notice=lambda s: write(f"ocrobin: {s}"))
        if found.ignored:
            write(f"ocrobin: {found.ignored} non-image or hidden file(s) ignored")
        batch.check_file_outputs(found.jobs, args.output, args.format, args.prob,
                                 [args.report] if args.report else [])
        n, threads = _workers(args, len(found.jobs))
        spec = binarizer_spec(args, threads)
        binarizer = binarizer_spec(args).build()
        with _report(args) as report:
            if report is not None:
                for name, msg in summary.errors:  # inputs the walk could not take: in the report too
                    report.row(input=name, status="failed", error=msg)
            summary.add(batch.binarize_files(
                binarizer, found.jobs, args.output, fmt=args.format, prob=args.prob, t=args.threshold,
                polarity=args.polarity, overwrite=args.overwrite, handler=handler, progress=progress,
                workers=n, spec=spec, report=report, claim_timeout=args.claim_timeout,
            ))
    print(summary.line(), file=sys.stderr)
    if summary.done:
        print(f"outputs in {args.output}", file=sys.stderr)
    return 1 if summary.failed else 0


@contextmanager
def _report(args: argparse.Namespace) -> Iterator[object]:
    if not args.report:
        yield None
        return
    from ..batch import Report

    with Report(args.report) as r:
        yield r


def _writer(progress: bool):  # noqa: ANN202
    if progress:
        from tqdm import tqdm

        return lambda s: tqdm.write(s, file=sys.stderr)
    return lambda s: print(s, file=sys.stderr)

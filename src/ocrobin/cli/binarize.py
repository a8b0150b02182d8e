"""``ocrobin binarize``: binarize files, directories, globs or tar shards."""

from __future__ import annotations

import argparse
import sys


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
    p.add_argument("--invert", action="store_true", help="invert the input first (light text on dark ground)")
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
                   help="tile side in pixels (default: automatic above 6 MP; 0 = never tile)")
    p.add_argument("--overlap", type=int, default=128, help="context pixels around each tile (default 128)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model with PyTorch (default) or ONNX Runtime (extra ocrobin[onnx])")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")


def make_binarizer(args: argparse.Namespace):  # noqa: ANN201 - Binarizer or a subclass
    """The binarizer the model options ask for."""
    if args.backend == "onnxruntime":
        from ..onnx import OnnxBinarizer

        return OnnxBinarizer(args.model, threads=args.threads, tile=args.tile, overlap=args.overlap)
    from ..infer import Binarizer

    return Binarizer(args.model, device=args.device, tile=args.tile, overlap=args.overlap, threads=args.threads)


def run(args: argparse.Namespace) -> int:
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
                prob=args.prob, invert=args.invert, address=args.address, num_workers=args.num_workers,
                overwrite=args.overwrite, progress=progress, errors_path=args.errors,
                threads=args.threads or 1, tile=args.tile, overlap=args.overlap, stall_timeout=args.stall_timeout,
            )
            for name, reason in summary.errors:
                print(f"ocrobin: error: {name}: {reason}", file=sys.stderr)
        else:
            summary = batch.Summary()
            binarizer = make_binarizer(args)
            handler = batch.reporting_handler(summary, _writer(progress))
            summary.add(batch.binarize_shards(
                binarizer, args.shards, args.output, input_key=args.input_key, t=args.threshold, prob=args.prob,
                invert=args.invert, overwrite=args.overwrite, handler=handler, progress=progress,
            ))
    else:
        if args.engine == "ray":
            raise UsageError("--engine ray works on --shards")
        if not args.inputs:
            raise UsageError("no inputs given")
        summary = batch.Summary()
        handler = batch.reporting_handler(summary, _writer(progress))
        jobs = batch.collect_inputs(args.inputs, handler)
        binarizer = make_binarizer(args)
        summary.add(batch.binarize_files(
            binarizer, jobs, args.output, fmt=args.format, prob=args.prob, t=args.threshold, invert=args.invert,
            overwrite=args.overwrite, handler=handler, progress=progress,
        ))
    print(summary.line(), file=sys.stderr)
    if summary.done:
        print(f"outputs in {args.output}", file=sys.stderr)
    return 1 if summary.failed else 0


def _writer(progress: bool):  # noqa: ANN202
    if progress:
        from tqdm import tqdm

        return lambda s: tqdm.write(s, file=sys.stderr)
    return lambda s: print(s, file=sys.stderr)

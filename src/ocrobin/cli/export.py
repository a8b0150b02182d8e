"""``ocrobin export MODEL --onnx OUT.onnx``: write a model as an ONNX graph for ONNX Runtime and others."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="export a model to ONNX, or a checkpoint as a shippable model file",
        description="Export a model to an ONNX graph with dynamic batch, height and width, store the model's "
        "metadata in the file, and check the graph against PyTorch on other page sizes before keeping it. "
        "Needs the onnx extra: pip install 'ocrobin[onnx]'.",
    )
    p.add_argument("model",
                   help="a packaged model name ('default', 'lstm2-seed'), a .safetensors file or a legacy "
                   ".pt")
    p.add_argument("--onnx", default=None, metavar="OUT.onnx", help="output ONNX file")
    p.add_argument("--release", default=None, metavar="OUT.safetensors",
                   help="write our model file without training state (optimizer, RNG, data positions): the "
                   "form in which a trained checkpoint is shipped")
    p.add_argument("--name", default=None, help="model name recorded in the --release file")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="with --release: calibrate the model so that the usual cut at probability 0.5 acts as a cut "
                   "at T of the checkpoint (a threshold found on training pages, see "
                   "benchmarks/threshold_sweep.py)")
    p.add_argument("--confidence", default=None, metavar="A,B",
                   help="with --release: the page confidence's calibration clip(A - B x uncertainty), fitted on "
                   "training pages of the released model (benchmarks/confidence.py --fit)")
    p.add_argument("--low-confidence", type=float, default=None, metavar="C",
                   help="with --release: pages below this confidence are flagged low-confidence")
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help="ONNX opset version (default: 17 with the torchscript exporter, 18 with dynamo)")
    p.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                   help="torch exporter: torchscript (tracing) or dynamo (torch.export); auto picks "
                   "torchscript where this torch has it")
    p.add_argument("--no-check", action="store_true",
                   help="skip running the graph in ONNX Runtime and comparing it with PyTorch")
    return p


def run(args: argparse.Namespace) -> int:
    from ..exceptions import UsageError

    if not args.onnx and not args.release:
        raise UsageError("give --onnx OUT.onnx and/or --release OUT.safetensors")
    if (args.threshold, args.confidence, args.low_confidence) != (None, None, None) and not args.release:
        raise UsageError("--threshold, --confidence and --low-confidence go into a --release file; give "
                         "--release OUT.safetensors")
    confidence = None
    if args.confidence:
        try:
            a, b = (float(v) for v in args.confidence.split(","))
        except ValueError:
            raise UsageError(f"--confidence wants A,B (two numbers), got {args.confidence!r}") from None
        confidence = (a, b)
    if args.release:
        from ..infer import load
        from ..modelfile import release_model
        from ..paths import check_no_clash

        info = load(args.model)
        if info.path:
            check_no_clash([info.path], [args.release])
        digest = release_model(info, args.release, name=args.name, threshold=args.threshold,
                               confidence=confidence, low_confidence=args.low_confidence)
        print(f"{args.release}: {info.meta['arch']}, {info.meta['parameters']} parameters, sha256 {digest[:16]}")
        if not args.onnx:
            return 0

    try:
        from ..onnx import export_onnx
    except ImportError as e:
        raise UsageError(f"ONNX export needs the onnx extra ({e.name} is missing): "
                         "pip install 'ocrobin[onnx]'") from e
    report = export_onnx(args.release or args.model, args.onnx, opset=args.opset, exporter=args.exporter,
                         check=not args.no_check)
    checked = "not checked" if report.max_diff is None else f"max |Δp| vs PyTorch {report.max_diff:.1e}"
    name = report.meta.get("name", report.meta.get("arch"))
    print(f"{report.path}: {name} ({report.meta.get('arch')}), opset {report.meta['onnx']['opset']}, "
          f"{report.exporter}, inputs {', '.join(report.inputs)}; {checked}")
    return 0

"""``ocrobin import-legacy IN.pt OUT``: convert an original ocrobin model to our safe format."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="convert an original (Python 2 / PyTorch 0.3) ocrobin .pt model to our format",
        description="Read a legacy whole-module pickle through an allow-list unpickler (nothing in the "
        "file is executed) and write safetensors weights with JSON metadata.",
    )
    p.add_argument("input", help="legacy model file (.pt)")
    p.add_argument("output", help="output model file (.safetensors)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..legacy import import_legacy
    from ..modelfile import save_model

    info = import_legacy(args.input)
    digest = save_model(args.output, info.model, info.meta)
    print(f"{args.output}: {info.meta['arch']}, {info.meta['parameters']} parameters, sha256 {digest[:16]}")
    return 0

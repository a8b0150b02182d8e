"""``ocrobin`` command line: one sub-module per sub-command, each with ``add_parser`` and ``run``.

The modules stay thin: they parse arguments, call the library and print summaries. Library errors
(:class:`ocrobin.exceptions.OcrobinError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..exceptions import OcrobinError

#: sub-command name -> module under ``ocrobin.cli``
COMMANDS = {
    "binarize": "binarize",
    "report": "report",
    "import-legacy": "import_legacy",
    "eval": "evaluate",
    "bench": "bench",
    "degrade": "degrade",
    "shards": "pack",
    "train": "train",
    "export": "export",
    "serve": "serve",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands whose module is absent are left out)."""
    parser = argparse.ArgumentParser(prog="ocrobin", description="Neural binarization of document images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(f"{__name__}.{modname}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{modname}":
                continue
            raise
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocrobin`` command; returns the exit status."""
    from ..runtime import release_freed_memory

    release_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except OcrobinError as e:
        print(f"ocrobin {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ocrobin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``ocrobin`` command line: one sub-module per sub-command, each with ``add_parser`` and ``run``.

The modules stay thin: they parse arguments, call the library and print summaries. Library errors
(:class:`ocrobin.exceptions.OcrobinError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
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


#: Sub-commands that end the process as soon as their work is done and written (see :func:`main`).
QUICK_EXIT = frozenset({"binarize"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocrobin`` command; returns the exit status.

    Run as the command (``argv`` None), a batch sub-command of :data:`QUICK_EXIT` ends the process once its
    outputs and report are written and every exit handler has run, without the interpreter's teardown of
    torch and the other modules: that costs a third of a second and frees nothing the system would not.
    """
    from ..runtime import release_freed_memory

    release_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        rc = int(args._run(args) or 0)
    except OcrobinError as e:
        print(f"ocrobin {args.command}: error: {e}", file=sys.stderr)
        rc = 2
    except KeyboardInterrupt:
        print(f"ocrobin {args.command}: interrupted", file=sys.stderr)
        rc = 130
    if argv is None and args.command in QUICK_EXIT:
        quick_exit(rc)
    return rc


def quick_exit(rc: int) -> None:
    """End the process now with status ``rc``: exit handlers run and output is flushed, module teardown is
    skipped."""
    import logging

    logging.shutdown()
    atexit._run_exitfuncs()  # multiprocessing's (pools, fork server, semaphores) among them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())

"""``ocrobin serve``: the binarizer as an HTTP service with a page to try it, on loopback by default."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields

#: Environment variable read when ``--token`` is not given (keeps the token out of the process list).
TOKEN_ENV = "OCROBIN_SERVE_TOKEN"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    from types import SimpleNamespace

    from ..serve.limits import Limits

    d = SimpleNamespace(**{f.name: f.default for f in fields(Limits)})  # the defaults, without checking them
    p = sub.add_parser(
        name,
        help="serve the binarizer over HTTP, with a browser page to try it",
        description="Serve POST /v1/binarize (the image as the body or a multipart field 'file'), GET /v1/models, "
        "GET /healthz, a page to try the models at / and the API description at /docs. Outputs are the bytes "
        "'ocrobin binarize' writes for the same image. Needs the serve extra: pip install 'ocrobin[serve]'.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("-m", "--model", action="append", default=None, metavar="MODEL",
                   help="a model to load (repeatable; the first is the default): 'default', 'lstm2-seed', a "
                   ".safetensors or a legacy .pt; requests pick one by its name (GET /v1/models)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="model runs at the same time, each in a thread (default: one per CPU, at most 4)")
    p.add_argument("--queue", type=int, default=d.queue, metavar="N",
                   help=f"requests that may wait for a worker; beyond them requests get 503 (default {d.queue})")
    p.add_argument("--timeout", type=float, default=d.timeout, metavar="SECONDS",
                   help="longest a request may take, reading its body included; then 504 and its work is "
                   f"cancelled (default {d.timeout:g})")
    p.add_argument("--max-mb", type=float, default=d.max_bytes / 1e6, metavar="MB",
                   help=f"largest request body in MB (10^6 bytes); larger ones get 413 (default {d.max_bytes / 1e6:g})")
    p.add_argument("--max-pixels", type=float, default=float(d.max_pixels), metavar="N",
                   help=f"largest page in pixels, read from the image header before decoding; larger ones get 413 "
                   f"(default {d.max_pixels:.0e})")
    p.add_argument("--token", default=None,
                   help=f"require 'Authorization: Bearer TOKEN' on every /v1/ request (default: ${TOKEN_ENV} "
                   "if set, else no token)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: torch's)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..exceptions import UsageError

    try:
        import uvicorn

        from ..serve import Limits, create_app
    except ImportError as e:
        raise UsageError(f"the HTTP service needs the serve extra ({e.name} is missing): "
                         "pip install 'ocrobin[serve]'") from e
    from ..batch import BinarizerSpec, default_workers

    workers = args.workers if args.workers is not None else default_workers(args.device)
    limits = Limits(max_bytes=int(args.max_mb * 1e6), max_pixels=int(args.max_pixels), workers=workers,
                    queue=args.queue, timeout=args.timeout)
    if not 0 < args.port < 65536:
        raise UsageError("--port must lie in 1..65535")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    binarizers = [BinarizerSpec(model=m, device=args.device, threads=args.threads).build()
                  for m in (args.model or ["default"])]
    app = create_app(binarizers, limits, token)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("ocrobin.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    host = f"[{args.host}]" if ":" in args.host else args.host
    names = ", ".join(b.name for b in binarizers)
    print(f"ocrobin serve: http://{host}:{args.port}/ (models {names}; {workers} workers, queue {limits.queue}, "
          f"timeout {limits.timeout:g} s, max {limits.max_bytes / 1e6:g} MB and {limits.max_pixels:,} pixels"
          f"{', token required' if token else ''})", file=sys.stderr, flush=True)
    if args.host not in LOOPBACK and not token:
        print(f"ocrobin serve: warning: listening on {args.host} without --token: anyone who reaches this port "
              "can use the service", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning", server_header=False)
    return 0

"""``ocrobin serve``: the binarizer over HTTP, and a browser page to try it, on FastAPI and uvicorn.

A thin layer over :mod:`ocrobin.batch`, like the command line: a request's page takes the same trip as a
file's (:func:`ocrobin.imageio.decode_pages`, then :func:`ocrobin.batch.binarize_page`), so a response holds
the bytes ``ocrobin binarize`` writes for the same image. What is HTTP's own lives here: what a request may
cost (:mod:`.limits`, :mod:`.body`), the bounded pool of model runs (:mod:`.pool`), the access log
(:mod:`.access`), the routes (:mod:`.app`) and the page's files (``static/``).

Needs the ``serve`` extra: ``pip install 'ocrobin[serve]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "Limits", "create_app"]


def __getattr__(name: str) -> Any:
    # imported on first use, so that ``ocrobin --help`` works (and starts fast) without the serve extra
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ApiError":
        from .errors import ApiError

        return ApiError
    if name == "Limits":
        from .limits import Limits

        return Limits
    raise AttributeError(f"module 'ocrobin.serve' has no attribute {name!r}")

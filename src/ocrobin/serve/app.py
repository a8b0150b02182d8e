"""The HTTP app: ``POST /v1/binarize``, ``GET /v1/models``, ``GET /healthz``, the page at ``/``, OpenAPI at ``/docs``.

:func:`create_app` takes binarizers that are already loaded (one process loads each model once) and
the service's :class:`~.limits.Limits`. Each request's page goes through :func:`.page.process`, in the
bounded pool of :mod:`.pool`; every error is one line of JSON, ``{"error": "..."}``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from .. import __version__
from ..exceptions import UsageError
from ..infer import Binarizer
from .access import AccessLog
from .body import FILE_FIELD, check_length, read_image
from .errors import ApiError
from .limits import Limits, check_pixels
from .page import FORMATS, process
from .pool import RunPool, Slot

#: The page's files (package data).
STATIC = Path(__file__).with_name("static")
#: The page may load nothing from anywhere but this server (and the object URLs of its own uploads).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ErrorBody(BaseModel):
    """What every error response holds."""

    error: str


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BODY = {"requestBody": {"required": True, "description": "The image (PNG, JPEG, TIFF, BMP, WebP, PNM, GIF, "
                         "JPEG 2000; the first page of a multi-page file): the raw request body, or the field "
                         f"'{FILE_FIELD}' of a multipart form.", "content": {
                             "application/octet-stream": _BINARY, "image/*": _BINARY,
                             "multipart/form-data": {"schema": {"type": "object", "required": [FILE_FIELD],
                                                                "properties": {FILE_FIELD: _BINARY["schema"]}}}}}}
_HEADERS = {
    "X-Ocrobin-Confidence": "the page's confidence in [0, 1] (high = the result can be trusted)",
    "X-Ocrobin-Polarity": "normal, inverted or inverted-regions",
    "X-Ocrobin-Flags": "comma-separated: blank, inverted, inverted-regions, low-confidence, ink-fraction-unusual",
    "X-Ocrobin-Ink-Fraction": "share of ink pixels",
    "X-Ocrobin-Size": "WIDTHxHEIGHT of the page",
    "X-Ocrobin-Seconds": "seconds of the model run",
    "X-Ocrobin-Model": "the model's name",
    "Server-Timing": "queue, decode, model and encode durations in milliseconds",
}


def _error_doc(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the 1-bit PNG or CCITT G4 TIFF (or the 8-bit probability, or the grey page), with the "
          "input's DPI: the bytes `ocrobin binarize` writes for the same image and options",
          "content": {"image/png": _BINARY, "image/tiff": _BINARY},
          "headers": {k: {"description": v, "schema": {"type": "string"}} for k, v in _HEADERS.items()}},
    400: _error_doc("not an image, a corrupt image, an empty or malformed body, or a bad parameter"),
    401: _error_doc("with --token: no or a wrong `Authorization: Bearer TOKEN`"),
    413: _error_doc("body over --max-mb, or page over --max-pixels (from the image header, before decoding)"),
    503: _error_doc("every worker busy and the queue full; see the Retry-After header"),
    504: _error_doc("the request took longer than --timeout; its work was cancelled"),
}


def _by_name(binarizers: Sequence[Binarizer]) -> dict[str, Binarizer]:
    if not binarizers:
        raise UsageError("the service needs at least one model")
    out: dict[str, Binarizer] = {}
    for b in binarizers:
        if b.name in out:
            raise UsageError(f"model {b.name!r} is loaded twice")
        out[b.name] = b
    return out


def _bearer(token: str) -> Any:
    """A dependency that answers 401 unless the request carries ``Authorization: Bearer TOKEN``."""
    scheme = HTTPBearer(auto_error=False, description="the service's --token")
    expected = token.encode()

    async def check(creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), expected):
            raise ApiError(401, "missing or wrong access token (Authorization: Bearer TOKEN)",
                           {"WWW-Authenticate": "Bearer"})

    return check


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _json_error(exc.status, exc.message, exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        return _json_error(400, "bad parameter: " + "; ".join(parts))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _json_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return _json_error(500, "internal error (see the server log)")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def create_app(binarizers: Sequence[Binarizer], limits: Limits | None = None, token: str | None = None) -> FastAPI:
    """The ASGI app serving ``binarizers``.

    Args:
        binarizers: loaded models; the first is the default, the others are picked with ``model=NAME``.
        limits: body, page, pool, queue and time bounds (defaults: :class:`Limits`).
        token: when given, every ``/v1/`` request needs ``Authorization: Bearer TOKEN``; the page, its
            files, ``/docs``, ``/openapi.json`` and ``/healthz`` stay open (they hold no data and run nothing).

    Returns:
        the FastAPI app (``app.state.pool`` is its :class:`~.pool.RunPool`).

    Raises:
        UsageError: no model, or two with the same name.
    """
    models = _by_name(binarizers)
    default = next(iter(models))
    limits = limits or Limits()
    pool = RunPool(limits.workers, limits.queue, limits.timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(title="ocrobin", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Neural binarization of document images: send a page, get the 1-bit page back.")
    app.state.pool = pool
    app.state.limits = limits
    _install_error_handlers(app)
    app.add_middleware(AccessLog)

    guard = [Depends(_bearer(token))] if token else []
    api = APIRouter(prefix="/v1", dependencies=guard, responses={401: _RESPONSES[401]} if token else {})

    @api.get("/models", summary="The loaded models and the service's limits")
    async def list_models() -> dict[str, Any]:
        return {
            "default": default,
            "models": [{"name": n, "arch": b.info.meta.get("arch"), "parameters": b.info.meta.get("parameters")}
                       for n, b in models.items()],
            "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels},
            "formats": list(FORMATS),
        }

    @api.post("/binarize", summary="Binarize one page", response_class=Response, openapi_extra=_BODY,
              responses={k: v for k, v in _RESPONSES.items() if k != 401})
    async def binarize(
        request: Request,
        threshold: Annotated[float, Query(ge=0.0, le=1.0, description="ink where the probability is above it")]
        = 0.5,
        polarity: Annotated[Literal["auto", "normal", "inverted"], Query(
            description="auto finds light-on-dark pages and regions")] = "auto",
        fmt: Annotated[Literal["png", "tif", "prob", "gray"], Query(
            alias="format", description="png: 1-bit PNG; tif: 1-bit TIFF, CCITT G4; prob: 8-bit ink probability "
            "PNG (floor(255 × p)); gray: the decoded grey page as PNG, no model run")] = "png",
        model: Annotated[str | None, Query(description="one of GET /v1/models; default: the first loaded")]
        = None,
        resize: Annotated[float, Query(gt=0.0, le=8.0, description="the model sees the page resized by this "
                                       "factor (0.5 for a scan whose strokes are twice as thick as usual); the "
                                       "answer has the page's own size")] = 1.0,
    ) -> Response:
        name = default if model in (None, "", "default") else model
        if name not in models:
            raise ApiError(400, f"unknown model {model!r} (loaded: {', '.join(models)})")
        check_length(request.headers.get("content-length"), limits.max_bytes)

        async def work(slot: Slot) -> Response:
            data = await read_image(request.stream(), request.headers.get("content-type"), limits.max_bytes)
            check_pixels(data, limits.max_pixels)
            reply = await slot.run(partial(process, models[name], data, fmt, threshold, polarity, slot.admitted,
                                           resize=resize))
            return Response(reply.body, media_type=reply.media_type, headers=reply.headers)

        return await pool.handle(work)

    app.include_router(api)

    @app.get("/healthz", summary="Liveness (open even with --token)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

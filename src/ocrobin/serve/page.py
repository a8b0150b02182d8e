"""One request's page: decode, model, encode — the trip of :mod:`ocrobin.batch.page`, with the answer's headers.

Runs in a pool thread. Between stages it looks at ``cancelled`` and stops early when the request is
already over (timed out, or the client left), so abandoned work gives its thread back soon.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..batch import Options, binarize_page
from ..exceptions import InputError
from ..imageio import Page, decode_pages, encode_image
from ..infer import Binarizer
from .errors import ApiError
from .limits import UPLOAD, reason_of

#: ``format`` values and the media type of their answer.
FORMATS = {"png": "image/png", "tif": "image/tiff", "prob": "image/png", "gray": "image/png"}


class Cancelled(Exception):
    """The request ended while its work waited between stages; nobody reads the result."""


@dataclass
class Reply:
    """A successful answer: body, media type and headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def first_page(data: bytes) -> Page:
    """The first page of an uploaded image, decoded by the same reader as files and shard samples.

    Raises:
        ApiError: 400 for an image that cannot be decoded, with the reader's one-line reason.
    """
    pages = decode_pages(data, UPLOAD)
    try:
        return next(pages)
    except InputError as e:
        raise ApiError(400, reason_of(e)) from None
    finally:
        pages.close()


def gray_png(page: Page) -> bytes:
    """The decoded grey page as an 8-bit PNG with its DPI: what the browser shows for formats it cannot read."""
    a = page.data
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return encode_image(Image.fromarray(a, mode="L"), "png", page.dpi)


def _timing(parts: dict[str, float]) -> str:
    return ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in parts.items())


def process(binarizer: Binarizer, data: bytes, fmt: str, threshold: float, polarity: str, admitted: float,
            cancelled: threading.Event, resize: float = 1.0) -> Reply:
    """Decode the upload, run the model and encode the answer in ``fmt``.

    Args:
        binarizer: the model asked for.
        data: the uploaded image bytes.
        fmt: ``png`` (1-bit), ``tif`` (1-bit, CCITT G4), ``prob`` (8-bit ink probability) or ``gray``
            (the decoded grey page, no model run).
        threshold: ink where the probability is above it.
        polarity: ``auto``, ``normal`` or ``inverted``.
        admitted: ``time.perf_counter()`` when the request was admitted (for ``Server-Timing``).
        cancelled: set when the request is over.
        resize: the model sees the page resized by this factor (as ``ocrobin binarize --resize``).

    Returns:
        the :class:`Reply`; its body equals what ``ocrobin binarize`` writes for the same image and options.

    Raises:
        ApiError: 400 for an image that cannot be decoded.
        Cancelled: the request ended before the work was done.
    """
    t0 = time.perf_counter()
    timing = {"queue": t0 - admitted}
    page = first_page(data)
    del data
    t1 = time.perf_counter()
    timing["decode"] = t1 - t0
    if cancelled.is_set():
        raise Cancelled
    if fmt == "gray":
        body = gray_png(page)
        timing["encode"] = time.perf_counter() - t1
        return Reply(body, FORMATS[fmt], {"Server-Timing": _timing(timing)})
    opts = Options(fmt="tif" if fmt == "tif" else "png", prob=fmt == "prob", threshold=threshold,
                   polarity=polarity, resize=resize)
    enc = binarize_page(binarizer, page, opts)
    r = enc.result
    timing["model"] = r.seconds
    timing["encode"] = time.perf_counter() - t1 - r.seconds
    body = enc.prob if fmt == "prob" else enc.binary
    assert body is not None
    return Reply(body, FORMATS[fmt], {
        "X-Ocrobin-Model": binarizer.name,
        "X-Ocrobin-Confidence": f"{r.confidence:.4f}",
        "X-Ocrobin-Polarity": r.polarity,
        "X-Ocrobin-Flags": ",".join(r.flags),
        "X-Ocrobin-Ink-Fraction": f"{r.ink_fraction:.5f}",
        "X-Ocrobin-Size": f"{r.width}x{r.height}",
        "X-Ocrobin-Seconds": f"{r.seconds:.4f}",
        "Server-Timing": _timing(timing),
    })

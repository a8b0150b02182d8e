"""What one request may cost (body bytes, page pixels, time) and how many may wait: checked before the work.

The page size is read from the image header, so a page over the limit (a decompression bomb included) is
refused before a single pixel is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import InputError, PageTooLargeError, UsageError
from .errors import ApiError

#: The name an upload goes by in error messages (a client's file name is never used).
UPLOAD = "upload"

#: ``--max-mb`` counts units of this many bytes.
MB = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds of the service; every field is one ``ocrobin serve`` flag.

    Attributes:
        max_bytes: largest request body (``--max-mb`` × 10⁶).
        max_pixels: largest page, width × height (at most :data:`ocrobin.imageio.MAX_PIXELS`).
        workers: model runs at the same time, each in its own thread.
        queue: requests that may wait for a worker; past ``workers + queue`` requests get 503.
        timeout: seconds a request may take, from its admission (reading its body included) to its answer.

    Raises:
        UsageError: a bound out of range.
    """

    max_bytes: int = 100 * MB
    max_pixels: int = 400_000_000
    workers: int = 1
    queue: int = 8
    timeout: float = 120.0

    def __post_init__(self) -> None:
        from ..imageio import MAX_PIXELS  # here, not at the top: the command line imports this module for its help

        if self.max_bytes < 1:
            raise UsageError("--max-mb must be above 0")
        if not 1 <= self.max_pixels <= MAX_PIXELS:
            raise UsageError(f"--max-pixels must lie in [1, {MAX_PIXELS:.0e}] (the reader's own limit)")
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.queue < 0:
            raise UsageError("--queue must be 0 or more")
        if not self.timeout > 0:
            raise UsageError("--timeout must be above 0 seconds")


def check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    """The first page's size from the image header, refused when it has more than ``max_pixels`` pixels.

    Only the header is read (:func:`ocrobin.imageio.header_size`); nothing is decoded.

    Returns:
        (width, height).

    Raises:
        ApiError: 413 for a page over the limit, 400 for data that is not an image.
    """
    from ..imageio import header_size

    if not data:
        raise ApiError(400, "empty body: send the image as the request body or as the multipart field 'file'")
    try:
        return header_size(data, UPLOAD, max_pixels)
    except PageTooLargeError as e:
        raise ApiError(413, reason_of(e)) from None
    except InputError as e:
        raise ApiError(400, reason_of(e)) from None


def reason_of(e: Exception) -> str:
    """An error's one-line message without the upload's stand-in name."""
    msg = str(e)
    return msg[len(UPLOAD) + 2:] if msg.startswith(f"{UPLOAD}: ") else msg

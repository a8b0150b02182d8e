"""The uploaded image, read from the request under the byte limit: the raw body or a multipart ``file`` field.

The limit is checked against ``Content-Length`` before a byte is read and counted again while the body
streams in (chunked bodies have no length), so a large body is refused after at most ``max_bytes`` of it.
Multipart bodies are parsed as they arrive and kept in memory: no part is spooled to disk, and the
file name a client sends is never used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from .errors import ApiError

#: The multipart field that holds the image.
FILE_FIELD = "file"


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"request body too large (limit {max_bytes:,} bytes)")


def check_length(content_length: str | None, max_bytes: int) -> None:
    """Refuse a body whose declared length is over the limit, before reading it.

    Raises:
        ApiError: 413 over the limit, 400 for a malformed ``Content-Length``.
    """
    if content_length is None:
        return
    try:
        n = int(content_length)
    except ValueError:
        raise ApiError(400, "malformed Content-Length header") from None
    if n > max_bytes:
        raise _too_large(max_bytes)


class _FilePart:
    """Callbacks of the multipart parser that keep the data of the ``file`` field and nothing else."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.found = False
        self._field = b""
        self._value = b""
        self._disposition = b""
        self._keep = False

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._keep = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            self._disposition = self._value
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._keep = options.get(b"name") == FILE_FIELD.encode() and not self.found
        self.found = self.found or self._keep

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._keep:
            self.chunks.append(bytes(data[start:end]))

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
            "on_part_data")}


async def read_image(stream: AsyncIterator[bytes], content_type: str | None, max_bytes: int) -> bytes:
    """The image bytes of a request body.

    Args:
        stream: the body as it arrives (``request.stream()``).
        content_type: the request's ``Content-Type``; ``multipart/form-data`` takes the ``file`` field,
            anything else is the image itself.
        max_bytes: the largest body, counted as it streams in.

    Returns:
        the image bytes (may be empty: the caller says what an empty upload means).

    Raises:
        ApiError: 413 past ``max_bytes``; 400 for a malformed multipart body, one without ``file``, or a
            client that left before the end of its body (nobody reads the answer, but the log says why).
    """
    kind, params = parse_options_header(content_type or "")
    parser: MultipartParser | None = None
    part: _FilePart | None = None
    if kind == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise ApiError(400, "multipart body without a boundary")
        part = _FilePart()
        parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > max_bytes:
                raise _too_large(max_bytes)
            if parser is not None:
                parser.write(chunk)
            elif chunk:
                chunks.append(chunk)
        if parser is not None:
            parser.finalize()
    except FormParserError as e:
        raise ApiError(400, f"malformed multipart body ({e})") from None
    except ClientDisconnect:
        raise ApiError(400, "the client closed the connection before the body was complete") from None
    if part is None:
        return b"".join(chunks)
    if not part.found:
        raise ApiError(400, f"multipart body without a '{FILE_FIELD}' field")
    return b"".join(part.chunks)

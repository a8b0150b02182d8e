"""The one error type of the HTTP layer: a status, a one-line reason, and the headers that go with it."""

from __future__ import annotations


class ApiError(Exception):
    """A request that gets an error response, ``{"error": message}`` as JSON.

    Args:
        status: the HTTP status code.
        message: one line for the client; it never holds a server path.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.headers = headers or {}

"""One access-log line per request: client, method, path, status, response bytes, milliseconds.

Written by a plain ASGI middleware around the whole app, so errors, refusals and static files are logged
the same way. The query string is left out (it can be long and says nothing about the outcome).
"""

from __future__ import annotations

import logging
import time
from typing import Any

#: The logger of the access lines (``ocrobin serve`` sends it to stderr).
LOGGER = logging.getLogger("ocrobin.serve.access")


class AccessLog:
    """ASGI middleware that logs each HTTP request once, when its response has ended.

    Args:
        app: the ASGI app to wrap.
        logger: where the lines go.
    """

    def __init__(self, app: Any, logger: logging.Logger = LOGGER) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0
        sent = 0

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            status = status or 500
            raise
        finally:
            client = scope.get("client")
            host = client[0] if client else "-"
            ms = (time.perf_counter() - t0) * 1000.0
            self.logger.info("%s %s %s %d %d B %.1f ms", host, scope["method"], scope["path"], status, sent, ms)

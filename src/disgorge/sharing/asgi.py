"""What runs around the inbox app: uvicorn's settings and the access log.

**Headers.** uvicorn has no deadline for a request's line and headers: a connection that
sends a header byte now and then (or nothing at all) stays open for ever, and enough of
them exhaust the server (slowloris). :func:`uvicorn_config` runs the app with an h11
protocol that answers 408 and closes such a connection after ``header_timeout_s``, and
with the keep-alive and header-size limits of :class:`~.limits.Limits`.

**Logs.** uvicorn's access log is replaced by :class:`AccessLog`, which prints at most the
first 8 characters of any long path segment: a nonce is a capability for the request, and
a log is read by more people than the sender.

Kept apart from :mod:`.server` (the routes) because none of it is about erasure requests:
it is how any ASGI app of disgorge's is served.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

from .limits import Limits

__all__ = ["AccessLog", "loggable_path", "uvicorn_config"]

access_log = logging.getLogger("disgorge.server.access")

_LONG_SEGMENT = re.compile(r"[^/]{17,}")


def loggable_path(path: str) -> str:
    """``path`` with every segment longer than 16 characters cut to 8 (nonces, keys)."""
    return _LONG_SEGMENT.sub(lambda m: m.group()[:8] + "...", path)


class AccessLog:
    """ASGI middleware: one line per request, without query strings or whole nonces."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s:%s - "%s %s HTTP/%s" %d %.0fms',
                client[0],
                client[1],
                scope["method"],
                loggable_path(scope["path"]),
                scope.get("http_version", "1.1"),
                status,
                (time.perf_counter() - start) * 1000,
            )


def _protocol(header_timeout_s: float) -> type[Any]:
    """uvicorn's h11 protocol with a deadline for each request's line and headers.

    uvicorn has none: a connection that sends a header byte now and then (or nothing at
    all) stays open for ever, and enough of them exhaust the server (slowloris). The timer
    runs from the connection (or the end of the previous response) until the headers are
    complete; when it fires first, the client gets 408 and the connection is closed."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                body = b'{"error": "the request headers did not arrive in time"}'
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                self.transport.close()

    return HeaderDeadline


def uvicorn_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    log_level: str = "info",
    limits: Limits | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> Any:
    """The uvicorn settings the inbox runs with: the header deadline, keep-alive and header
    size limits of ``limits``, and this module's access log instead of uvicorn's; TLS with
    ``ssl_certfile``/``ssl_keyfile`` (PEM).

    ``X-Forwarded-For``/``-Proto`` are read from loopback peers only (a reverse proxy on
    this machine), whatever ``FORWARDED_ALLOW_IPS`` says; they change the logged client
    address and the scheme, nothing else (docs/api.md)."""
    import uvicorn

    limits = limits or Limits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        proxy_headers=True,
        forwarded_allow_ips=["127.0.0.1", "::1"],
        http=_protocol(limits.header_timeout_s),
        ws="none",
        lifespan="on",
        access_log=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )

"""The recipient's inbox over HTTP: ``disgorge serve`` (needs the ``server`` extra).

Endpoints (JSON unless said otherwise; errors are ``{"error": "..."}`` with the status):

* ``POST /v1/erasure-requests``: a sender's signed erasure request. Nothing in it is
  trusted before :func:`.inbox.receive` has checked it against a registered sender's key.
  ``202`` with the signed ``acknowledged`` answer when there is work to do (a background
  worker runs this workspace's erasure), ``200`` with a signed answer when it is already
  done or names nothing held here (``not_found``), ``400``/``403``/``409``/``411``/``413``
  when refused (malformed, unknown sender, a replayed nonce, no length, too large);
* ``GET /v1/erasure-requests/{nonce}``: the signed state of a request, with this
  workspace's certificate once completed, for the sender that sent it only: the query
  must be signed with that sender's key (:mod:`.query`);
* ``GET /v1/public-key``: this workspace's public key (PEM), so a sender can check
  what it registered;
* ``GET /healthz``.

**Load.** Every answer is either the real one or a refusal that says when to come back;
never a 500 because the server is busy. SQLite takes one writer at a time, so catalog
work is bounded (:class:`Limits`): at most ``catalog_slots`` handlers touch the catalog
at once, each with one session at a time (a handler holding a session never opens a
second: that is what exhausted SQLAlchemy's pool of 15 connections under 20 requests),
up to ``max_waiting`` more wait up to ``wait_s`` for a slot, and anything beyond is
answered ``503`` with ``Retry-After`` at once. Bodies are refused from their declared
length before a byte is read (``411`` without one, ``413`` over ``max_body_bytes``), and
all bodies being read or parsed at once share ``body_budget_bytes`` (else ``503``), so
six 60 MB bodies cost one body's memory, not six. A request's line and headers must
arrive within ``header_timeout_s`` and its body within ``body_timeout_s``.

**No accepted request is lost.** A ``202`` is sent only once the request is a committed
``incoming_requests`` row in state ``received``: the catalog is the queue. One worker
thread with its own :class:`~disgorge.Workspace` runs the pending rows in the order they
came, woken by each new request and looking again every few seconds, so a row recorded
just before a crash, or by a handler that never woke it, is taken up all the same (and on
every start). Every step of an erasure is journaled, so a server killed mid-way resumes
it. The server binds 127.0.0.1 unless told otherwise.

**Logs.** uvicorn's access log is replaced by one that prints at most the first 8
characters of any long path segment: a nonce is a capability for the request, and a log
is read by more people than the sender.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and
# their types are imported inside create_app (the extra is optional)
import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..catalog.models import IncomingRequest
from ..errors import DisgorgeError, InvalidInput
from . import inbox
from .documents import REQUEST_TYPE
from .query import SCHEME, check_authorization

__all__ = ["MAX_BODY_BYTES", "Limits", "create_app", "running_server", "uvicorn_config"]

log = logging.getLogger("disgorge.server")
access_log = logging.getLogger("disgorge.server.access")

#: the largest request body accepted (a request naming a million photos is ~70 MB of hex)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: how long the worker lets this workspace's own erasure wait for *its* recipients, and
#: when it looks again at a request that is still waiting or hit an unexpected error
_WAIT_S, _RETRY_S = 10.0, 30.0
#: how often the worker looks for pending requests when nothing woke it
_POLL_S = 2.0
#: JSON nested deeper than this is refused (a request is 4 levels deep)
_MAX_DEPTH = 16
INSTALL_HINT = "the server needs the server extra: pip install 'disgorge[server]'"


@dataclass(frozen=True)
class Limits:
    """What the server takes on at once; past it, it refuses (413/503) instead of buffering
    or waiting without end. The defaults fit a 2-core machine with a few hundred MB."""

    #: the largest request body (413 above it, from Content-Length, before reading)
    max_body_bytes: int = MAX_BODY_BYTES
    #: all request bodies being read, parsed or checked at once (503 when full)
    body_budget_bytes: int = MAX_BODY_BYTES
    #: handlers doing catalog work at once (each holds at most one session)
    catalog_slots: int = 4
    #: handlers waiting for a slot; one more is answered 503 at once
    max_waiting: int = 256
    #: the longest a handler waits for a slot before answering 503 (under the sender's
    #: 10 s HTTP timeout, so that it hears "come back" rather than nothing)
    wait_s: float = 5.0
    #: what a 503 tells the client to wait (seconds)
    retry_after_s: int = 2
    #: a request's line and headers must arrive within this (slow-header connections)
    header_timeout_s: float = 10.0
    #: and its body within this, once the headers are in
    body_timeout_s: float = 60.0
    #: an idle keep-alive connection is closed after this
    keep_alive_s: int = 5
    #: the request line and headers together (h11 answers 431 above it)
    max_header_bytes: int = 16 * 1024


class Refused(Exception):
    """A request answered with a JSON error (and headers) instead of being served."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIGNATURE = {"type": "string", "description": "base64 Ed25519 signature of the canonical body"}
_DOCUMENT_SCHEMA = {
    "type": "object",
    "description": "A signed disgorge document: the body names its type and the signer's key.",
    "properties": {
        "body": {"type": "object"},
        "signature": _SIGNATURE,
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
    "required": ["body", "signature"],
}
#: what POST /v1/erasure-requests accepts, as far as a schema can say (the signature must
#: also verify under a registered sender's key, and the request be addressed to us)
_REQUEST_SCHEMA = {
    "type": "object",
    "description": (
        "A sender's signed erasure request (disgorge.erasure-request/1, docs/sharing.md). "
        "The signature must verify under the key of a sender registered here."
    ),
    "properties": {
        "body": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": [REQUEST_TYPE]},
                "nonce": {"type": "string", "minLength": 16, "maxLength": 64},
                "public_key": {**_HEX64, "description": "the sender's Ed25519 key (hex)"},
                "recipient_key": {**_HEX64, "description": "this workspace's Ed25519 key (hex)"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id_kind": {"type": "string", "enum": ["fingerprint", "sha256"]},
                            "values": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["values"],
                    },
                },
                "deadline": {"type": "string", "format": "date-time"},
            },
            "required": ["type", "nonce", "public_key", "recipient_key", "items"],
        },
        "signature": _SIGNATURE,
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
    "required": ["body", "signature"],
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _json(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _busy(limits: Limits, message: str) -> Refused:
    return Refused(503, message, {"Retry-After": str(limits.retry_after_s)})


class _Gate:
    """At most ``catalog_slots`` handlers in the catalog, ``max_waiting`` queued for up to
    ``wait_s``; beyond that :class:`Refused` 503 at once. Used from the event loop only."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.catalog_slots)
        self._waiting = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        if self._waiting >= self.limits.max_waiting:
            raise _busy(self.limits, "the server is busy: too many requests are waiting; try again later")
        self._waiting += 1
        try:
            async with asyncio.timeout(self.limits.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise _busy(
                self.limits, "the server is busy: no catalog slot came free; try again later"
            ) from None
        finally:
            self._waiting -= 1
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            self._slots.release()


class _BodyBudget:
    """Bytes of request bodies held at once (reserved from Content-Length before reading)."""

    def __init__(self, limits: Limits) -> None:
        self.limits, self.used = limits, 0

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        if self.used and self.used + size > self.limits.body_budget_bytes:
            raise _busy(self.limits, "the server is reading other large requests; try again later")
        self.used += size
        try:
            yield
        finally:
            self.used -= size


def _too_deep(doc: Any, limit: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def parse_body(data: bytearray) -> Any:
    """The JSON document in ``data`` (emptied meanwhile, to hold one copy at a time);
    :class:`Refused` 400 when it is not JSON or is nested deeper than a request can be."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the request body is not JSON (not UTF-8)") from None
    finally:
        data.clear()
    try:
        doc = json.loads(text)
    except RecursionError:
        raise Refused(400, "the request body is nested too deeply") from None
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if _too_deep(doc, _MAX_DEPTH):
        raise Refused(400, "the request body is nested too deeply")
    return doc


class _Worker:
    """One thread running the catalog's pending requests in order, with its own workspace."""

    def __init__(self, path: Path, actor: str) -> None:
        self.path, self.actor = path, actor
        self._later: dict[str, float] = {}  # nonce -> when to look again (monotonic)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from ..workspace import Workspace

        ws = Workspace.open(self.path, actor=self.actor)  # here, so that a failure stops the startup
        self._thread = threading.Thread(target=self._run, args=(ws,), name="disgorge-inbox", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the request under way (its erasure is journaled either way)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """A request was recorded: look at the catalog now rather than at the next poll."""
        self._wake.set()

    def _pending(self, ws: Any) -> list[str]:
        with ws.reader() as session:
            return list(
                session.scalars(
                    select(IncomingRequest.nonce)
                    .where(IncomingRequest.state.in_(("received", "executing")))
                    .order_by(IncomingRequest.received_at, IncomingRequest.nonce)
                )
            )

    def _run(self, ws: Any) -> None:
        try:
            first = True
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    pending = self._pending(ws)
                except Exception:  # e.g. the catalog busy for a minute: look again
                    log.exception("cannot read the pending erasure requests; will look again")
                    pending = []
                if first and pending:
                    log.info("resuming %d erasure request(s) under way", len(pending))
                first = False
                now = time.monotonic()
                self._later = {n: due for n, due in self._later.items() if n in pending}
                due = [n for n in pending if self._later.get(n, 0.0) <= now]
                if not due:
                    self._wake.wait(_POLL_S)
                    continue
                for nonce in due:
                    if self._stop.is_set():
                        break
                    self._process(ws, nonce)
        finally:
            ws.close()

    def _process(self, ws: Any, nonce: str) -> None:
        try:
            status, doc = inbox.process(ws, nonce, wait=_WAIT_S)
        except Exception:  # e.g. a full disk: the journal keeps it; try again later
            log.exception("erasure request %s: unexpected error; will retry", nonce[:8])
            status = 202
        else:
            state = doc.get("body", {}).get("state", doc.get("error"))
            log.info("erasure request %s...: %s", nonce[:8], state)
        if status == 202:  # still waiting (on our own recipients): not before _RETRY_S
            self._later[nonce] = time.monotonic() + _RETRY_S
        else:
            self._later.pop(nonce, None)


_LONG_SEGMENT = re.compile(r"[^/]{17,}")


def loggable_path(path: str) -> str:
    """``path`` with every segment longer than 16 characters cut to 8 (nonces, keys)."""
    return _LONG_SEGMENT.sub(lambda m: m.group()[:8] + "...", path)


class _AccessLog:
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


def create_app(
    workspace_path: str | Path | None = None,
    *,
    actor: str = "disgorge-server",
    limits: Limits | None = None,
) -> Any:
    """The FastAPI app serving the erasure inbox of the workspace at ``workspace_path``
    (``None``: ``$DISGORGE_WORKSPACE`` or the cwd upwards). Run it with uvicorn, best with
    :func:`uvicorn_config` (its header timeout and limits)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, PlainTextResponse
        from sqlalchemy.exc import OperationalError
        from sqlalchemy.exc import TimeoutError as PoolTimeout
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.requests import ClientDisconnect
    except ImportError:
        raise InvalidInput(INSTALL_HINT) from None

    from .._version import __version__
    from ..workspace import Workspace

    limits = limits or Limits()
    ws = Workspace.open(workspace_path, actor=actor)  # fails here, not at the first request
    try:
        pem = ws.public_key_pem()  # never changes: read once, no session per request
        our_key = ws.public_key().public_bytes_raw().hex()
    except BaseException:
        ws.close()
        raise
    worker = _Worker(ws.root, actor)
    gate, budget = _Gate(limits), _BodyBudget(limits)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)
            ws.close()

    app = FastAPI(
        title="disgorge inbox",
        version=__version__,
        description=(
            "Erasure requests from registered senders, answered with this workspace's "
            "signed certificate. Every answer is a signed document; errors are "
            '`{"error": "..."}`. A busy server answers 503 with `Retry-After`.'
        ),
        lifespan=lifespan,
    )
    app.add_middleware(_AccessLog)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))  # 405 keeps Allow

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(DisgorgeError)
    async def _disgorge_error(_request: Request, exc: DisgorgeError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_request: Request, _exc: Exception) -> JSONResponse:
        # a backstop: the gate keeps handlers within the pool, but never answer 500 for load
        log.warning("no catalog connection came free; answered 503")
        return error(503, "the server is busy; try again later", {"Retry-After": str(limits.retry_after_s)})

    @app.exception_handler(OperationalError)
    async def _operational(_request: Request, exc: OperationalError) -> JSONResponse:
        if "locked" in str(exc.orig) or "busy" in str(exc.orig):  # another process wrote for a minute
            log.warning("the catalog stayed locked; answered 503")
            return error(
                503, "the catalog is busy; try again later", {"Retry-After": str(limits.retry_after_s)}
            )
        log.error("catalog error: %s", exc.orig)
        return error(500, "internal error; see the server's log")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, "internal error; see the server's log")

    busy_503 = _json("Busy: try again after Retry-After seconds", _ERROR_SCHEMA, _RETRY_AFTER)

    @app.post(
        "/v1/erasure-requests",
        summary="Receive a sender's signed erasure request",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
            }
        },
        responses={
            200: _json("Already answered for good (completed, not_found, exception)", _DOCUMENT_SCHEMA),
            202: _json("Accepted: this workspace is erasing the photos (signed)", _DOCUMENT_SCHEMA),
            400: _json("Not JSON, nested too deeply, not signed, or malformed", _ERROR_SCHEMA),
            403: _json("Signed by no registered sender, or addressed to another workspace", _ERROR_SCHEMA),
            408: _json(f"The body did not arrive within {limits.body_timeout_s:.0f} s", _ERROR_SCHEMA),
            409: _json("The nonce was already used for another request (a replay)", _ERROR_SCHEMA),
            411: _json("No Content-Length", _ERROR_SCHEMA),
            413: _json(f"The body is larger than {limits.max_body_bytes} bytes", _ERROR_SCHEMA),
            503: busy_503,
        },
    )
    async def receive_request(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise Refused(411, "a request needs a Content-Length")
        size = int(declared)
        if size > limits.max_body_bytes:
            raise Refused(413, f"the request body is larger than {limits.max_body_bytes} bytes")
        with budget.reserve(size):
            data = bytearray()
            try:
                async with asyncio.timeout(limits.body_timeout_s):
                    async for chunk in request.stream():
                        data += chunk
                        if len(data) > size:
                            raise Refused(413, "the request body is longer than its Content-Length")
            except TimeoutError:
                raise Refused(408, f"the body did not arrive within {limits.body_timeout_s:.0f} s") from None
            except ClientDisconnect:  # nobody to answer; nothing was recorded
                raise Refused(400, "the client went away before sending the whole body") from None
            doc = await run_in_threadpool(parse_body, data)
            status, answer = await gate.run(inbox.receive, ws, doc)
        if status == 202:
            worker.wake()
        return JSONResponse(answer, status_code=status)

    def state_of(nonce: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        refusal = check_authorization(ws, authorization, nonce, recipient_key=our_key)
        if refusal is not None:
            return refusal[0], {"error": refusal[1]}
        return inbox.answer(ws, nonce)

    @app.get(
        "/v1/erasure-requests/{nonce}",
        summary="The signed state of a request (with the certificate once completed)",
        description=(
            "Only for the sender that sent the request: send `Authorization: Disgorge "
            "<base64url of a disgorge.erasure-query/1 document signed with its key>` "
            "(docs/sharing.md)."
        ),
        openapi_extra={
            "parameters": [
                {
                    "name": "Authorization",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": f"^{SCHEME} "},
                    "description": "the sender's signed query",
                }
            ]
        },
        responses={
            200: _json("Answered for good (completed, not_found, exception)", _DOCUMENT_SCHEMA),
            202: _json("Still erasing (acknowledged)", _DOCUMENT_SCHEMA),
            401: _json("No signed query, or its signature does not verify", _ERROR_SCHEMA),
            403: _json("Signed by no registered sender, or stale", _ERROR_SCHEMA),
            404: _json("No request with this nonce from this sender", _ERROR_SCHEMA),
            503: busy_503,
        },
    )
    async def request_state(nonce: str, request: Request) -> JSONResponse:
        status, doc = await gate.run(state_of, nonce, request.headers.get("authorization"))
        headers = {"WWW-Authenticate": SCHEME} if status == 401 else None
        return JSONResponse(doc, status_code=status, headers=headers)

    @app.get(
        "/v1/public-key",
        summary="This workspace's Ed25519 public key (PEM)",
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/x-pem-file": {}}}},
    )
    def public_key() -> PlainTextResponse:
        return PlainTextResponse(pem, media_type="application/x-pem-file")

    @app.get(
        "/healthz",
        summary="Liveness: the server answers and its erasure worker runs",
        responses={503: _json("The erasure worker stopped", _ERROR_SCHEMA)},
    )
    def healthz() -> JSONResponse:
        if not worker.alive:
            return error(503, "the erasure worker is not running; see the server's log")
        return JSONResponse({"ok": True, "version": __version__})

    return app


def _protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request's line and headers.

    uvicorn has none: a connection that sends a header byte now and then (or nothing at
    all) stays open for ever, and enough of them exhaust the server (slowloris). The timer
    runs from the connection (or the end of the previous response) until the headers are
    complete; when it fires first, the client gets 408 and the connection is closed."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):  # type: ignore[misc]
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
) -> Any:
    """The uvicorn settings the inbox runs with: the header deadline, keep-alive and header
    size limits of ``limits``, and this module's access log instead of uvicorn's."""
    import uvicorn

    limits = limits or Limits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_protocol(limits.header_timeout_s),
        ws="none",
        lifespan="on",
        access_log=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )


@contextmanager
def running_server(
    workspace_path: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    actor: str = "disgorge-server",
    log_level: str = "warning",
    limits: Limits | None = None,
) -> Iterator[str]:
    """Serve the inbox with uvicorn in a background thread; yields its base URL.

    ``port=0`` takes a free port (the socket is bound here, so no other process can
    take it between choosing and listening). Stops, after the request under way, on exit.
    """
    try:
        import uvicorn
    except ImportError:
        raise InvalidInput(INSTALL_HINT) from None
    app = create_app(workspace_path, actor=actor, limits=limits)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        server = uvicorn.Server(uvicorn_config(app, log_level=log_level, limits=limits))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="disgorge-server", daemon=True
        )
        thread.start()
        give_up = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > give_up:
                server.should_exit = True
                raise InvalidInput(f"the server on {host}:{port} did not start; see its log")
            time.sleep(0.02)
        bound = sock.getsockname()[1]
        try:
            yield f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
        finally:
            server.should_exit = True
            thread.join(90)
    finally:
        sock.close()

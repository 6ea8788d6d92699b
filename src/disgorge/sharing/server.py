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

This module is an interface layer, like the CLI: it opens a :class:`~disgorge.Workspace`
and hands its context to the services (:mod:`.inbox`, :mod:`.query`). Around the routes:

* **Load** (:mod:`.limits`): every answer is either the real one or a refusal that says
  when to come back, never a 500 because the server is busy; catalog work goes through a
  bounded gate, bodies are refused from their declared length and share one budget, a
  request's line and headers must arrive within ``header_timeout_s`` and its body within
  ``body_timeout_s``.
* **No accepted request is lost** (:mod:`.worker`): a ``202`` is sent only once the
  request is a committed row; one worker thread with its own workspace runs the pending
  rows in order, also after a crash. The server binds 127.0.0.1 unless told otherwise.
* **Logs and uvicorn** (:mod:`.asgi`): an access log that never prints a whole nonce, and
  a deadline for slow headers.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and
# their types are imported inside create_app (the extra is optional)
import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from ..errors import DisgorgeError, InvalidInput
from . import inbox
from .asgi import AccessLog, uvicorn_config
from .limits import MAX_BODY_BYTES, BodyBudget, Gate, Limits, Refused, parse_body
from .openapi import DOCUMENT_SCHEMA, ERROR_SCHEMA, REQUEST_SCHEMA, RETRY_AFTER, json_answer
from .query import SCHEME, check_authorization
from .worker import InboxWorker

__all__ = ["INSTALL_HINT", "MAX_BODY_BYTES", "Limits", "create_app", "running_server", "uvicorn_config"]

log = logging.getLogger("disgorge.server")

INSTALL_HINT = "the server needs the server extra: pip install 'disgorge[server]'"


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
        ctx = ws.ctx
        pem = ctx.public_key_pem()  # never changes: read once, no session per request
        our_key = ctx.public_key().public_bytes_raw().hex()
    except BaseException:
        ws.close()
        raise
    root = ws.root
    worker = InboxWorker(lambda: Workspace.open(root, actor=actor))  # its own sessions
    gate, budget = Gate(limits), BodyBudget(limits)

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
    app.add_middleware(AccessLog)

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

    busy_503 = json_answer("Busy: try again after Retry-After seconds", ERROR_SCHEMA, RETRY_AFTER)

    @app.post(
        "/v1/erasure-requests",
        summary="Receive a sender's signed erasure request",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": REQUEST_SCHEMA}},
            }
        },
        responses={
            200: json_answer("Already answered for good (completed, not_found, exception)", DOCUMENT_SCHEMA),
            202: json_answer("Accepted: this workspace is erasing the photos (signed)", DOCUMENT_SCHEMA),
            400: json_answer("Not JSON, nested too deeply, not signed, or malformed", ERROR_SCHEMA),
            403: json_answer(
                "Signed by no registered sender, or addressed to another workspace", ERROR_SCHEMA
            ),
            408: json_answer(f"The body did not arrive within {limits.body_timeout_s:.0f} s", ERROR_SCHEMA),
            409: json_answer("The nonce was already used for another request (a replay)", ERROR_SCHEMA),
            411: json_answer("No Content-Length", ERROR_SCHEMA),
            413: json_answer(f"The body is larger than {limits.max_body_bytes} bytes", ERROR_SCHEMA),
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
            status, answer = await gate.run(inbox.receive, ctx, doc)
        if status == 202:
            worker.wake()
        return JSONResponse(answer, status_code=status)

    def state_of(nonce: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        refusal = check_authorization(ctx, authorization, nonce, recipient_key=our_key)
        if refusal is not None:
            return refusal[0], {"error": refusal[1]}
        return inbox.answer(ctx, nonce)

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
            200: json_answer("Answered for good (completed, not_found, exception)", DOCUMENT_SCHEMA),
            202: json_answer("Still erasing (acknowledged)", DOCUMENT_SCHEMA),
            401: json_answer("No signed query, or its signature does not verify", ERROR_SCHEMA),
            403: json_answer("Signed by no registered sender, or stale", ERROR_SCHEMA),
            404: json_answer("No request with this nonce from this sender", ERROR_SCHEMA),
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
        responses={503: json_answer("The erasure worker stopped", ERROR_SCHEMA)},
    )
    def healthz() -> JSONResponse:
        if not worker.alive:
            return error(503, "the erasure worker is not running; see the server's log")
        return JSONResponse({"ok": True, "version": __version__})

    return app


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

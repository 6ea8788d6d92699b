"""The recipient's inbox over HTTP: ``disgorge serve`` (needs the ``server`` extra).

Endpoints (JSON unless said otherwise; errors are ``{"error": "..."}`` with the status):

* ``POST /v1/erasure-requests``: a sender's signed erasure request. Nothing in it is
  trusted before :func:`.inbox.receive` has checked it against a registered sender's key.
  ``202`` with the signed ``acknowledged`` answer when there is work to do (a background
  worker runs this workspace's erasure), ``200`` with a signed answer when it is already
  done or names nothing held here (``not_found``), ``400``/``403``/``409``/``413`` when
  refused (malformed, unknown sender, a replayed nonce, too large);
* ``GET /v1/erasure-requests/{nonce}``: the signed state of a request, with this
  workspace's certificate once completed;
* ``GET /v1/public-key``: this workspace's public key (PEM), so a sender can check
  what it registered;
* ``GET /healthz``.

Requests are erased one at a time, in order, by one worker thread with its own
:class:`~disgorge.Workspace` (the catalog takes one writer at a time anyway; the
handlers share another: its engine and session factories are thread-safe and every
call opens its own session). Every step is journaled, so a server killed mid-way
loses nothing: on startup the worker takes up every request still ``received`` or
``executing``. The server binds 127.0.0.1 unless told otherwise.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations, and
# their types are imported inside create_app (the extra is optional)
import heapq
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..catalog.models import IncomingRequest
from ..errors import DisgorgeError, InvalidInput
from . import inbox

__all__ = ["MAX_BODY_BYTES", "create_app", "running_server"]

log = logging.getLogger("disgorge.server")

#: the largest request body accepted (a request naming a million photos is ~70 MB of hex)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: how long the worker lets this workspace's own erasure wait for *its* recipients, and
#: when it looks again at a request that is still waiting or hit an unexpected error
_WAIT_S, _RETRY_S = 10.0, 30.0
INSTALL_HINT = "the server needs the server extra: pip install 'disgorge[server]'"

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_DOCUMENT_SCHEMA = {
    "type": "object",
    "description": "A signed disgorge document: the body names its type and the signer's key.",
    "properties": {
        "body": {"type": "object"},
        "signature": {"type": "string", "description": "base64 Ed25519 signature of the canonical body"},
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
    "required": ["body", "signature"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class _Worker:
    """One thread running received requests in order, with its own workspace."""

    def __init__(self, path: Path, actor: str) -> None:
        self.path, self.actor = path, actor
        self._queue: queue.Queue[str] = queue.Queue()
        self._later: list[tuple[float, str]] = []  # (due, nonce): retries
        self._known: set[str] = set()  # queued, running or due for a retry
        self._lock = threading.Lock()
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
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, nonce: str) -> None:
        with self._lock:
            if nonce in self._known:
                return
            self._known.add(nonce)
        self._queue.put(nonce)

    def _run(self, ws: Any) -> None:
        try:
            with ws.reader() as session:  # what a crash or a stop left under way
                unfinished = session.scalars(
                    select(IncomingRequest.nonce)
                    .where(IncomingRequest.state.in_(("received", "executing")))
                    .order_by(IncomingRequest.received_at)
                ).all()
            for nonce in unfinished:
                log.info("resuming erasure request %s", nonce[:12])
                self.submit(nonce)
            while not self._stop.is_set():
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    self._queue.put(heapq.heappop(self._later)[1])
                try:
                    nonce = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._process(ws, nonce)
        finally:
            ws.close()

    def _process(self, ws: Any, nonce: str) -> None:
        try:
            status, doc = inbox.process(ws, nonce, wait=_WAIT_S)
        except Exception:  # e.g. a full disk: the journal keeps it; try again later
            log.exception("erasure request %s: unexpected error; will retry", nonce[:12])
            status = 202
        else:
            state = doc.get("body", {}).get("state", doc.get("error"))
            log.info("erasure request %s: %s", nonce[:12], state)
        if status == 202 and not self._stop.is_set():  # still waiting (on our own recipients)
            heapq.heappush(self._later, (time.monotonic() + _RETRY_S, nonce))
        else:
            with self._lock:
                self._known.discard(nonce)


def create_app(
    workspace_path: str | Path | None = None,
    *,
    actor: str = "disgorge-server",
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Any:
    """The FastAPI app serving the erasure inbox of the workspace at ``workspace_path``
    (``None``: ``$DISGORGE_WORKSPACE`` or the cwd upwards). Run it with uvicorn."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, PlainTextResponse
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError:
        raise InvalidInput(INSTALL_HINT) from None

    from .._version import __version__
    from ..workspace import Workspace

    ws = Workspace.open(workspace_path, actor=actor)  # fails here, not at the first request
    worker = _Worker(ws.root, actor)

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
            '`{"error": "..."}`.'
        ),
        lifespan=lifespan,
    )

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def reply(result: tuple[int, dict[str, Any]]) -> JSONResponse:
        status, doc = result
        return JSONResponse(doc, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "; ".join(str(e.get("msg", e)) for e in exc.errors()) or "invalid request")

    @app.exception_handler(DisgorgeError)
    async def _disgorge_error(_request: Request, exc: DisgorgeError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.post(
        "/v1/erasure-requests",
        summary="Receive a sender's signed erasure request",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _DOCUMENT_SCHEMA}},
            }
        },
        responses={
            200: _json("Already answered for good (completed, not_found, exception)", _DOCUMENT_SCHEMA),
            202: _json("Accepted: this workspace is erasing the photos (signed)", _DOCUMENT_SCHEMA),
            400: _json("Not JSON, not signed, or malformed", _ERROR_SCHEMA),
            403: _json("Signed by no registered sender, or addressed to another workspace", _ERROR_SCHEMA),
            409: _json("The nonce was already used for another request (a replay)", _ERROR_SCHEMA),
            413: _json(f"The body is larger than {max_body_bytes} bytes", _ERROR_SCHEMA),
        },
    )
    async def receive_request(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, f"the request body is larger than {max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return error(413, f"the request body is larger than {max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError:
            return error(400, "the request body is not JSON")
        status, answer = await run_in_threadpool(inbox.receive, ws, doc)
        if status == 202:
            worker.submit(answer["body"]["nonce"])
        return JSONResponse(answer, status_code=status)

    @app.get(
        "/v1/erasure-requests/{nonce}",
        summary="The signed state of a request (with the certificate once completed)",
        responses={
            200: _json("Answered for good (completed, not_found, exception)", _DOCUMENT_SCHEMA),
            202: _json("Still erasing (acknowledged)", _DOCUMENT_SCHEMA),
            404: _json("No request with this nonce was received", _ERROR_SCHEMA),
        },
    )
    def request_state(nonce: str) -> JSONResponse:
        return reply(inbox.answer(ws, nonce))

    @app.get(
        "/v1/public-key",
        summary="This workspace's Ed25519 public key (PEM)",
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/x-pem-file": {}}}},
    )
    def public_key() -> PlainTextResponse:
        return PlainTextResponse(ws.public_key_pem(), media_type="application/x-pem-file")

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


@contextmanager
def running_server(
    workspace_path: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    actor: str = "disgorge-server",
    log_level: str = "warning",
) -> Iterator[str]:
    """Serve the inbox with uvicorn in a background thread; yields its base URL.

    ``port=0`` takes a free port (the socket is bound here, so no other process can
    take it between choosing and listening). Stops, after the request under way, on exit.
    """
    try:
        import uvicorn
    except ImportError:
        raise InvalidInput(INSTALL_HINT) from None
    app = create_app(workspace_path, actor=actor)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, ws="none", lifespan="on"))
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

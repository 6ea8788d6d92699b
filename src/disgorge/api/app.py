"""The HTTP API of a workspace: ``disgorge serve`` (needs the ``server`` extra).

One FastAPI app serves the ``/v1`` resources for principals with bearer tokens (every
CLI capability, :mod:`.routes`), and the inbox other organisations send signed erasure
requests to (:mod:`.routes.inbox`). Every route is declared in the route table
(:mod:`.table`) with the scope it needs; ``docs/api.md`` is generated from it
(``python -m disgorge.api.docs``).

Around the routes:

* **Auth** before anything else (:class:`.table.ScopedRoute`), then the workspace's
  context acting for the principal (:mod:`.deps`), so every write is audited with it;
* **Load** (:mod:`disgorge.sharing.limits`): catalog work goes through a bounded gate;
  past it the answer is ``503`` with ``Retry-After``, never a 500;
* **Errors** are RFC 9457 problem details (:mod:`.problems`);
* **OpenAPI** at ``/v1/openapi.json``, for authenticated callers only; there is no
  ``/docs`` page (it would load its script from a CDN): load the document into your own
  viewer, or read ``docs/api.md``.
* The server binds 127.0.0.1 unless told otherwise; TLS with ``--tls-cert/--tls-key`` or
  behind a reverse proxy (docs/api.md).
"""

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .._version import __version__
from ..errors import DisgorgeError, InvalidInput
from ..sharing.asgi import AccessLog, uvicorn_config
from ..sharing.limits import BodyBudget, Gate, Limits, Refused
from ..sharing.worker import InboxWorker
from ..web.app import router as ui_router
from ..workspace import Workspace
from .problems import MEDIA_TYPE, problem_body
from .routes import RESOURCES
from .state import AppState
from .table import AUTH_KEY, PUBLIC, SIGNED, TOKEN, Endpoint, endpoints_of

__all__ = ["INSTALL_HINT", "Limits", "create_app", "endpoints", "running_server", "uvicorn_config"]

log = logging.getLogger("disgorge.server")

INSTALL_HINT = "the server needs the server extra: pip install 'disgorge[server]'"


def endpoints() -> list[Endpoint]:
    """Every endpoint of the API, as the route table declares it."""
    return endpoints_of(RESOURCES)


def _problem(
    status: int, detail: str, exc: BaseException | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, detail, exc), status_code=status, headers=headers, media_type=MEDIA_TYPE
    )


def _install_error_handlers(app: FastAPI, limits: Limits) -> None:
    retry = {"Retry-After": str(limits.retry_after_s)}

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})  # 405 keeps Allow
        if exc.status_code == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return _problem(exc.status_code, str(exc.detail), None, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # the messages and locations only: pydantic's "input" would echo what was sent
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return _problem(422, message or "invalid request")

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return _problem(exc.status, exc.message, None, exc.headers)

    @app.exception_handler(DisgorgeError)
    async def _disgorge_error(_request: Request, exc: DisgorgeError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _problem(exc.status, str(exc), exc, headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_request: Request, _exc: Exception) -> JSONResponse:
        log.warning("no catalog connection came free; answered 503")
        return _problem(503, "the server is busy; try again later", None, retry)

    @app.exception_handler(OperationalError)
    async def _operational(_request: Request, exc: OperationalError) -> JSONResponse:
        if "locked" in str(exc.orig) or "busy" in str(exc.orig):  # another process wrote for a minute
            log.warning("the catalog stayed locked; answered 503")
            return _problem(503, "the catalog is busy; try again later", None, retry)
        log.error("catalog error: %s", type(exc.orig).__name__)
        return _problem(500, "internal error; see the server's log")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s in a handler", type(exc).__name__)
        return _problem(500, "internal error; see the server's log")


def create_app(
    workspace_path: str | Path | None = None,
    *,
    actor: str = "disgorge-server",
    limits: Limits | None = None,
) -> FastAPI:
    """The FastAPI app of the workspace at ``workspace_path`` (``None``: ``$DISGORGE_WORKSPACE``
    or the cwd upwards). Run it with uvicorn, best with :func:`uvicorn_config`."""
    from .jobs import JobRunner

    limits = limits or Limits()
    ws = Workspace.open(workspace_path, actor=actor)  # fails here, not at the first request
    try:
        ctx = ws.ctx
        pem = ctx.public_key_pem()
        state = AppState(
            ctx=ctx,
            limits=limits,
            gate=Gate(limits),
            budget=BodyBudget(limits),
            inbox_worker=InboxWorker(lambda: Workspace.open(ws.root, actor=actor)),
            public_pem=pem,
            public_hex=ctx.public_key().public_bytes_raw().hex(),
        )
        state.jobs = JobRunner(lambda: Workspace.open(ws.root, actor=actor))
    except BaseException:
        ws.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        state.inbox_worker.start()
        state.jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(state.inbox_worker.stop)
            await run_in_threadpool(state.jobs.stop)
            ws.close()

    app = DisgorgeApp(
        title="disgorge",
        version=__version__,
        description=(
            "Provenance, consent, lineage and verifiable erasure of a workspace's photos. "
            "Authenticate with `Authorization: Bearer <token>` (`disgorge token create`); "
            "each operation names the scope its role needs (`x-disgorge-scope`). Errors are "
            "RFC 9457 problem details. Other organisations' erasure requests come in signed "
            "(`/v1/erasure-requests`, docs/sharing.md). A busy server answers 503 with Retry-After."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.disgorge = state
    app.add_middleware(AccessLog)
    _install_error_handlers(app, limits)
    for resource in RESOURCES:
        app.include_router(resource.router)
    app.include_router(ui_router)  # the web UI (/ui/, docs/ui.md): pages, not rows of the route table
    return app


#: the OpenAPI security schemes, by the route table's ``auth`` kinds
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A principal's token (`disgorge token create --user NAME`), `dg_<id>_<secret>`.",
    },
    "senderSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            "A registered sender's Ed25519 signature: on the request document itself (POST), or "
            "`Disgorge <base64url of a signed disgorge.erasure-query/1>` (GET), docs/sharing.md."
        ),
    },
}


class DisgorgeApp(FastAPI):
    """FastAPI with the OpenAPI document's security schemes, and each operation's
    requirement (bearer for ``token`` routes, the sender's signature for ``signed``, none
    for ``public``), taken from the route table."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    auth = operation.get(AUTH_KEY)
                    if auth == TOKEN:
                        operation["security"] = [{"bearer": []}]
                    elif auth == SIGNED:
                        operation["security"] = [{"senderSignature": []}]
                    elif auth == PUBLIC:
                        operation["security"] = []
            self.openapi_schema = document
        return self.openapi_schema


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
    """Serve the API with uvicorn in a background thread; yields its base URL.

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

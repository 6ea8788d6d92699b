"""serve: this workspace's erasure inbox over HTTP."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from ..errors import DisgorgeError
from ._common import WorkspaceOpt, err, fail

__all__ = ["serve"]


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8765,
    max_body_mb: Annotated[
        int, typer.Option(min=1, help="Largest request body in MB (413 above it, refused before reading).")
    ] = 64,
    max_waiting: Annotated[
        int, typer.Option(min=1, help="Requests that may wait for the catalog; more are answered 503.")
    ] = 256,
    workspace: WorkspaceOpt = None,
) -> None:
    """Answer senders' erasure requests over HTTP (needs the server extra).

    Senders registered with `disgorge sender add` POST signed requests to
    /v1/erasure-requests; this workspace erases the photos and answers with its signed
    certificate. A busy server answers 503 with Retry-After; an accepted request (202) is
    in the catalog and is finished even after a restart. OpenAPI docs at /docs. Stop
    with Ctrl-C; requests under way resume on the next start.
    """
    from ..api import INSTALL_HINT, Limits, create_app, uvicorn_config

    try:
        import uvicorn
    except ImportError:
        raise fail(INSTALL_HINT) from None
    size = max_body_mb * 1024 * 1024
    limits = Limits(max_body_bytes=size, body_budget_bytes=size, max_waiting=max_waiting)
    try:
        app = create_app(workspace, limits=limits)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    handler = logging.StreamHandler()  # the access log and the worker's lines, to stderr
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    server_log = logging.getLogger("disgorge.server")
    server_log.addHandler(handler)
    server_log.setLevel(logging.INFO)
    server_log.propagate = False
    err.print(f"serving the erasure inbox on http://{host}:{port} (OpenAPI docs at /docs)", markup=False)
    uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level="info", limits=limits)).run()

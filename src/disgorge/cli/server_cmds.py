"""serve: this workspace's erasure inbox over HTTP."""

from __future__ import annotations

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
    workspace: WorkspaceOpt = None,
) -> None:
    """Answer senders' erasure requests over HTTP (needs the server extra).

    Senders registered with `disgorge sender add` POST signed requests to
    /v1/erasure-requests; this workspace erases the photos and answers with its signed
    certificate. OpenAPI docs at /docs. Stop with Ctrl-C; requests under way resume on
    the next start.
    """
    from ..sharing.server import INSTALL_HINT, create_app

    try:
        import uvicorn
    except ImportError:
        raise fail(INSTALL_HINT) from None
    try:
        app = create_app(workspace)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    err.print(f"serving the erasure inbox on http://{host}:{port} (OpenAPI docs at /docs)", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="info")

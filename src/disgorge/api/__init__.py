"""The HTTP API of a workspace (``disgorge serve``; needs the ``server`` extra).

:func:`create_app` builds the FastAPI app; :func:`running_server` serves it on loopback in
a thread (tests, the demo); :func:`endpoints` is the route table (every endpoint, its
scope, its answers) that ``docs/api.md`` is generated from. See :mod:`.app`.
"""

from .app import INSTALL_HINT, Limits, create_app, endpoints, running_server, uvicorn_config

__all__ = ["INSTALL_HINT", "Limits", "create_app", "endpoints", "running_server", "uvicorn_config"]

"""serve: this workspace's REST API and erasure inbox over HTTP (or HTTPS)."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from pathlib import Path
from typing import Annotated

import typer

from ..errors import DisgorgeError
from ._common import WorkspaceOpt, err, fail

__all__ = ["serve"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _no_password(*_args: object) -> bytes:
    raise ValueError("encrypted")


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Refuse, before anything starts, a certificate without its key (or the other way
    round), a file that is missing or not PEM, an encrypted key, or a key that is not the
    certificate's: each with a message saying which."""
    if cert is None and key is None:
        return
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise fail(f"{given} needs {missing} too: TLS takes a certificate and its private key (PEM files)", 2)
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise fail(f"{option} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=_no_password)
    except ValueError:
        raise fail(
            f"--tls-key {key} is encrypted: give the server an unencrypted key file (mode 0600)"
        ) from None
    except ssl.SSLError as exc:
        if "mismatch" in str(exc).lower():
            raise fail(
                f"--tls-key {key} is not the private key of the certificate in --tls-cert {cert}"
            ) from None
        raise fail(
            f"--tls-cert {cert} and --tls-key {key} cannot be loaded as a PEM certificate and its "
            f"private key ({exc.reason or exc})"
        ) from None


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8765,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate (PEM; may hold the chain). Needs --tls-key."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(help="The certificate's private key (PEM, unencrypted, readable by you only)."),
    ] = None,
    max_body_mb: Annotated[
        int, typer.Option(min=1, help="Largest request body in MB (413 above it, refused before reading).")
    ] = 64,
    max_waiting: Annotated[
        int, typer.Option(min=1, help="Requests that may wait for the catalog; more are answered 503.")
    ] = 256,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the REST API and the erasure inbox (needs the server extra).

    /v1 answers people and systems holding a bearer token (`disgorge user add`, `disgorge
    token create`), each call allowed by its role's scopes; other organisations registered
    with `disgorge sender add` POST signed erasure requests to /v1/erasure-requests. Every
    endpoint, role and error: docs/api.md; the OpenAPI document is at /v1/openapi.json for
    authenticated callers. Binds 127.0.0.1 unless --host says otherwise: on any other
    address give --tls-cert and --tls-key, or put a reverse proxy that terminates TLS in
    front. A busy server answers 503 with Retry-After; accepted work (202) is in the catalog
    and is finished even after a restart. Stop with Ctrl-C.
    """
    from ..api import INSTALL_HINT, Limits, create_app, uvicorn_config

    try:
        import uvicorn
    except ImportError:
        raise fail(INSTALL_HINT) from None
    check_tls(tls_cert, tls_key)
    scheme = "https" if tls_cert else "http"
    if scheme == "http" and not _is_loopback(host):
        err.print(
            f"warning: serving plain HTTP on {host}: bearer tokens would cross the network in clear; "
            "give --tls-cert and --tls-key, or bind 127.0.0.1 behind a reverse proxy that terminates "
            "TLS (docs/api.md)",
            markup=False,
        )
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
    shown_host = f"[{host}]" if ":" in host else host
    err.print(
        f"serving the API on {scheme}://{shown_host}:{port}/v1 and the erasure inbox "
        "(docs/api.md; OpenAPI at /v1/openapi.json)",
        markup=False,
    )
    config = uvicorn_config(
        app,
        host=host,
        port=port,
        log_level="info",
        limits=limits,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )
    uvicorn.Server(config).run()

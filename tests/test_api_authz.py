"""The authorisation matrix of the REST API, generated from the route table.

Every endpoint that takes a bearer token (``disgorge.api.endpoints()``, auth ``token``) is
called by a principal of each role and by five callers that must be turned away: no token,
a malformed one, an expired one, a revoked one, and a disabled principal's. The bad ones
get exactly 401 (the same answer for all: a caller learns nothing about which tokens
exist); a role without the endpoint's scope (``scopes_of``) gets exactly 403; a role that
holds it gets past authorisation (any answer but 401, 403 or a server error: a 404 for a
path that names nothing, a 422 for the empty body, are the route speaking).

Path parameters name nothing that exists and every body is ``{}``, so no call of the
matrix changes what a later one finds (nothing is disabled, revoked or erased). A route
added to the app without a :class:`~disgorge.api.table.Resource` has no row in the table,
and the test that compares the app's routes with the table fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from conftest import ROLE_USERS, Api, serve_api, smoke_workspace, sql
from disgorge import Workspace
from disgorge.access.roles import ROLES, SCOPES, scopes_of
from disgorge.api import create_app, endpoints
from disgorge.api.table import PUBLIC, SIGNED, TOKEN, Endpoint
from disgorge.web import is_ui_path

TOKEN_ENDPOINTS = [e for e in endpoints() if e.auth == TOKEN]
#: callers that must get 401 whatever they call
BAD = ("no token", "malformed", "expired", "revoked", "disabled")


@dataclass
class Matrix:
    api: Api
    bad: dict[str, str | None]  # caller -> the Authorization header it sends (None: none)


def _admin_token(ws: Workspace, name: str) -> dict[str, Any]:
    ws.add_principal(name, role="admin")
    return dict(ws.create_token(name, expires="1d"))


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """One server on a small real workspace; the bad tokens belong to admins, so a 401 is
    the token's fault and never a missing scope's."""
    tmp = tmp_path_factory.mktemp("authz")
    smoke_workspace(tmp).close()
    root = tmp / "ws"
    with Workspace.open(root, actor="tester") as ws:
        expired = _admin_token(ws, "expired-admin")
        revoked = _admin_token(ws, "revoked-admin")
        ws.revoke_token(revoked["id"])
        disabled = _admin_token(ws, "disabled-admin")
        ws.disable_principal("disabled-admin")
        # the token is valid for a day: move its expiry into the past, as time would
        moved = sql(
            ws,
            "UPDATE api_tokens SET expires_at = ? WHERE id = ?",
            "2001-01-01 00:00:00.000000",
            expired["id"],
        )
        assert moved == []
        [(state,)] = sql(ws, "SELECT expires_at FROM api_tokens WHERE id = ?", expired["id"])
        assert state.startswith("2001-01-01")
    with serve_api(root) as api:
        bad: dict[str, str | None] = {
            "no token": None,
            "malformed": "Bearer dg_not-a-token",
            "expired": f"Bearer {expired['token']}",
            "revoked": f"Bearer {revoked['token']}",
            "disabled": f"Bearer {disabled['token']}",
        }
        yield Matrix(api, bad)


def _harmless_path(path: str) -> str:
    """``path`` with each ``{param}`` naming nothing that exists (well-formed where the
    name says what it is)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if "sha" in name:
            return "0" * 64
        if name == "token_id":
            return "000000000000"
        if name == "key":
            return "no_such_setting"
        return "nonexistent-0"

    return re.sub(r"\{([^}]+)\}", fill, path)


def _send(api: Api, endpoint: Endpoint, authorization: str | None, who: str | None = None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    kw: dict[str, Any] = {"headers": headers}
    if endpoint.method in ("POST", "PUT", "PATCH"):
        kw["json"] = {}
    return api.call(who, endpoint.method, _harmless_path(endpoint.path), **kw)


def test_the_table_has_token_routes() -> None:
    paths = {(e.method, e.path) for e in TOKEN_ENDPOINTS}
    # the routes every helper relies on: principals, erasures, status, the document itself
    assert {
        ("GET", "/v1/me"),
        ("GET", "/v1/status"),
        ("POST", "/v1/erasures"),
        ("GET", "/v1/openapi.json"),
    } <= paths
    for e in TOKEN_ENDPOINTS:
        assert e.scope is None or e.scope in SCOPES, f"{e.method} {e.path}: unknown scope {e.scope}"


@pytest.mark.parametrize("endpoint", TOKEN_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_authorisation_matrix(matrix: Matrix, endpoint: Endpoint) -> None:
    wrong: list[str] = []
    for caller, authorization in matrix.bad.items():
        r = _send(matrix.api, endpoint, authorization)
        if r.status_code != 401:
            wrong.append(f"{caller}: {r.status_code} (expected 401) {r.text[:200]}")
        elif r.headers.get("www-authenticate", "").lower() != "bearer":
            wrong.append(f"{caller}: 401 without WWW-Authenticate: Bearer")
    for role in ROLES:
        r = _send(matrix.api, endpoint, matrix.api.headers(role)["Authorization"], role)
        holds = endpoint.scope is None or endpoint.scope in scopes_of(role)
        if not holds and r.status_code != 403:
            wrong.append(f"{role} (lacks {endpoint.scope}): {r.status_code} (expected 403) {r.text[:200]}")
        if holds and (r.status_code in (401, 403) or r.status_code >= 500):
            wrong.append(f"{role} (holds {endpoint.scope}): {r.status_code} {r.text[:200]}")
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), (role, r.text)
            assert r.json()["status"] == r.status_code
    assert not wrong, f"{endpoint.method} {endpoint.path}:\n" + "\n".join(wrong)


def test_the_principals_of_the_matrix_still_work(matrix: Matrix) -> None:
    """The matrix changed nothing its callers depend on: each role is still itself."""
    for role, name in ROLE_USERS.items():
        r = matrix.api.call(role, "GET", "/v1/me")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == name and r.json()["role"] == role
        assert r.json()["scopes"] == sorted(scopes_of(role))


def _routes(app: FastAPI) -> Iterator[BaseRoute]:
    """Every route the app serves, also those of included routers (FastAPI >= 0.16x keeps
    an included router as one lazy entry of ``app.routes``)."""
    # The web UI's pages (/ui/..., disgorge.web.is_ui_path) are the one exemption: they answer
    # HTML to a session cookie, not rows of the API's table; tests/test_web.py checks their
    # login, CSRF and scopes.
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:  # older FastAPI: include_router copies the routes in
        yield from (r for r in app.routes if not is_ui_path(getattr(r, "path", "")))
        return
    for context in iter_route_contexts(app.routes):
        if is_ui_path(context.path or ""):
            continue
        yield context.original_route if isinstance(context.original_route, APIRoute) else context


def test_every_route_is_a_row_of_the_table(tmp_path: Path) -> None:
    """A route the app serves that the table does not declare (added without a Resource)
    fails here; so does a row that no route serves."""
    Workspace.init(tmp_path / "ws", actor="tester").close()
    app = create_app(tmp_path / "ws")
    with TestClient(app):  # runs the lifespan, which closes the workspace again
        routes = list(_routes(app))
    served = {(m, r.path) for r in routes if isinstance(r, APIRoute) for m in r.methods}
    others = [getattr(r, "path", repr(r)) for r in routes if not isinstance(r, APIRoute)]
    assert others == [], "routes that are not API routes of a Resource"
    assert len(served) >= len(TOKEN_ENDPOINTS)
    rows = {(e.method, e.path): e for e in endpoints()}
    assert len(rows) == len(endpoints()), "a (method, path) is declared twice"
    assert served - set(rows) == set(), "routes served without a row in the route table (use a Resource)"
    assert set(rows) - served == set(), "rows of the route table that no route serves"
    for (method, path), e in rows.items():
        assert e.auth in (TOKEN, SIGNED, PUBLIC), (method, path, e.auth)
        if e.auth == TOKEN:
            assert e.scope is None or e.scope in SCOPES, (method, path, e.scope)
        else:
            assert e.scope is None, f"{method} {path}: a {e.auth} route has no scope to check"
    # only liveness and the public key are open to anyone
    assert {(e.method, e.path) for e in endpoints() if e.auth == PUBLIC} <= {
        ("GET", "/healthz"),
        ("GET", "/v1/public-key"),
    }


def test_openapi_names_each_scope_and_its_refusals(matrix: Matrix) -> None:
    r = matrix.api.call("viewer", "GET", "/v1/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    missing: list[str] = []
    for e in endpoints():
        operation = doc["paths"].get(e.path, {}).get(e.method.lower())
        if operation is None:
            missing.append(f"{e.method} {e.path}: not in the document")
            continue
        if operation.get("x-disgorge-auth") != e.auth:
            missing.append(f"{e.method} {e.path}: x-disgorge-auth {operation.get('x-disgorge-auth')!r}")
        responses = operation.get("responses", {})
        if str(e.status) not in responses:
            missing.append(f"{e.method} {e.path}: its success {e.status} is not documented")
        if e.auth != TOKEN:
            continue
        if operation.get("x-disgorge-scope", "missing") != (e.scope or ""):
            missing.append(f"{e.method} {e.path}: x-disgorge-scope {operation.get('x-disgorge-scope')!r}")
        if "401" not in responses:
            missing.append(f"{e.method} {e.path}: 401 not documented")
        if e.scope is not None and "403" not in responses:
            missing.append(f"{e.method} {e.path}: 403 not documented")
        for status in ("401", "403"):
            if status in responses:
                assert "application/problem+json" in responses[status].get("content", {}), (e.path, status)
    assert not missing, "\n".join(missing)


def test_the_document_is_for_principals_only(matrix: Matrix) -> None:
    for caller, authorization in matrix.bad.items():
        headers = {"Authorization": authorization} if authorization else {}
        r = matrix.api.call(None, "GET", "/v1/openapi.json", headers=headers)
        assert r.status_code == 401, (caller, r.status_code)
        assert "paths" not in r.text

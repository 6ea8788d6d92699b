"""The route table: every endpoint, who may call it, and what it answers.

Each route module declares its endpoints through a :class:`Resource`; the declaration is
at once the FastAPI route, its OpenAPI entry (the scope as ``x-disgorge-scope``, the error
answers as problem details) and a row of :func:`endpoints`, the table that
``docs/api.md`` is generated from and that the authorisation-matrix test walks. A route
added to the app any other way has no row, and ``tests/test_api_authz.py`` fails.

Three kinds of caller (``auth``):

* ``token``: a bearer token (``Authorization: Bearer dg_…``) whose principal's role holds
  ``scope`` (``None``: any authenticated principal; ``""`` in the document). The check
  runs before the request's body is read, so an unauthenticated caller learns nothing
  from validation errors;
* ``signed``: another organisation's system, authenticated by its registered Ed25519 key
  on the signed document it sends (the inbox's protocol, docs/sharing.md);
* ``public``: liveness and the workspace's public key, nothing else.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ..access.principals import authenticate
from ..errors import Forbidden
from .problems import problem_answer

__all__ = ["PUBLIC", "SIGNED", "TOKEN", "Endpoint", "Resource", "ScopedRoute", "bearer"]

TOKEN, SIGNED, PUBLIC = "token", "signed", "public"
AUTH_KEY, SCOPE_KEY = "x-disgorge-auth", "x-disgorge-scope"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Endpoint:
    """One row of the route table."""

    method: str
    path: str
    auth: str
    #: the scope a token's role must hold (``None`` with ``token``: any valid token)
    scope: str | None
    summary: str
    tag: str
    #: the status of a successful answer
    status: int
    #: the error answers it documents, status -> when
    errors: dict[int, str] = field(default_factory=dict)


def bearer(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class ScopedRoute(APIRoute):
    """A route that authenticates its caller and checks the scope before anything else
    (before the body is parsed), inside the server's catalog gate."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        inner = super().get_route_handler()
        extra = self.openapi_extra or {}
        if extra.get(AUTH_KEY) != TOKEN:
            return inner
        scope = extra.get(SCOPE_KEY) or None  # "": any valid token

        async def handler(request: Request) -> Response:
            state = request.app.state.disgorge
            async with state.gate.slot():
                principal = await run_in_threadpool(authenticate, state.ctx, bearer(request))
                if scope is not None and not principal.may(scope):
                    raise Forbidden(f"the role {principal.role} does not hold the scope {scope}")
                request.state.principal = principal
                response: Response = await inner(request)
                return response

        return handler


def _standard_errors(auth: str, scope: str | None, path: str, method: str) -> dict[int, str]:
    errors: dict[int, str] = {}
    if auth == TOKEN:
        errors[401] = "No bearer token, or one that is unknown, expired or revoked"
        if scope is not None:
            errors[403] = f"The token's role does not hold {scope}"
    if "{" in path or method in ("POST", "PUT", "PATCH"):
        errors[404] = "No such item (named in the path or the body)"
    if method in ("POST", "PUT", "PATCH"):
        errors[400] = "The body is not JSON"
    if "{" in path or method in ("POST", "PUT", "PATCH") or method == "GET":
        errors[422] = "A parameter or the body is malformed"
    errors[503] = "Busy: try again after Retry-After seconds"
    return errors


class Resource:
    """The endpoints of one resource (``tag``), declared with :meth:`get` / :meth:`post` /
    :meth:`put` / :meth:`delete`."""

    def __init__(self, tag: str, description: str = "") -> None:
        self.tag, self.description = tag, description
        self.router = APIRouter(route_class=ScopedRoute)
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        summary: str,
        auth: str = TOKEN,
        status_code: int = 200,
        errors: dict[int, str] | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        all_errors = {**_standard_errors(auth, scope, path, method), **(errors or {})}
        endpoint = Endpoint(method, path, auth, scope, summary, self.tag, status_code, all_errors)
        responses = dict(options.pop("responses", {}))
        retry = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        for status, text in sorted(all_errors.items()):
            responses.setdefault(status, problem_answer(text, retry if status == 503 else None))
        extra = {**options.pop("openapi_extra", {}), AUTH_KEY: auth}
        if auth == TOKEN:  # "" for any valid token: FastAPI drops a None from the document
            extra[SCOPE_KEY] = scope or ""

        def register(function: F) -> F:
            self.router.add_api_route(
                path,
                function,
                methods=[method],
                status_code=status_code,
                summary=summary,
                tags=[self.tag],
                responses=responses,
                openapi_extra=extra,
                **options,
            )
            self.endpoints.append(endpoint)
            return function

        return register

    def get(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route("DELETE", path, **kw)


def endpoints_of(resources: Iterable[Resource]) -> list[Endpoint]:
    return [e for r in resources for e in r.endpoints]

"""What every page shares: the page route (login, CSRF, scope), templates, static files.

A page is declared on a :func:`page_router` with :func:`needs` (the scope the API route
showing the same data needs; ``None``: any logged-in principal) or :data:`PUBLIC`.
:class:`PageRoute` runs before the handler, inside the server's catalog gate:

* no live session (:mod:`.sessions`) → ``303`` to the login page;
* a POST whose form lacks the session's CSRF token → ``403`` ("the form's CSRF token is
  missing or wrong"), before anything else reads the form;
* a role without the scope → ``403`` page with ``#forbidden``;
* a :class:`~disgorge.errors.DisgorgeError` from a service → its status, as a page (a
  malformed parameter: ``422``).

Handlers get the workspace's context acting for the logged-in principal
(:func:`context`), exactly as the API's handlers do (:mod:`disgorge.api.deps`), so every
write is audited with their name and the two-person rule applies to them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ..context import Context
from ..errors import DisgorgeError
from . import UI_PREFIX, csrf, sessions

__all__ = [
    "LOGIN_URL",
    "PUBLIC",
    "PageRoute",
    "context",
    "error_page",
    "login_of",
    "needs",
    "page_router",
    "redirect",
    "render",
]

log = logging.getLogger("disgorge.web")

HERE = Path(__file__).resolve().parent
LOGIN_URL = f"{UI_PREFIX}/login"
_SCOPE_KEY, _PUBLIC_KEY = "x-ui-scope", "x-ui-public"
#: no script or style from anywhere but here (nothing inline), no framing, no referrer
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: the only files the UI serves from disk: name in the URL -> file
STATIC = {
    "app.css": (HERE / "static" / "app.css", "text/css"),
    "vendor/htmx.min.js": (HERE / "static" / "vendor" / "htmx.min.js", "text/javascript"),
    "subject.js": (HERE / "static" / "subject.js", "text/javascript"),
    "graph.js": (HERE / "static" / "graph.js", "text/javascript"),
    "vendor/cytoscape.min.js": (HERE / "static" / "vendor" / "cytoscape.min.js", "text/javascript"),
    "vendor/dagre.min.js": (HERE / "static" / "vendor" / "dagre.min.js", "text/javascript"),
    "vendor/cytoscape-dagre.js": (HERE / "static" / "vendor" / "cytoscape-dagre.js", "text/javascript"),
}
#: what a page declares for :class:`PageRoute` when anyone may see it (login, static files)
PUBLIC: dict[str, Any] = {"openapi_extra": {_PUBLIC_KEY: True}}


def needs(scope: str | None) -> dict[str, Any]:
    """Route options: a page for logged-in principals whose role holds ``scope``."""
    return {"openapi_extra": {_SCOPE_KEY: scope or ""}}


def page_router() -> APIRouter:
    """A router of pages (never in the OpenAPI document)."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


@functools.cache
def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["ui"] = UI_PREFIX
    return env


def login_of(request: Request) -> sessions.Login:
    login: sessions.Login = request.state.login
    return login


def context(request: Request) -> Context:
    """The workspace's context acting for the logged-in principal (as the API's ``Ctx``)."""
    principal = login_of(request).principal
    ctx: Context = request.app.state.disgorge.ctx
    return ctx.acting_as(principal.name, principal)


def render(request: Request, template: str, status: int = 200, /, **values: Any) -> HTMLResponse:
    """A page from ``templates/``, with who is logged in, their CSRF token and scopes."""
    login: sessions.Login | None = getattr(request.state, "login", None)
    html = (
        _templates()
        .get_template(template)
        .render(
            login=login,
            whoami=f"{login.principal.name} ({login.principal.role})" if login else None,
            csrf_token=login.csrf_token if login else values.pop("csrf_token", ""),
            may=login.principal.may if login else (lambda _scope: False),
            path=request.url.path,
            **values,
        )
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(request: Request, status: int, message: str, *, element: str = "error") -> HTMLResponse:
    return render(request, "error.html", status, message=message, element=element)


def redirect(url: str) -> RedirectResponse:
    """``303 See Other``: after a POST, the browser GETs ``url``."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


class PageRoute(APIRoute):
    """A page: the session, the CSRF token of a POST and the scope are checked first."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        inner = super().get_route_handler()
        extra = self.openapi_extra or {}
        public = bool(extra.get(_PUBLIC_KEY))
        scope = extra.get(_SCOPE_KEY) or None

        async def handler(request: Request) -> Response:
            state = request.app.state.disgorge
            async with state.gate.slot():
                try:
                    if not public:
                        secret = request.cookies.get(sessions.cookie_name(state.ctx.workspace_id))
                        login = await run_in_threadpool(sessions.lookup, state.ctx, secret)
                        if login is None:
                            if request.headers.get("hx-request"):  # htmx: load the login page whole
                                return Response(status_code=204, headers={"HX-Redirect": LOGIN_URL})
                            return redirect(LOGIN_URL)
                        request.state.login = login
                        if request.method == "POST":
                            form = await request.form()
                            if not csrf.matches(login.csrf_token, form.get(csrf.FIELD)):
                                return error_page(request, 403, csrf.MESSAGE)
                        if scope is not None and not login.principal.may(scope):
                            return error_page(
                                request,
                                403,
                                f"the role {login.principal.role} does not hold the scope {scope}",
                                element="forbidden",
                            )
                    response: Response = await inner(request)
                    return response
                except DisgorgeError as exc:
                    return error_page(request, exc.status, str(exc))
                except RequestValidationError:  # a malformed id in the path, a bad query
                    return error_page(request, 422, "a parameter of the page is malformed")

        return handler

"""Logging in and out, and the static files (CSS, the vendored htmx).

A wrong password and an unknown name get the same answer, ``401`` with "wrong user name or
password", after the same work (:func:`disgorge.access.passwords.check_password`). The
login form is protected by a pre-session CSRF cookie (double submit); a successful login
sets the session cookie, ``disgorge_session_<workspace>`` (HttpOnly, SameSite=Strict,
Path=/ui, Secure over https) and answers ``303`` to the overview. Logout revokes the
session on the server.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Form, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ...access.passwords import check_password
from ...errors import NotFound
from .. import UI_PREFIX, csrf, sessions
from ..framework import LOGIN_URL, PUBLIC, STATIC, error_page, login_of, needs, page_router, redirect, render
from ..throttle import LoginThrottle

__all__ = ["router"]

router = page_router()
log = logging.getLogger("disgorge.web")

WRONG = "wrong user name or password"


def _session_cookie(request: Request) -> str:
    return sessions.cookie_name(request.app.state.disgorge.ctx.workspace_id)


def _csrf_cookie(request: Request) -> str:
    return sessions.cookie_name(request.app.state.disgorge.ctx.workspace_id, csrf.LOGIN_COOKIE)


def _cookie_options(request: Request) -> dict[str, object]:
    return {
        "path": UI_PREFIX,
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
    }


def _login_form(
    request: Request, status: int = 200, error: str | None = None, username: str = ""
) -> Response:
    token = request.cookies.get(_csrf_cookie(request)) or ""
    if len(token) < 32 or len(token) > 64:
        token = csrf.new_token()
    response = render(request, "login.html", status, csrf_token=token, error=error, username=username)
    response.set_cookie(_csrf_cookie(request), token, max_age=3600, **_cookie_options(request))  # type: ignore[arg-type]
    return response


@router.get("/login", **PUBLIC)
def login_page(request: Request) -> Response:
    state = request.app.state.disgorge
    if sessions.lookup(state.ctx, request.cookies.get(_session_cookie(request))) is not None:
        return redirect(f"{UI_PREFIX}/")
    return _login_form(request)


@router.post("/login", **PUBLIC)
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=128)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    if not csrf.matches(request.cookies.get(_csrf_cookie(request)), csrf_token):
        return error_page(request, 403, csrf.MESSAGE)
    ctx = request.app.state.disgorge.ctx
    throttle = _throttle(request)
    keys = throttle.keys(username)
    wait = throttle.wait_s(keys)
    if wait > 0:  # before the password is even checked: guessing costs real time
        response = _login_form(
            request, 429, f"too many failed logins: try again in {int(wait // 60) + 1} minute(s)"
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    principal = await run_in_threadpool(check_password, ctx, username.strip(), password)
    if principal is None:
        throttle.failed(keys)
        log.info("a web UI login was refused")  # never the name: it may be someone's password
        return _login_form(request, 401, WRONG, username)
    throttle.succeeded(keys)
    secret, _login = await run_in_threadpool(sessions.create, ctx, principal)
    response = redirect(f"{UI_PREFIX}/")
    response.set_cookie(_session_cookie(request), secret, **_cookie_options(request))  # type: ignore[arg-type]
    response.delete_cookie(_csrf_cookie(request), **_cookie_options(request))  # type: ignore[arg-type]
    return response


def _throttle(request: Request) -> LoginThrottle:
    """The server's one throttle of failed logins (made with the first login)."""
    state = request.app.state
    if not hasattr(state, "login_throttle"):
        state.login_throttle = LoginThrottle()
    throttle: LoginThrottle = state.login_throttle
    return throttle


@router.post("/logout", **needs(None))
def logout(request: Request) -> Response:
    sessions.revoke(request.app.state.disgorge.ctx, login_of(request))
    response = redirect(LOGIN_URL)
    response.delete_cookie(_session_cookie(request), **_cookie_options(request))  # type: ignore[arg-type]
    return response


@router.get("/static/{name:path}", **PUBLIC)
def static(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        raise NotFound("no such file")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

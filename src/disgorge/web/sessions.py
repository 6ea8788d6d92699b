"""Web UI logins: one ``web_sessions`` row per login, found by the SHA-256 of the cookie.

The cookie ``disgorge_session_<workspace>`` (:func:`cookie_name`) holds 32 random bytes
(urlsafe base64); the catalog keeps only their SHA-256 (a random secret needs no slow
hash), with the CSRF token the session's forms carry. A session ends after 8 hours
without a request (idle) or 12 hours after login (absolute), when its principal is
disabled or sets a new password, and on logout, which revokes the row: a copied cookie
stops working too, not just the browser's.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CursorResult, update

from .. import audit
from .._time import utcnow
from ..access.roles import Principal
from ..catalog.api_models import Principal as PrincipalRow
from ..catalog.api_models import WebSession
from ..context import Context

__all__ = ["ABSOLUTE", "COOKIE", "IDLE", "Login", "cookie_name", "create", "lookup", "revoke"]

#: the session cookie's name starts with this; :func:`cookie_name` adds the workspace
COOKIE = "disgorge_session"
IDLE = timedelta(hours=8)
ABSOLUTE = timedelta(hours=12)
#: ``last_seen_at`` is written at most this often (a write per page would queue every
#: read behind SQLite's one writer)
SEEN_RESOLUTION = timedelta(seconds=60)


def cookie_name(workspace_id: str, prefix: str = COOKIE) -> str:
    """``PREFIX_<the workspace id's first 12 hex digits>``. A browser keeps cookies per host,
    not per port: two workspaces served on one host (``disgorge demo --serve`` serves two on
    127.0.0.1) would otherwise overwrite each other's session, and logging in to one would
    log the user out of the other."""
    return f"{prefix}_{workspace_id[:12]}"


@dataclass(frozen=True)
class Login:
    """A live session: whose, its row id and the CSRF token its forms carry."""

    id: str
    principal: Principal
    csrf_token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(ctx: Context, principal: Principal) -> tuple[str, Login]:
    """A new session for ``principal``: the cookie's secret (never stored) and the login."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(
        id=_digest(secret),
        principal_id=principal.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ABSOLUTE,
        last_seen_at=now,
    )
    with ctx.sessions.begin() as session:
        session.add(row)
        session.flush()
        # the session's id would let a reader of the log find its row: the principal only
        audit.append(session, "ui.login", {"principal": principal.id}, actor=principal.name, at=now)
    return secret, Login(row.id, principal, row.csrf_token)


def lookup(ctx: Context, secret: str | None) -> Login | None:
    """The live session a cookie stands for, or None (unknown, revoked, idle or past its
    absolute expiry, or its principal disabled)."""
    if not secret or len(secret) > 128:
        return None
    now = utcnow()
    with ctx.reader() as session:
        row = session.get(WebSession, _digest(secret))
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        if row.last_seen_at + IDLE <= now:
            return None
        who = session.get(PrincipalRow, row.principal_id)
        if who is None or who.disabled_at is not None:
            return None
        login = Login(
            row.id, Principal(id=who.id, name=who.name, role=who.role, kind=who.kind), row.csrf_token
        )
        stale = now - row.last_seen_at >= SEEN_RESOLUTION
    if stale:
        with ctx.sessions.begin() as session:
            session.execute(update(WebSession).where(WebSession.id == login.id).values(last_seen_at=now))
    return login


def revoke(ctx: Context, login: Login) -> None:
    """End a session on the server (logout)."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        result = session.execute(
            update(WebSession)
            .where(WebSession.id == login.id, WebSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        assert isinstance(result, CursorResult)  # an UPDATE's result counts its rows
        ended = result.rowcount
        if ended:
            audit.append(
                session, "ui.logout", {"principal": login.principal.id}, actor=login.principal.name, at=now
            )

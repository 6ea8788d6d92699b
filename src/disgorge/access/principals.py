"""Principals (users and service principals) and their bearer tokens.

A token is ``dg_<id>_<secret>``: 128 random bits of secret, shown once when created and
stored only as its SHA-256 (a random secret needs no slow hash: there is nothing to guess
from its digest), compared in constant time. ``<id>`` is the token's row id and the
prefix lists show, so a leaked token can be recognised and revoked without being kept.

Every change here is audited with the actor who made it; the audit log names principals,
never a token's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, utcnow
from ..catalog.api_models import ApiToken
from ..catalog.api_models import Principal as PrincipalRow
from ..context import Context
from ..errors import InvalidInput, NotFound, Unauthenticated
from .roles import ROLES, Principal

__all__ = [
    "PrincipalView",
    "TokenCreated",
    "TokenView",
    "add_principal",
    "authenticate",
    "create_token",
    "disable_principal",
    "list_principals",
    "list_tokens",
    "parse_expiry",
    "revoke_token",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_TOKEN = re.compile(r"^dg_([0-9a-f]{12})_([A-Za-z0-9_-]{20,64})$")
_DURATION = re.compile(r"^(\d{1,5})([hdw])$")
#: last-used times are written at most this often per token (a write per read would
#: queue every API read behind SQLite's one writer)
LAST_USED_RESOLUTION = timedelta(seconds=60)


class PrincipalView(TypedDict):
    id: str
    name: str
    role: str
    kind: str
    created_at: str
    disabled_at: str | None
    tokens: int


class TokenView(TypedDict):
    id: str
    #: what a list shows of the token: ``dg_<id>_…``
    prefix: str
    principal: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    #: active, expired or revoked
    state: str


class TokenCreated(TokenView):
    #: the whole token: shown this once, never stored
    token: str


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidInput(
            "a principal's name is 1-64 letters, digits or . _ @ - and starts with a letter or digit"
        )
    return name


def _find(session: Session, name: str) -> PrincipalRow:
    row = session.execute(select(PrincipalRow).where(PrincipalRow.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no principal named {name!r}; see `disgorge user list`")
    return row


def _principal_view(row: PrincipalRow, tokens: int) -> PrincipalView:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "kind": row.kind,
        "created_at": iso(row.created_at),
        "disabled_at": iso(row.disabled_at),
        "tokens": tokens,
    }


def _token_state(row: ApiToken, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def _token_view(row: ApiToken, principal: str, now: datetime) -> TokenView:
    return {
        "id": row.id,
        "prefix": f"dg_{row.id}_…",
        "principal": principal,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
        "last_used_at": iso(row.last_used_at),
        "state": _token_state(row, now),
    }


def add_principal(ctx: Context, name: str, *, role: str, kind: str = "user") -> PrincipalView:
    """Add a user (``kind="user"``) or a service principal (``"service"``) with a role."""
    _check_name(name)
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if kind not in ("user", "service"):
        raise InvalidInput("a principal's kind is user or service")
    now = utcnow()
    with ctx.sessions.begin() as session:
        if session.execute(select(PrincipalRow.id).where(PrincipalRow.name == name)).first():
            raise InvalidInput(f"a principal named {name!r} already exists")
        row = PrincipalRow(id="prn_" + uuid.uuid4().hex[:16], name=name, role=role, kind=kind, created_at=now)
        session.add(row)
        session.flush()
        audit.append(
            session,
            "principal.added",
            {"principal": row.id, "role": role, "kind": kind},
            actor=ctx.actor,
            at=now,
        )
        return _principal_view(row, 0)


def list_principals(ctx: Context) -> list[PrincipalView]:
    """Every principal, by name, with its number of active tokens."""
    now = utcnow()
    with ctx.reader() as session:
        rows = session.execute(select(PrincipalRow).order_by(PrincipalRow.name)).scalars().all()
        tokens = session.execute(select(ApiToken)).scalars().all()
        active: dict[str, int] = {}
        for token in tokens:
            if _token_state(token, now) == "active":
                active[token.principal_id] = active.get(token.principal_id, 0) + 1
        return [_principal_view(row, active.get(row.id, 0)) for row in rows]


def disable_principal(ctx: Context, name: str) -> PrincipalView:
    """Disable a principal: its tokens stop working at once (they are kept for the record)."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        row = _find(session, name)
        if row.disabled_at is None:
            row.disabled_at = now
            audit.append(session, "principal.disabled", {"principal": row.id}, actor=ctx.actor, at=now)
        return _principal_view(row, 0)


def parse_expiry(expires: str | None, now: datetime) -> datetime | None:
    """``90d``, ``12h``, ``2w`` from now, or ``never`` (``None``)."""
    if expires is None or expires == "never":
        return None
    match = _DURATION.match(expires.strip())
    if not match:
        raise InvalidInput(f"--expires {expires!r}: give a duration like 90d, 12h or 2w, or never")
    amount, unit = int(match.group(1)), match.group(2)
    if amount == 0:
        raise InvalidInput("--expires must be at least 1h")
    return (
        now + {"h": timedelta(hours=amount), "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
    )


def create_token(ctx: Context, name: str, *, expires: str | None = "90d") -> TokenCreated:
    """A new bearer token for a principal: the result holds it, this once only."""
    now = utcnow()
    expires_at = parse_expiry(expires, now)
    token_id = secrets.token_hex(6)
    token = f"dg_{token_id}_{secrets.token_urlsafe(24)}"
    with ctx.sessions.begin() as session:
        principal = _find(session, name)
        if principal.disabled_at is not None:
            raise InvalidInput(f"principal {name!r} is disabled")
        row = ApiToken(
            id=token_id,
            principal_id=principal.id,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            created_at=now,
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            "token.created",
            {"principal": principal.id, "token": token_id, "expires_at": iso(expires_at)},
            actor=ctx.actor,
            at=now,
        )
        return {**_token_view(row, principal.name, now), "token": token}


def list_tokens(ctx: Context, name: str | None = None) -> list[TokenView]:
    """Tokens (never their secrets), of one principal or of all, newest first."""
    now = utcnow()
    with ctx.reader() as session:
        query = select(ApiToken, PrincipalRow.name).join(
            PrincipalRow, PrincipalRow.id == ApiToken.principal_id
        )
        if name is not None:
            query = query.where(PrincipalRow.id == _find(session, name).id)
        rows = session.execute(query.order_by(ApiToken.created_at.desc(), ApiToken.id)).all()
        return [_token_view(token, principal, now) for token, principal in rows]


def revoke_token(ctx: Context, token_id: str) -> TokenView:
    """Revoke a token by its id (the part after ``dg_``, as lists show it)."""
    token_id = token_id.removeprefix("dg_").split("_")[0]
    now = utcnow()
    with ctx.sessions.begin() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"no token {token_id!r}; see `disgorge token list`")
        principal = session.get(PrincipalRow, row.principal_id)
        assert principal is not None
        if row.revoked_at is None:
            row.revoked_at = now
            audit.append(
                session,
                "token.revoked",
                {"principal": principal.id, "token": row.id},
                actor=ctx.actor,
                at=now,
            )
        return _token_view(row, principal.name, now)


def authenticate(ctx: Context, token: str | None) -> Principal:
    """The principal a bearer token stands for; :class:`Unauthenticated` for a missing,
    malformed, unknown, expired or revoked token, or a disabled principal (one message for
    all, so a caller learns nothing about which tokens exist)."""
    refused = Unauthenticated("a valid bearer token is needed (Authorization: Bearer dg_…)")
    match = _TOKEN.match(token or "")
    if not match:
        raise refused
    now = utcnow()
    with ctx.reader() as session:
        row = session.get(ApiToken, match.group(1))
        digest = hashlib.sha256((token or "").encode()).hexdigest()
        if (
            row is None
            or not hmac.compare_digest(row.token_sha256, digest)
            or _token_state(row, now) != "active"
        ):
            raise refused
        principal = session.get(PrincipalRow, row.principal_id)
        if principal is None or principal.disabled_at is not None:
            raise refused
        stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
        found = Principal(id=principal.id, name=principal.name, role=principal.role, kind=principal.kind)
    if stale:
        with ctx.sessions.begin() as session:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return found

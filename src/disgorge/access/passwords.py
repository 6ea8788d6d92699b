"""Passwords for the web UI's login (``disgorge user password NAME``).

Stored only as argon2id hashes (argon2-cffi's :class:`~argon2.PasswordHasher`, its default
parameters, which follow RFC 9106's recommendation). Checking takes the same time for an
unknown name, a disabled principal and a wrong password (each verifies a hash), and answers
the same ``None`` for all three, so a login page learns nothing about which names exist.
A hash made with older parameters is replaced on the next good login. Setting a password
ends the principal's web sessions (a stolen session does not outlive a changed password).
API tokens are unaffected: they are random secrets, stored as SHA-256
(:mod:`.principals`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from sqlalchemy import CursorResult, select, update
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, utcnow
from ..catalog.api_models import Principal as PrincipalRow
from ..catalog.api_models import WebSession
from ..context import Context
from ..errors import InvalidInput, NotFound
from .roles import Principal

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = ["MIN_PASSWORD_LENGTH", "PasswordSet", "check_password", "set_password"]

#: the shortest password accepted (a passphrase of a few words is longer)
MIN_PASSWORD_LENGTH = 12
#: the longest: argon2 takes any length, but a megabyte of "password" is a denial of service
MAX_PASSWORD_LENGTH = 1024


class PasswordSet(TypedDict):
    """A password was set: for whom, and when (never the password or its hash)."""

    principal: str
    name: str
    set_at: str
    #: web sessions of the principal that setting it ended
    sessions_ended: int


@functools.cache
def _hasher() -> PasswordHasher:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise InvalidInput("passwords need the server extra: pip install 'disgorge[server]'") from None
    return PasswordHasher()  # argon2id


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no principal's, so that the time is the same."""
    return _hasher().hash("not anyone's password")


def set_password(ctx: Context, name: str, password: str) -> PasswordSet:
    """Set (or replace) the web UI password of a principal; at least 12 characters."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.isprintable():
        raise InvalidInput("a password neither starts nor ends with spaces, and holds no control characters")
    digest = _hasher().hash(password)
    now = utcnow()
    with ctx.sessions.begin() as session:
        row = session.execute(select(PrincipalRow).where(PrincipalRow.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no principal named {name!r}; see `disgorge user list`")
        if row.kind != "user":
            raise InvalidInput("only users log in to the web UI; a service principal uses a token")
        row.password_hash = digest
        result = session.execute(
            update(WebSession)
            .where(WebSession.principal_id == row.id, WebSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        assert isinstance(result, CursorResult)  # an UPDATE's result counts its rows
        ended = result.rowcount
        audit.append(
            session,
            "principal.password_set",
            {"principal": row.id, "sessions_ended": int(ended or 0)},
            actor=ctx.actor,
            at=now,
        )
        return {"principal": row.id, "name": row.name, "set_at": iso(now), "sessions_ended": int(ended or 0)}


def check_password(ctx: Context, name: str, password: str) -> Principal | None:
    """The principal ``name`` stands for when ``password`` is theirs, else ``None`` (an
    unknown name, a principal without a password or a disabled one, a wrong password)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    password = password[:MAX_PASSWORD_LENGTH]
    with ctx.reader() as session:
        row = session.execute(select(PrincipalRow).where(PrincipalRow.name == name)).scalar_one_or_none()
        stored = row.password_hash if row is not None else None
        found = (
            Principal(id=row.id, name=row.name, role=row.role, kind=row.kind)
            if row is not None and row.disabled_at is None and row.kind == "user"
            else None
        )
    try:
        hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if stored is None or found is None:
        return None
    if hasher.check_needs_rehash(stored):
        with ctx.sessions.begin() as session:
            session.execute(
                update(PrincipalRow)
                .where(PrincipalRow.id == found.id, PrincipalRow.password_hash == stored)
                .values(password_hash=hasher.hash(password))
            )
    return found

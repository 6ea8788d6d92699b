"""CSRF protection of the UI's forms.

Every POST form carries a hidden ``csrf_token``: the session's own (a random value kept
with the session row, :mod:`.sessions`), checked before the handler runs
(:class:`.framework.PageRoute`). The login form has no session yet: it uses a pre-session
cookie and the same value in the form (double submit); the cookies are ``SameSite=Strict``
too, so another site's form cannot send them.
"""

from __future__ import annotations

import hmac
import secrets

__all__ = ["FIELD", "LOGIN_COOKIE", "MESSAGE", "matches", "new_token"]

FIELD = "csrf_token"
#: the pre-session cookie's name starts with this (``sessions.cookie_name`` adds the workspace)
LOGIN_COOKIE = "disgorge_login_csrf"
MESSAGE = "the form's CSRF token is missing or wrong"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: object) -> bool:
    """Whether a form's token is the expected one (constant time; missing never matches)."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())

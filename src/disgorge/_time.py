"""Timestamps: one parser for every `--at`, consent row and manifest date.

All instants are timezone-aware UTC inside disgorge. A value without a zone is taken as
UTC (the convention of the consent and manifest formats, see docs/formats.md), a bare
date as midnight UTC of that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import overload

from .errors import InvalidInput

__all__ = ["iso", "parse_instant", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_instant(value: str | datetime | date, *, what: str = "timestamp") -> datetime:
    """Parse an ISO 8601 date or date-time into an aware UTC datetime.

    Raises InvalidInput naming `what` (for example ``"row 7: at"``) when it cannot.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if not text:
            raise InvalidInput(f"{what}: empty; expected an ISO 8601 date or date-time")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{what}: {value!r} is not an ISO 8601 date or date-time "
                "(e.g. 2014-03-01 or 2014-03-01T12:00:00Z)"
            ) from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@overload
def iso(dt: datetime) -> str: ...
@overload
def iso(dt: datetime | None) -> str | None: ...
def iso(dt: datetime | None) -> str | None:
    """Render an instant the one way disgorge prints and hashes them (None stays None: a
    typed result says ``str`` where the instant is always there)."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")

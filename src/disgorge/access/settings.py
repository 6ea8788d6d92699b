"""The workspace's settings: defaults in one table, changes kept in the catalog.

Only what an organisation decides differently lives here (today: the two-person rule);
everything about where things are stored stays in the config file.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from typing_extensions import TypedDict

from .. import audit
from ..catalog.api_models import Setting
from ..context import Context
from ..errors import InvalidInput

__all__ = ["DEFAULTS", "Settings", "get_settings", "set_setting"]


class Settings(TypedDict):
    #: approvals by privacy officers other than the requester that a large erasure needs
    approvals_required: int
    #: an erasure reaching more subjects than this needs those approvals too
    approval_subject_threshold: int


#: every setting, its default, and what it means (docs/api.md lists them)
DEFAULTS: Settings = {"approvals_required": 1, "approval_subject_threshold": 10}

_LIMITS: dict[str, tuple[int, int]] = {
    "approvals_required": (1, 5),
    "approval_subject_threshold": (0, 10_000_000),
}


def get_settings(ctx: Context) -> Settings:
    """The current settings (defaults where unchanged)."""
    with ctx.reader() as session:
        changed: dict[str, Any] = {
            key: value for key, value in session.execute(select(Setting.key, Setting.value))
        }
    return {
        "approvals_required": int(changed.get("approvals_required", DEFAULTS["approvals_required"])),
        "approval_subject_threshold": int(
            changed.get("approval_subject_threshold", DEFAULTS["approval_subject_threshold"])
        ),
    }


def set_setting(ctx: Context, key: str, value: int) -> Settings:
    """Change one setting (audited with the actor)."""
    if key not in DEFAULTS:
        raise InvalidInput(f"unknown setting {key!r}; settings: {', '.join(DEFAULTS)}")
    low, high = _LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{key} is a whole number from {low} to {high}")
    with ctx.sessions.begin() as session:
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value
        audit.append(session, "settings.changed", {"key": key, "value": value}, actor=ctx.actor)
    return get_settings(ctx)

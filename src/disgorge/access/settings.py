"""The workspace's settings: defaults in one table, changes kept in the catalog.

Only what an organisation decides differently lives here (the two-person rule, and
whether erased photos' perceptual hashes are kept to refuse their copies); everything
about where things are stored stays in the config file.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from ..catalog.api_models import Setting
from ..catalog.dsr_models import ErasedHashes
from ..catalog.models import Meta
from ..context import Context
from ..errors import InvalidInput

__all__ = ["DEFAULTS", "Settings", "get_settings", "read_settings", "set_setting"]


class Settings(TypedDict):
    #: approvals by privacy officers other than the requester that a large erasure needs
    approvals_required: int
    #: an erasure reaching more subjects than this needs those approvals too
    approval_subject_threshold: int
    #: 1: an erasure keeps its photos' PDQ hashes (sealed) and ingest refuses their near-copies
    sticky_copies: int
    #: the PDQ distance (bits of 256) within which an incoming photo is a near-copy
    sticky_copy_distance: int


#: every setting, its default, and what it means (docs/api.md lists them)
DEFAULTS: Settings = {
    "approvals_required": 1,
    "approval_subject_threshold": 10,
    "sticky_copies": 1,
    # PDQ's own match threshold, the one copy search uses (vision.phash.DEFAULT_MAX_DISTANCE)
    "sticky_copy_distance": 31,
}

_LIMITS: dict[str, tuple[int, int]] = {
    "approvals_required": (1, 5),
    "approval_subject_threshold": (0, 10_000_000),
    "sticky_copies": (0, 1),
    "sticky_copy_distance": (0, 64),
}


def get_settings(ctx: Context) -> Settings:
    """The current settings (defaults where unchanged)."""
    with ctx.reader() as session:
        return read_settings(session)


def read_settings(session: Session) -> Settings:
    """The current settings, read in ``session`` (for code that has no context: the ingest pipeline)."""
    changed: dict[str, Any] = {
        key: value for key, value in session.execute(select(Setting.key, Setting.value))
    }
    return {
        "approvals_required": int(changed.get("approvals_required", DEFAULTS["approvals_required"])),
        "approval_subject_threshold": int(
            changed.get("approval_subject_threshold", DEFAULTS["approval_subject_threshold"])
        ),
        "sticky_copies": int(changed.get("sticky_copies", DEFAULTS["sticky_copies"])),
        "sticky_copy_distance": int(changed.get("sticky_copy_distance", DEFAULTS["sticky_copy_distance"])),
    }


def set_setting(ctx: Context, key: str, value: int) -> Settings:
    """Change one setting (audited with the actor).

    Turning ``sticky_copies`` off drops every kept perceptual hash of an erased photo and
    the key they were sealed under (see :mod:`disgorge.vision.blocklist`): off means the
    workspace keeps nothing that recognises an erased photo. Turning it on again protects
    later erasures only."""
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
        event: dict[str, Any] = {"key": key, "value": value}
        if key == "sticky_copies" and not value:
            event["perceptual_hashes_dropped"] = _drop_blocklist(session)
        audit.append(session, "settings.changed", event, actor=ctx.actor)
    return get_settings(ctx)


def _drop_blocklist(session: Session) -> int:
    """Delete the kept hashes of erased photos and their key (the ``meta`` row that
    :mod:`disgorge.vision.blocklist` wraps it in); how many photos' hashes went."""
    dropped = int(session.scalar(select(func.count()).select_from(ErasedHashes)) or 0)
    session.execute(delete(ErasedHashes))
    session.execute(delete(Meta).where(Meta.key == "blocklist_key"))
    return dropped
